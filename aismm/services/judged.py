"""The judged view of a repository: nothing acts on a ref value the gate has not judged.

The ref-state log (the outbox, ``hub.db`` table ``events``) records every value the gate let a
ref take. Every consumer of refs — settlement, timers, the reconciler, status, listing,
assessment, the gate itself for the registry — first calls :func:`ensure` on the repository it
reads. A ref whose value differs from the log's last record was written by something that
skipped the hooks (libgit2's or dulwich's local-path push, a tool writing refs directly). It is
judged now, in the same step, before anything else reads it: an allowed move is recorded, a
refused one is put back to the logged value and kept as an incident (``incidents`` table). So a
forged ``accepted`` never pays, a swapped registry key never signs, and a rewind to an earlier
value is judged like any other move.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from aismm import gate
from aismm.core.clock import iso
from aismm.core.errors import ConflictError, GateRejection, RepositoryError
from aismm.core.refs import MAIN
from aismm.core.safepath import printable
from aismm.infra.git import ZERO, Repo
from aismm.infra.hub import Hub
from aismm.infra.ledger import Ledger
from aismm.infra.store import Store
from aismm.services import events

__all__ = ["REGISTRY", "context", "ensure", "ensure_mission", "ensure_registry", "judge", "sweep"]

REGISTRY = "registry.git"

Approved = Collection[tuple[str, str, str, str]]  # (repo, ref, old, new) a hook already judged


def ensure(hub: Hub, name: str, approved: Approved = ()) -> tuple[dict[str, str], list[str]]:
    """Judge every unlogged ref move of repository ``name``; the judged refs and incident lines.

    ``name`` is ``registry.git`` or ``missions/<id>.git``. A repository the log has never seen
    (being created, or older than the log) is taken as it is. ``approved`` lists moves a
    pre-receive hook has just allowed and post-receive is about to log.
    """
    repo = Repo(hub.root / name)
    with Store(hub.db_path) as store:
        logged = store.last_values(name)
    current = repo.refs()
    if not logged:
        return current, []
    judged = dict(current)
    lines: list[str] = []
    moved: list[tuple[str | None, str | None, str]] = []
    for ref in sorted(set(current) | set(logged), key=lambda r: (r != MAIN, r)):
        old = logged.get(ref)
        old = None if old in (None, ZERO) else old
        new = current.get(ref)
        if old == new or (name, ref, old or ZERO, str(new)) in approved:
            continue
        if old is not None and not repo.exists(old):
            lines.append(f"aismm: {name} {ref}: the ref-state log names {old[:12]}, which the "
                         "repository lacks; left as is (repair the repository)")
            continue
        moved.append((old, new, ref))
    # Judge the moves together (main first: the rest is judged against the restored main);
    # put back every one the gate names, then judge what is left again.
    while moved:
        refused: dict[str, str] = {ref: "deleted without the gate"
                                   for _old, new, ref in moved if new is None}
        if not refused:
            try:
                judge(hub, repo, [(old, new, ref) for old, new, ref in moved if new is not None])
            except GateRejection as exc:
                named = {p.ref for p in exc.problems} & {ref for _o, _n, ref in moved}
                for problem in exc.problems:
                    if problem.ref in named or not named:
                        refused.setdefault(problem.ref if named else moved[0][2],
                                           f"{problem.where}: {problem.what}")
            else:
                events.record(hub, repo.path, [(old or ZERO, str(new), ref)
                                               for old, new, ref in moved], None)
                break
        for old, new, ref in [m for m in moved if m[2] in refused]:
            lines.append(_put_back(hub, repo, name, ref, old, new, refused[ref], judged))
        moved = [m for m in moved if m[2] not in refused]
    return judged, lines


def _put_back(hub: Hub, repo: Repo, name: str, ref: str, old: str | None, new: str | None,
              reason: str, judged: dict[str, str]) -> str:
    """Restore one refused ref to its logged value and keep the incident; the report line."""
    try:
        if old is None:
            repo.delete_ref(ref, str(new))
            judged.pop(ref, None)
        else:
            repo.update_ref(ref, old, new, "aismm: restored a write that skipped the gate")
            judged[ref] = old
    except (ConflictError, RepositoryError) as exc:
        judged.pop(ref, None)
        return f"aismm: {name} {ref}: could not put back ({exc}); judged again later"
    with Store(hub.db_path) as store:
        store.record_incident(name, ref, new, old, printable(reason, limit=500),
                              iso(hub.clock.now()))
    return (f"aismm: {name} {ref}: incident: a write that skipped the gate was refused "
            f"({printable(reason, limit=200)}); put back to "
            f"{old[:12] if old else 'nothing (deleted)'}")


def ensure_registry(hub: Hub) -> list[str]:
    """Judge the registry's unlogged moves (before any key or manifest is read)."""
    return ensure(hub, REGISTRY)[1]


def ensure_mission(hub: Hub, mission_id: str) -> tuple[dict[str, str], list[str]]:
    """Judge the registry, then one mission; the mission's judged refs and incident lines."""
    lines = ensure_registry(hub)
    refs, more = ensure(hub, f"missions/{mission_id}.git")
    return refs, lines + more


def sweep(hub: Hub, approved: Approved = (), skip: Collection[str] = (),
          only: Collection[str] | None = None) -> list[str]:
    """Judge every repository of the hub (registry first), or ``only`` those named; incident
    and damage lines.

    A repository that cannot be read is reported and skipped, never fatal to the others.
    """
    names = [REGISTRY, *(f"missions/{m}.git" for m in hub.mission_ids(benchmark=True))]
    if only is not None:
        names = [name for name in names if name in only]
    lines: list[str] = []
    for name in names:
        if name in skip:
            continue
        try:
            lines += ensure(hub, name, approved)[1]
        except Exception as exc:  # one damaged repository must not stop the rest
            lines.append(f"aismm: {name}: damaged ({type(exc).__name__}: "
                         f"{printable(str(exc), limit=200)}); skipped")
    return lines


def context(hub: Hub) -> gate.Context:
    """What the gate judges this hub's updates against: its registry, limits, platform, clock
    and how the ledger closed each mission."""

    def closure(mission_id: str) -> str | None:
        if not hub.db_path.exists():
            return None
        with Ledger(hub.db_path, hub.clock) as ledger:
            found = ledger.closure(mission_id)
        return found.kind if found is not None else None

    return gate.Context(registry=Repo(hub.registry_path), limits=hub.config.limits,
                        platform=hub.config.platform, now=hub.clock.now(), closure=closure)


def judge(hub: Hub, repo: Repo, updates: Sequence[gate.Update], *, pusher: str | None = None,
          bootstrap: bool = False, creating: bool = False) -> None:
    """:func:`aismm.gate.judge` in this hub's context (raises GateRejection)."""
    gate.judge(context(hub), repo, list(updates), pusher=pusher, bootstrap=bootstrap,
               creating=creating)
