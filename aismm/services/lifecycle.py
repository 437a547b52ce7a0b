"""Mission state, derived from the refs and the ledger, never stored."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict

from aismm.core.clock import iso
from aismm.core.errors import MissionError
from aismm.core.model import load_yaml
from aismm.core.refs import MAIN, REFUNDED, SETTLED
from aismm.core.safepath import printable
from aismm.infra.git import ZERO, Repo, read_refs, ref_files, ref_stamp, stamp_newest
from aismm.infra.hub import Hub
from aismm.infra.ledger import Ledger
from aismm.infra.store import CachedSummary, Store, SummaryRow
from aismm.services import judged
from aismm.services.mission import ACCEPTED, ATTEMPT, open_mission
from aismm.state import registry
from aismm.state.policy import REQUEST_NAME, MissionPolicy, load_policy, quorum, read_verdict

__all__ = ["AttemptStatus", "Escrow", "MissionRow", "MissionStatus", "attempt_status",
           "delivered_at", "failed_runs", "list_missions", "status"]

STATES = ("assigned", "in_review", "failed", "rework", "awaiting_acceptance", "escalated",
          "accepted", "settled", "refunded", "expired")

# An execution record as the store returns it (aismm.services.executions writes them): id,
# agent, agent_owner, client, client_owner, contract, mission, finished_at, latency_seconds,
# quality, outcome, reworks, cost, commits {head, accepted, detail}.
ExecutionRow = dict[str, Any]
Runs = dict[tuple[str, str], list[ExecutionRow]]



class Escrow(TypedDict):
    """A mission's escrow: ``funded``/``unfunded`` and what it holds; once closed
    (``settled``/``refunded``), also the ledger closure's fields (:meth:`Closure.to_dict`)."""

    state: str
    balance: int
    mission: NotRequired[str]
    kind: NotRequired[str]
    cause: NotRequired[str]
    client: NotRequired[str]
    provider_owner: NotRequired[str | None]
    provider: NotRequired[int]
    fee: NotRequired[int]
    client_refund: NotRequired[int]
    transfers: NotRequired[list[str]]
    at: NotRequired[str]


class Failure(TypedDict):
    """An attempt's latest failed hosted run, while it is still current."""

    reason: str
    at: str


class Quorum(TypedDict):
    have: list[str]
    need: int


class CheckSummary(TypedDict):
    """One DoD check of a verdict, as :class:`aismm.core.document.CheckResult` dumps it."""

    name: str
    status: Literal["pass", "fail", "error", "skip"]
    detail: str


class VerdictSummary(TypedDict):
    verdict: str
    score: int
    current: bool
    checks: list[CheckSummary]


class AttemptStatus(TypedDict):
    """What :func:`attempt_status` knows about one attempt at its tip."""

    agent: str
    head: str
    deliverable_tree: str | None
    state: str
    dod: str | None
    quorum: Quorum
    verdicts: dict[str, VerdictSummary]
    requests: list[str]
    reworks: int
    open_request: str | None
    ruling: str | None
    failure: Failure | None


class MissionStatus(TypedDict):
    """The derived state of a mission (:func:`status`)."""

    id: str
    state: str
    contract: str
    tier: str
    client: str
    price: int
    fee: int
    deadline: str
    agents: list[str]
    mode: str
    attempts: list[AttemptStatus]
    accepted: str | None
    escrow: Escrow
    next: str
    now: str
    parent: str | None  # the workflow mission whose orchestrator opened this one


@dataclass(frozen=True, slots=True)
class MissionRow:
    """One row of :func:`list_missions`."""

    id: str
    state: str
    contract: str
    tier: str
    client: str
    agents: tuple[str, ...]
    price: int
    fee: int

    def to_dict(self) -> dict[str, Any]:
        """The row as JSON data (``aismm mission list --json``, the API)."""
        return {"id": self.id, "state": self.state, "contract": self.contract,
                "tier": self.tier, "client": self.client, "agents": list(self.agents),
                "price": self.price, "fee": self.fee}


def failed_runs(hub: Hub, mission_id: str | None = None) -> Runs:
    """The ``failed`` execution records (hosted runs that crashed or were refused), by
    (mission, agent)."""
    with Store(hub.db_path) as store:
        rows = store.executions()
    out: Runs = {}
    for row in rows:
        if row["outcome"] == "failed" and mission_id in (None, row["mission"]):
            out.setdefault((row["mission"], row["agent"]), []).append(row)
    return out


