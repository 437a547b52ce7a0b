"""Mission state, derived from the refs and the ledger, never stored."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Literal, NotRequired, TypedDict

from aismm.core.clock import iso
from aismm.core.errors import MissionError
from aismm.core.model import load_yaml
from aismm.core.refs import REFUNDED, SETTLED
from aismm.core.safepath import printable
from aismm.infra.git import Repo, read_refs
from aismm.infra.hub import Hub
from aismm.infra.ledger import Ledger
from aismm.infra.store import Store
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


class MissionRow(TypedDict):
    """One row of :func:`list_missions`."""

    id: str
    state: str
    contract: str
    tier: str
    client: str
    agents: list[str]
    price: int
    fee: int


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
# One pass over the hub: the ref-state log is read once and each mission's refs are read from
# its files (infra.git.read_refs) and compared with it; only a mission whose refs moved without
# the log is judged (judged.ensure), so what is listed is judged state. Each mission's summary
# is cached in hub.db (table ``summaries``) under a key naming everything it is derived from:
# the judged refs, the id of the repository's last logged move (when a delivery arrived), the
# registry commit (whose keys count toward a quorum) and the mission's failed runs. What
# depends on the time (expired or not) is decided when listing, from the cached deadline. The
# table is as trusted as the rest of hub.db; a row that does not parse is derived again.

_SUMMARY_KEYS = {"row", "closed", "open", "deadline", "met_in_time"}
_ROW_KEYS = ("id", "contract", "tier", "client", "agents", "price", "fee")


def _summary(hub: Hub, mission_id: str, snap: registry.Snapshot, runs: Runs) -> dict[str, Any]:
    """What the list needs of one mission, derived from its judged refs (not the time)."""
    repo = Repo(hub.mission_path(mission_id))
    policy = load_policy(repo)
    if policy is None:
        raise MissionError(f"{mission_id}: repository has no main; it is not a mission")
    doc = policy.doc
    attempts, _agent, closed, open_state = _derive(hub, mission_id, repo, policy, snap, runs)
    return {"row": {"id": mission_id, "contract": doc.contract.ref, "tier": doc.tier,
                    "client": doc.client, "agents": list(doc.assignment.agents),
                    "price": doc.price, "fee": doc.fee},
            "closed": closed, "open": open_state, "deadline": doc.deadline.timestamp(),
            "met_in_time": closed is None and _met_in_time(hub, repo, mission_id, attempts,
                                                            doc.deadline)}


def _decode_summary(body: str) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.keys() != _SUMMARY_KEYS or \
            not isinstance(data["row"], dict) or set(data["row"]) != set(_ROW_KEYS):
        return None
    return data


def list_missions(hub: Hub, state: str | None = None, agent: str | None = None
                  ) -> list[MissionRow]:
    """Every mission (benchmark missions aside) with its state, in id order."""
    judged.ensure_registry(hub)
    snap = registry.snapshot(Repo(hub.registry_path))
    with Store(hub.db_path) as store:
        logged, last = store.latest()
        cached = store.summaries()
        failed = store.executions(outcome="failed")
    runs: Runs = {}
    for run in failed:
        runs.setdefault((run["mission"], run["agent"]), []).append(run)
    failed_ids: dict[str, list[str]] = {}
    for run in failed:
        failed_ids.setdefault(run["mission"], []).append(run["id"])
    now = hub.clock.now().timestamp()
    fresh: dict[str, tuple[str, str]] = {}
    rows: list[MissionRow] = []
    folder = str(hub.missions_dir)
    for mission_id in hub.mission_ids():
        name = f"missions/{mission_id}.git"
        path = f"{folder}/{mission_id}.git"
        refs = read_refs(path)
        if refs is None:
            refs = Repo(path).refs()
        if name in logged and refs != logged[name]:  # moved without the log: judge it now
            refs = judged.ensure(hub, name)[0]
            with Store(hub.db_path) as store:
                last[name] = store.last_event_id(name)
        key = " ".join([str(last.get(name, 0)), str(snap.commit),
                        *sorted(failed_ids.get(mission_id, [])),
                        *(f"{ref}={oid}" for ref, oid in sorted(refs.items()))])
        hit = cached.get(mission_id)
        summary = _decode_summary(hit[1]) if hit is not None and hit[0] == key else None
        if summary is None:
            summary = _summary(hub, mission_id, snap, runs)
            if (read_refs(path) or Repo(path).refs()) == refs:  # kept only if nothing moved
                fresh[mission_id] = (key, json.dumps(summary, sort_keys=True))
        st = summary["closed"] or ("expired" if now >= summary["deadline"] and
                                   not summary["met_in_time"] else summary["open"])
        row = summary["row"]
        if (state and st != state) or (agent and agent not in row["agents"]):
            continue
        rows.append({"id": row["id"], "state": st, "contract": row["contract"],
                     "tier": row["tier"], "client": row["client"], "agents": row["agents"],
                     "price": row["price"], "fee": row["fee"]})
    if fresh:
        with Store(hub.db_path) as store:
            store.put_summaries(fresh)
    return rows
