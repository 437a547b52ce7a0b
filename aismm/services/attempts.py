"""Writes onto an attempt branch by the hub or a hosted actor: judged, compare-and-swap, logged."""

from __future__ import annotations

from aismm.core.errors import ConflictError, MissionError
from aismm.core.signing import PrivateKey
from aismm.infra.git import Repo
from aismm.infra.hub import Hub
from aismm.services import events, judged
from aismm.services.mission import ATTEMPT
from aismm.state import registry

__all__ = ['write_to_attempt']


def write_to_attempt(hub: Hub, repo: Repo, agent: str, files: dict[str, bytes | None],
                     message: str, signer: str, key: PrivateKey | None = None,
                     expect_tree: str | None = None) -> str:
    """Commit files onto attempts/<agent> as ``signer``, through the gate (CAS, retried)."""
    ref = f"{ATTEMPT}{agent}"
    key = key or hub.hosted_key(signer)
    for _ in range(5):
        old = repo.ref(ref)
        if old is None:
            raise MissionError(f"{agent}: no attempt branch; assign the agent first")
        if expect_tree is not None and repo.subtree_id(old, "deliverable") != expect_tree:
            raise ConflictError(f"{ref}: the deliverable changed meanwhile; judge the new one")
        with repo.quarantine():  # a refused write leaves no object behind
            tree = repo.build_tree(repo.tree_of(old), files)
            new = repo.write_commit(tree=tree, parents=[old], message=message, key=key,
                                    who=registry.identity(signer), when=hub.clock.now())
            judged.judge(hub, repo, [(old, new, ref)])
        try:
            repo.update_ref(ref, new, old)
        except ConflictError:
            continue
        events.record(hub, repo.path, [(old, new, ref)], signer)  # every ref move is an event
        return new
    raise ConflictError(f"{ref}: kept moving while we wrote; retry")