def _requests(repo: Repo, commit: str) -> list[str]:
    return sorted(p for p in repo.flatten(commit) if REQUEST_NAME.match(p))


def _failure(repo: Repo, tip: str, tree: str | None, requests: list[str],
             runs: list[ExecutionRow]) -> Failure | None:
    """The latest failed run of this attempt, unless a delivery or a request came after it.

    A run records the attempt's head when it failed; it is still current while the deliverable
    and the requests are what they were then (verdicts landing on an old delivery do not clear
    it; a new delivery or a new rework/escalation request does).
    """
    for run in sorted(runs, key=lambda r: r["finished_at"], reverse=True):
        head = run["commits"].get("head")
        if not head or not repo.exists(head) or not repo.is_ancestor(head, tip):
            continue
        if head != tip and (repo.subtree_id(head, "deliverable") != tree
                            or _requests(repo, head) != requests):
            continue
        return {"reason": printable(run["commits"].get("detail") or "no detail recorded",
                                    limit=300),
                "at": run["finished_at"]}
    return None


def attempt_status(repo: Repo, policy: MissionPolicy, agent: str, tip: str,
                   snap: registry.Snapshot, runs: list[ExecutionRow] | None = None
                   ) -> AttemptStatus:
    """Everything known about one attempt at its tip (``runs``: its failed execution records)."""
    tree = repo.subtree_id(tip, "deliverable")
    files = repo.flatten(tip)
    requests = sorted(p for p in files if REQUEST_NAME.match(p))
    reworks = sum(1 for p in requests if p.endswith("-rework.yaml"))
    verdicts: dict[str, VerdictSummary] = {}
    for path in sorted(p for p in files if p.startswith("verdicts/")):
        v = read_verdict(repo, tip, path)
        if v is not None:
            verdicts[v.reviewer] = {"verdict": v.verdict, "score": v.score,
                                    "current": v.deliverable_tree == tree,
                                    "checks": [{"name": c.name, "status": c.status,
                                                "detail": c.detail} for c in v.checks]}
    platform = read_verdict(repo, tip, "verdicts/platform.yaml")
    dod = None if platform is None or platform.deliverable_tree != tree else platform.verdict
    have = quorum(repo, policy, tip, snap) if tree else []
    need = policy.contract.dod.review.quorum
    last_request = requests[-1] if requests else None
    open_request = None
    if last_request:
        req = load_yaml(repo.read(tip, last_request) or b"", last_request)
        if isinstance(req, dict) and req.get("deliverable_tree") == tree:
            open_request = last_request
    arbiter = read_verdict(repo, tip, "verdicts/arbiter.yaml")
    if tree is None:
        state = "assigned"
    elif open_request and open_request.endswith("-escalation.yaml") and arbiter is None:
        state = "escalated"
    elif open_request and open_request.endswith("-rework.yaml"):
        state = "rework"
    elif dod is None:
        state = "in_review"
    elif dod == "fail":
        state = "failed"
    elif policy.doc.tier == "T0" or len(have) >= need:
        state = "awaiting_acceptance"
    else:
        state = "in_review"
    failure = _failure(repo, tip, tree, requests, runs or [])
    if failure is not None and state in ("assigned", "rework"):
        state = "failed"  # nothing acceptable was delivered since the run failed
    return {"agent": agent, "head": tip, "deliverable_tree": tree, "state": state, "dod": dod,
            "quorum": {"have": have, "need": need}, "verdicts": verdicts,
            "requests": requests, "reworks": reworks, "open_request": open_request,
            "ruling": arbiter.verdict if arbiter else None, "failure": failure}


_ORDER = {s: i for i, s in enumerate(("assigned", "failed", "in_review", "rework", "escalated",
                                      "awaiting_acceptance"))}


