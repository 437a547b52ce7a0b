"""The buyout handover: a client's export that founds a standalone hub with its own platform key.

A client-scope export with the keys (``--scope client:<id> --include-secrets``) carries one more
registry commit than the hub holds: the exporting platform, with its own key, rotates the
platform actor to a key made for the new hub (the old key retired, valid before the handover
instant). The commit is judged by the gate like any registry write and logged in the export's
ref-state log; the source hub itself is not changed. The new hub signs with the new key from
then on, and everything the old platform signed before the handover keeps verifying
(``allowed_signers`` validity windows).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from aismm import gate
from aismm.core.actor import Actor, RetiredKey
from aismm.core.clock import iso
from aismm.core.errors import UsageError
from aismm.core.model import dump_yaml
from aismm.core.refs import MAIN
from aismm.core.signing import PrivateKey, generate_key
from aismm.infra import bundle
from aismm.infra.git import Repo
from aismm.infra.hub import Hub
from aismm.state.registry import identity, load_actors

__all__ = ["Handover", "hand_over"]


@dataclass(frozen=True)
class Handover:
    """The handover commit made on an export's registry bundle."""

    old: str
    new: str
    at: str
    key: PrivateKey
    actors: dict[str, Actor]


def hand_over(hub: Hub, registry_bundle: Path, work: Path, when: dt.datetime) -> Handover:
    """Rotate the platform actor to a new key on top of the registry bundle (rewritten in
    place); the handover commit is signed by the hub's platform key, dated ``when``, and
    allowed by the gate."""
    platform = hub.config.platform
    repo_path = work / "handover.git"
    bundle.clone_bundle(registry_bundle, repo_path)
    repo = Repo(repo_path)
    tip = repo.ref(MAIN)
    if tip is None:
        raise UsageError(f"{hub.root}: the registry has no main; repair the hub")
    actors = load_actors(repo, tip)
    old = actors[platform]
    key = generate_key()
    until = when + dt.timedelta(seconds=1)  # the handover itself is signed before it
    rotated = Actor.model_validate({**old.model_dump(mode="json"), "key": key.public_line,
                                    "retired_keys": [*old.model_dump(mode="json")[
                                        "retired_keys"], RetiredKey(
                                            key=old.key, valid_before=iso(until)).model_dump(
                                                mode="json")]})
    tree = repo.build_tree(repo.tree_of(tip), {
        f"actors/{platform}.yaml": dump_yaml(rotated.model_dump(mode="json")).encode()})
    new = repo.write_commit(tree=tree, parents=[tip], message=(
        f"Hand the platform over to a standalone hub (buyout)\n\nNew platform key from "
        f"{iso(until)}; {platform}'s earlier signatures stay valid before it.\n"),
        key=hub.hosted_key(platform), who=identity(platform), when=when)
    ctx = gate.Context(registry=repo, limits=hub.config.limits, platform=platform, now=when)
    gate.judge(ctx, repo, [(tip, new, MAIN)])
    repo.update_ref(MAIN, new, tip, "aismm export: buyout handover")
    registry_bundle.unlink()
    bundle.create(repo_path, registry_bundle)
    return Handover(tip, new, iso(when), key, load_actors(repo, new))

