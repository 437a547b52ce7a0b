"""What every gate rule works with: the judging context and the problems found so far."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from aismm.core.actor import Actor
from aismm.core.errors import GateRejection, Problem, SignatureError
from aismm.core.model import describe_validation, load_document
from aismm.core.safepath import path_problem
from aismm.core.safepath import printable as _printable
from aismm.core.signing import verify
from aismm.infra.git import MODE_EXEC, MODE_FILE, Entry, Repo
from aismm.infra.hub import HubLimits
from aismm.state.registry import Snapshot

__all__ = ["KEPT_PROBLEMS", "SHOWN_PROBLEMS", "Context", "Judge", "Stop", "shown"]

SHOWN_PROBLEMS = 20  # problem lines a pusher sees; the rest are summed up in one line
KEPT_PROBLEMS = 1000  # problems a rejection carries; beyond that they are only counted


@dataclass(frozen=True)
class Context:
    """Everything the gate judges against besides the repository: a pure function of these.

    ``registry`` is the registry repository (read at the judged value of its ``main``),
    ``closure`` tells how a mission's escrow closed in the ledger (``"settled"``,
    ``"refunded"`` or None) and ``now`` is the hub clock's time.
    """

    registry: Repo
    limits: HubLimits
    platform: str
    now: dt.datetime
    closure: Callable[[str], str | None] = lambda _mission: None


class Stop(Exception):
    """Judging cannot go on safely (e.g. a tree too large to walk); the problems are recorded."""


@dataclass
class Judge:
    ctx: Context
    repo: Repo
    registry: Snapshot
    pusher: str | None
    problems: list[Problem] = field(default_factory=list)
    unlisted: int = 0  # problems found beyond KEPT_PROBLEMS
    paths: dict[tuple[str, int], int] = field(default_factory=dict)  # Repo.count_paths memo

    def reject(self, ref: str, where: str, what: str, fix: str) -> None:
        if len(self.problems) >= KEPT_PROBLEMS:
            self.unlisted += 1
            return
        self.problems.append(Problem(*(_printable(part) for part in (ref, where, what, fix))))

    def rejection(self) -> GateRejection:
        exc = GateRejection(self.problems)
        exc.unlisted = self.unlisted  # type: ignore[attr-defined]
        return exc

    @property
    def nesting(self) -> int:
        """How deep :meth:`bounded` counts: up to here each too-deep path gets its own line."""
        return 2 * self.ctx.limits.max_path_depth

    def bounded(self, ref: str, commits: list[str], cap: int) -> None:
        """Before any walk: each commit's tree holds at most ``cap`` paths, none deeper than the
        hub allows. Counting reads each distinct subtree once and stops past the limit, so a
        tree bomb (a few objects naming 10^14 paths) is refused at the cost of its size."""
        depth, nesting = self.ctx.limits.max_path_depth, self.nesting
        for oid in commits:
            count = self.repo.count_paths(oid, cap, nesting, self.paths)
            if count > cap:
                self.reject(ref, f"commit {oid[:12]}", f"its tree holds more than {cap} files "
                            "(the hub's limit)", "commit fewer files")
                raise Stop
            if count < 0:
                self.reject(ref, f"commit {oid[:12]}", f"its tree nests folders more than "
                            f"{nesting} levels deep (paths may have at most {depth})",
                            "flatten it")
                raise Stop

    def signer(self, ref: str, oid: str, signature: bytes | None, payload: bytes | None,
               keys: dict[str, Actor]) -> Actor | None:
        """The registered actor whose key signed an object, or None (with a problem)."""
        short = oid[:12]
        if not signature or payload is None:
            self.reject(ref, f"commit {short}", "unsigned",
                        "sign it with `git commit -S` (gpg.format=ssh) using your registered key")
            return None
        try:
            public = verify(signature, payload)
        except SignatureError as exc:
            reason = str(exc).removeprefix("signature: ").split("; ")[0]
            self.reject(ref, f"commit {short}", f"bad signature ({reason})",
                        "re-sign it with your registered key")
            return None
        actor = keys.get(public)
        if actor is None:
            self.reject(ref, f"commit {short}", "signed by an unregistered or revoked key",
                        "sign with the key registered for your actor (`aismm actor show`)")
            return None
        if self.pusher is not None and actor.id != self.pusher:
            self.reject(ref, f"commit {short}", f"signed by {actor.id} but pushed by "
                        f"{self.pusher}", "push only commits you signed yourself")
            return None
        return actor

    def commit_signer(self, ref: str, oid: str, keys: dict[str, Actor]) -> Actor | None:
        info = self.repo.commit(oid)
        return self.signer(ref, oid, info.signature, info.payload, keys)

    def content(self, ref: str, entry: Entry) -> bool:
        """Path and mode rules for one added or changed entry."""
        limits = self.ctx.limits
        problem = path_problem(entry.path, limits.max_path_length, limits.max_path_depth)
        if problem:
            what, _, fix = problem.partition("; ")
            self.reject(ref, shown(entry.path), what, fix or "rename it")
            return False
        if entry.mode == 0o120000:
            self.reject(ref, entry.path, "symbolic links are not allowed",
                        "commit the file's content instead of a link")
            return False
        if entry.mode == 0o160000:
            self.reject(ref, entry.path, "submodules (gitlinks) are not allowed",
                        "commit the files themselves")
            return False
        if entry.mode not in (MODE_FILE, MODE_EXEC):
            self.reject(ref, entry.path, f"unsupported file mode {entry.mode:o}",
                        "commit regular files only")
            return False
        return True

    def document(self, ref: str, path: str, oid: str, model: type[BaseModel]) -> Any:
        """Parse and validate a YAML document blob; None (with a problem) when invalid."""
        try:
            return load_document(model, oid, self.repo.blob, path)
        except ValueError as exc:
            first = describe_validation(exc)[0] if isinstance(exc, ValidationError) else \
                str(exc).split(": ", 1)[-1]
            self.reject(ref, path, f"invalid document ({first})",
                        "fix the file so it matches its schema (see docs/protocol.md)")
            return None

    def fast_forward(self, old: str | None, new: str | None, ref: str) -> bool:
        if new is None:
            self.reject(ref, "ref", "deleting refs is not allowed", "refs are append-only")
            return False
        if old is not None and not self.repo.is_ancestor(old, new):
            self.reject(ref, "ref", "non-fast-forward update (history rewrite)",
                        "fetch, rebase your commits on the current tip and push again")
            return False
        return True


def shown(path: str) -> str:
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace") \
        .encode("unicode_escape").decode("ascii")