def status(hub: Hub, mission_id: str, snap: registry.Snapshot | None = None,
           ledger: Ledger | None = None, runs: Runs | None = None) -> MissionStatus:
    """The derived state of a mission, its attempts, escrow and who acts next."""
    repo, policy = open_mission(hub, mission_id)
    snap = snap or registry.snapshot(Repo(hub.registry_path))
    runs = failed_runs(hub, mission_id) if runs is None else runs
    doc = policy.doc
    attempts, accepted_agent, closed, open_state = _derive(hub, mission_id, repo, policy, snap,
                                                           runs)
    deadline = doc.deadline
    if closed is not None:
        state = closed
    elif hub.clock.now() >= deadline and not _met_in_time(hub, repo, mission_id, attempts,
                                                           deadline):
        state = "expired"
    else:
        state = open_state
    return {"id": mission_id, "state": state, "contract": doc.contract.ref, "tier": doc.tier,
            "client": doc.client, "price": doc.price, "fee": doc.fee, "deadline": iso(doc.deadline),
            "agents": doc.assignment.agents, "mode": doc.assignment.mode,
            "attempts": attempts, "accepted": accepted_agent,
            "escrow": _escrow(hub, mission_id, ledger),
            "next": _next(state, doc.client, attempts), "now": iso(hub.clock.now()),
            "parent": doc.parent}


def _derive(hub: Hub, mission_id: str, repo: Repo, policy: MissionPolicy,
            snap: registry.Snapshot, runs: Runs
            ) -> tuple[list[AttemptStatus], str | None, str | None, str]:
    """What the refs say, whatever the time: the attempts, the accepted agent, the closed state
    (refunded, settled, accepted or None) and the state of an open mission before its deadline."""
    attempts = [attempt_status(repo, policy, ref[len(ATTEMPT):], tip, snap,
                               runs.get((mission_id, ref[len(ATTEMPT):])))
                for ref, tip in sorted(repo.refs(ATTEMPT).items())]
    accepted = repo.ref(ACCEPTED)
    accepted_agent = None
    if accepted and accepted != policy.main:
        head = repo.commit(accepted).parents[1]
        accepted_agent = next((a["agent"] for a in attempts if repo.is_ancestor(head, a["head"])),
                              None)
    closed = ("refunded" if repo.ref(REFUNDED) else "settled" if repo.ref(SETTLED) else
              "accepted" if accepted_agent else None)
    open_state = max((a["state"] for a in attempts), key=lambda s: _ORDER.get(s, 0),
                     default="assigned")
    for a in attempts:
        if accepted_agent:
            a["state"] = "accepted" if a["agent"] == accepted_agent else "not_selected"
    return attempts, accepted_agent, closed, open_state


def _met_in_time(hub: Hub, repo: Repo, mission_id: str, attempts: list[AttemptStatus],
                 deadline: dt.datetime) -> bool:
    """An attempt awaits acceptance for a deliverable the hub received before the deadline."""
    return any(a["state"] == "awaiting_acceptance" and
               (when := delivered_at(hub, mission_id, a["agent"], a["deliverable_tree"]))
               is not None and when <= deadline.timestamp() for a in attempts)


def delivered_at(hub: Hub, mission_id: str, agent: str, tree: str | None) -> float | None:
    """When the hub received the deliverable ``tree`` on an attempt (the ref-state log's time of
    the update that brought it, unchanged since); never a date written inside a commit."""
    if tree is None:
        return None
    repo = Repo(hub.mission_path(mission_id))
    with Store(hub.db_path) as store:
        history = store.ref_history(f"missions/{mission_id}.git", f"{ATTEMPT}{agent}")
    since = None
    for new, created in history:
        since = (since or created) if repo.subtree_id(new, "deliverable") == tree else None
    if since is None:
        return None
    return dt.datetime.fromisoformat(since.replace("Z", "+00:00")).timestamp()


def _escrow(hub: Hub, mission_id: str, ledger: Ledger | None = None) -> Escrow:
    if ledger is None:
        with Ledger(hub.db_path, hub.clock) as own:
            return _escrow(hub, mission_id, own)
    balance = ledger.balance(f"escrow:{mission_id}")
    closure = ledger.closure(mission_id)
    if closure is None:
        return {"state": "funded" if balance else "unfunded", "balance": balance}
    return {"state": closure.kind, "balance": balance, "mission": closure.mission,
            "kind": closure.kind, "cause": closure.cause, "client": closure.client,
            "provider_owner": closure.provider_owner, "provider": closure.provider,
            "fee": closure.fee, "client_refund": closure.client_refund,
            "transfers": list(closure.transfers), "at": closure.at}


def _next(state: str, client: str, attempts: list[AttemptStatus]) -> str:
    if state == "failed" and any(a["state"] == "failed" and a.get("failure") and a["dod"] != "fail"
                                 for a in attempts):
        return "the agent delivers again (its run failed; see the attempt's failure)"
    return {
        "assigned": "the assigned agents deliver under deliverable/ on attempts/<agent>",
        "in_review": "the platform and reviewers grade the delivery",
        "failed": "the agent delivers again (the DoD failed)",
        "rework": "the agent reworks the delivery as requested",
        "escalated": "the arbiter rules release or refund",
        "awaiting_acceptance": f"{client} accepts (aismm mission accept / git merge --no-ff -S) "
                               "or requests rework",
        "accepted": "the platform settles the escrow",
        "settled": "nothing: the mission is closed",
        "refunded": "nothing: the mission is closed",
        "expired": "`aismm tick` refunds the escrow (deadline passed)",
    }.get(state, "")


# -- the mission list ------------------------------------------------------------------------
# Each mission's summary is cached in hub.db (table ``mission_summaries``) with everything it
# is derived from: its judged refs, the id of its repository's last logged move (when a
# delivery arrived), the registry commit (whose keys count toward a quorum) and its failed
# runs. What depends on the time (expired or not) is decided when listing, from the cached
# deadline. A summary also keeps the stamp of the files that hold its refs (git.ref_stamp):
# while the stamp, the last logged move, the registry commit and the failed runs are what they
# were, the refs are too, and nothing is read. Any other mission's refs are read from its
# files and compared with the ref-state log; one whose refs moved without the log is judged
# (judged.ensure) before it is listed, so what is listed is judged state. The table is as
# trusted as the rest of hub.db; a row without the right column types is derived again.

_SETTLE_NS = 2_000_000_000  # a stamp is kept once its newest file is this old (coarse clocks)
_BULK = 64  # more summaries to derive than this: read the whole ref-state log once


def _derive_summary(hub: Hub, mission_id: str, snap: registry.Snapshot, runs: Runs
                    ) -> tuple[str, str, str, str, int, int, str | None, str, float, int]:
    """What the list needs of one mission, derived from its judged refs (not the time):
    contract, tier, client, agents (JSON), price, fee, the closed state, the open state, the
    deadline and whether a delivery was met in time."""
    repo = Repo(hub.mission_path(mission_id))
    policy = load_policy(repo)
    if policy is None:
        raise MissionError(f"{mission_id}: repository has no main; it is not a mission")
    doc = policy.doc
    attempts, _agent, closed, open_state = _derive(hub, mission_id, repo, policy, snap, runs)
    met = closed is None and _met_in_time(hub, repo, mission_id, attempts, doc.deadline)
    return (doc.contract.ref, doc.tier, doc.client, json.dumps(list(doc.assignment.agents)),
            doc.price, doc.fee, closed, open_state, doc.deadline.timestamp(), int(met))


def _agents(text: str, seen: dict[str, tuple[str, ...]]) -> tuple[str, ...] | None:
    """A summary's agents (a JSON list of ids), decoded once per distinct text; None when
    damaged."""
    found = seen.get(text)
    if found is None:
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, list) or not all(isinstance(a, str) for a in data):
            return None
        found = seen[text] = tuple(data)
    return found


def list_missions(hub: Hub, state: str | None = None, agent: str | None = None
                  ) -> list[MissionRow]:
    """Every mission (benchmark missions aside) with its state, in id order."""
    start = time.time_ns()
    reg = judged.ensure(hub, judged.REGISTRY)[0].get(MAIN) or ""
    with Store(hub.db_path) as store:
        cached = store.summaries()
        failing = store.executions(outcome="failed")
    runs: Runs = {}
    failed_ids: dict[str, list[str]] = {}
    for run in failing:
        runs.setdefault((run["mission"], run["agent"]), []).append(run)
        failed_ids.setdefault(run["mission"], []).append(run["id"])
    failed = {m: " ".join(sorted(ids)) for m, ids in failed_ids.items()}
    now = hub.clock.now().timestamp()
    folder = str(hub.missions_dir)
    seen: dict[str, tuple[str, ...]] = {}
    layouts: dict[str, list[str]] = {}
    picked: dict[str, MissionRow | None] = {}
    misses: list[str] = []

    def pick(mission_id: str, summary: SummaryRow | CachedSummary,
             agents: tuple[str, ...]) -> None:
        closed, deadline = summary[13], summary[15]
        st = closed or ("expired" if now >= deadline and not summary[16] else summary[14])
        picked[mission_id] = None if (state and st != state) or \
            (agent and agent not in agents) else \
            MissionRow(mission_id, st, summary[7], summary[8], summary[9], agents, summary[11],
                       summary[12])

    ids = hub.mission_ids()
    top = os.open(folder, os.O_RDONLY | os.O_DIRECTORY) if ids else -1
    try:
        for mission_id in ids:  # the stamped summaries: one lstat per file that holds a ref
            hit = cached.get(mission_id)
            if hit is not None and hit[5] is not None and hit[6] is not None and \
                    hit[1] == hit[17] and hit[2] == reg and hit[3] == failed.get(mission_id, ""):
                files = layouts.get(hit[5])
                if files is None:
                    files = layouts[hit[5]] = hit[5].split("\n")
                agents = _agents(hit[10], seen)
                if agents is not None and \
                        ref_stamp(f"{mission_id}.git", files, top) == hit[6]:
                    pick(mission_id, hit, agents)
                    continue
            misses.append(mission_id)
    finally:
        if top >= 0:
            os.close(top)
    if misses:
        fresh = _refresh(hub, misses, cached, reg, failed, runs, start, seen)
        for mission_id, summary, agents, _keep in fresh:
            pick(mission_id, summary, agents)
        stored = [summary for _m, summary, _a, keep in fresh if keep]
        if stored:
            with Store(hub.db_path) as store:
                store.put_summaries(stored)
    return [row for m in ids if (row := picked[m]) is not None]


def _refresh(hub: Hub, misses: list[str], cached: dict[str, CachedSummary], reg: str,
             failed: dict[str, str], runs: Runs, start: int, seen: dict[str, tuple[str, ...]]
             ) -> list[tuple[str, SummaryRow, tuple[str, ...], bool]]:
    """The summaries of missions without a current stamp: their refs read (judged first when
    they moved without the log), the summary derived unless cached for the same refs, and
    whether to store it (nothing moved meanwhile; its stamp kept when settled)."""
    folder = str(hub.missions_dir)
    snap: registry.Snapshot | None = None
    out: list[tuple[str, SummaryRow, tuple[str, ...], bool]] = []
    with Store(hub.db_path) as store:
        bulk = store.latest() if len(misses) > _BULK else None
        for mission_id in misses:
            name, path = f"missions/{mission_id}.git", f"{folder}/{mission_id}.git"
            files = ref_files(path)
            before = ref_stamp(path, files) if files is not None else None
            refs = read_refs(path)
            if refs is None:
                refs = Repo(path).refs()
            if bulk is not None:
                logged, last = bulk[0].get(name), bulk[1].get(name, 0)
            else:
                values = store.last_values(name)
                logged = {r: n for r, n in values.items() if n != ZERO} if values else None
                last = store.last_event_id(name)
            if logged is not None and refs != logged:  # moved without the log: judge it now
                refs = judged.ensure(hub, name)[0]
                last, before = store.last_event_id(name), None
            listed = "\n".join(f"{ref}={oid}" for ref, oid in sorted(refs.items()))
            known = failed.get(mission_id, "")
            hit = cached.get(mission_id)
            agents = _agents(hit[10], seen) if hit is not None else None
            if hit is not None and agents is not None and \
                    hit[1:5] == (last, reg, known, listed):
                values_ = hit[7:17]
                derived = False
            else:
                if snap is None:
                    snap = registry.snapshot(Repo(hub.registry_path), reg or None)
                values_ = _derive_summary(hub, mission_id, snap, runs)
                agents = _agents(values_[3], seen) or ()  # a JSON list of ids, made just now
                derived = True
            # A stamp taken when its newest file was already _SETTLE_NS old was taken before
            # anything moved since `start` (a move then would show a newer ctime), with the
            # same files as were listed (a new file changes its folder's ctime); refs read
            # after it are at least as new, and anything newer breaks the stamp next time.
            settled = before is not None and stamp_newest(before) < start - _SETTLE_NS
            moved = False
            if derived:  # derived from the repository as it is now: kept only if it was so
                now_refs = read_refs(path)  # all along (the same refs, the same stamp)
                moved = (now_refs if now_refs is not None else Repo(path).refs()) != refs
                settled = settled and files is not None and ref_stamp(path, files) == before
            summary: SummaryRow = (mission_id, last, reg, known, listed,
                                   "\n".join(files) if settled and files else None,
                                   before if settled else None, *values_)
            out.append((mission_id, summary, agents, not moved and (derived or settled)))
    return out
