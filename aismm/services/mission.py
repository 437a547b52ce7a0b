"""Mission repositories: creation, listing and inspection."""

from __future__ import annotations

import secrets
import shutil
import string
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aismm import gate
from aismm.core.clock import iso, parse_duration
from aismm.core.contract import Contract
from aismm.core.document import Assignment, ContractPin, MissionDoc
from aismm.core.errors import ActorError, ContractError, MissionError, UsageError
from aismm.core.files import document_problems, layout_problems
from aismm.core.model import dump_yaml
from aismm.core.refs import ACCEPTED, ATTEMPT, MAIN, TAGS
from aismm.core.safepath import path_problem
from aismm.core.signing import PrivateKey, verify
from aismm.infra.git import Repo, read_refs
from aismm.infra.hub import BENCH_PREFIX, Hub, bundled
from aismm.infra.ledger import MAX_AMOUNT, Ledger, fee_for
from aismm.services import events, judged
from aismm.state import lean, provision, registry
from aismm.state.policy import MissionPolicy, dependence, load_policy
from aismm.state.provision import install
from aismm.state.registry import latest_assessment

__all__ = [
    "ACCEPTED",
    "ATTEMPT",
    "MAIN",
    "create",
    "fee_rate",
    "open_mission",
    "read_inputs",
    "show",
]



def read_inputs(folder: Path) -> dict[str, bytes]:
    """Every file under an inputs folder, keyed ``inputs/<relative path>``."""
    if not folder.is_dir():
        raise UsageError(f"{folder}: inputs folder not found; pass --inputs DIR")
    out = {}
    for path in sorted(folder.rglob("*")):
        if "__pycache__" in path.relative_to(folder).parts:
            continue  # Python's bytecode caches are never inputs (pip and imports make them)
        if path.is_symlink():
            raise ContractError(f"{path}: symbolic links are not accepted as inputs; copy the "
                                "file")
        if path.is_file():
            out[f"inputs/{path.relative_to(folder).as_posix()}"] = path.read_bytes()
    return out


def check_inputs(contract: Contract, schemas: dict[str, bytes], files: dict[str, bytes],
                 where: Path) -> None:
    """Validate inputs against the contract (:mod:`aismm.core.files`, the rules the gate applies
    to a deliverable); raise one ContractError listing every problem."""
    unsafe = {path: why for path in files if (why := path_problem(path))}
    safe = {path: data for path, data in files.items() if path not in unsafe}
    problems = [f"{where}: {path}: {why}" for path, why in unsafe.items()]
    found = [*layout_problems(contract, "inputs", {p: len(d) for p, d in safe.items()}),
             *document_problems(contract, "inputs", safe, schemas)]
    problems += [f"{where}: {problem}" for problem in found]
    if problems:
        raise ContractError("\n".join(problems))


def open_load(hub: Hub) -> dict[str, int]:
    """Open (not yet accepted, settled or refunded) missions per assigned agent."""
    load: dict[str, int] = {}
    for mission_id in hub.mission_ids():
        repo = Repo(hub.mission_path(mission_id))
        refs = repo.refs()
        if refs.get(ACCEPTED) != refs.get(MAIN) or any(t in refs for t in TAGS):
            continue
        policy = load_policy(repo)
        for agent in policy.doc.assignment.agents if policy else []:
            load[agent] = load.get(agent, 0) + 1
    return load


def _check_capacity(hub: Hub, agents: list[str]) -> None:
    """Refuse a hire beyond an agent's declared capacity (its manifest's open missions)."""
    manifests = registry.manifests(hub)
    capped = [a for a in agents if a in manifests]
    if not capped:
        return
    load = open_load(hub)
    for agent_id in capped:
        capacity = manifests[agent_id].capacity
        if load.get(agent_id, 0) >= capacity:
            raise ActorError(f"--agent {agent_id}: at capacity ({load[agent_id]} of {capacity} "
                             "open missions); pick another agent or hire it when one closes")


def fee_rate(hub: Hub, contract: Contract, tier: str) -> int:
    """The fee rate (basis points) of a tier: the contract's, inside the hub's band."""
    if tier not in contract.tiers:
        raise ContractError(f"--tier {tier}: {contract.ref} allows only "
                            f"{', '.join(sorted(contract.tiers))}; pick one of those")
    rate = contract.tiers[tier].fee_bp
    band = hub.config.fees[tier]
    if not band.min_bp <= rate <= band.max_bp:
        raise ContractError(f"{contract.ref}: tier {tier} fee {rate} bp is outside the hub's band "
                            f"{band.min_bp}-{band.max_bp} bp; fix the contract or hub.yaml")
    return rate


def _bullet(items: Iterable[str]) -> str:
    return "\n".join(f"- {i}" for i in items) or "- (none)"


def _render_readme(doc: MissionDoc, contract: Contract) -> bytes:
    template = string.Template((bundled("templates") / "mission_readme.md").read_text())
    text = template.safe_substitute(
        mission_id=doc.id, contract_ref=doc.contract.ref, contract_title=contract.title,
        contract_description=contract.description.strip(), client=doc.client, tier=doc.tier,
        price=doc.price, fee=doc.fee, deadline=iso(doc.deadline),
        agents=", ".join(doc.assignment.agents), reviewers=", ".join(doc.reviewers) or
        "picked by the hub",
        deliverables=_bullet(f"`{f.path}`" + (f" (schema `{f.schema_}`)" if f.schema_ else "") +
                            (f": {f.description}" if f.description else "")
                            for f in contract.deliverable.files),
        checks=_bullet(f"`{c.name}` ({c.kind})" + (f": {c.description}" if c.description else "")
                      for c in contract.dod.checks),
        quorum=contract.dod.review.quorum, threshold=contract.dod.review.threshold,
        rubric=", ".join(r.id for r in contract.dod.review.rubric),
        inputs=_bullet(f"`{f.path}`" + (f": {f.description}" if f.description else "")
                      for f in contract.inputs.files),
    )
    return text.encode()


@dataclass(frozen=True)
class Created:
    """What `mission create` reports."""

    doc: MissionDoc
    path: Path
    main: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.doc.id, "state": "assigned", "url": str(self.path),
                "contract": self.doc.contract.ref, "tier": self.doc.tier,
                "price": self.doc.price, "fee": self.doc.fee, "fee_bp": self.doc.fee_bp,
                "total": self.doc.price + self.doc.fee, "agents": self.doc.assignment.agents,
                "main": self.main}


def create(hub: Hub, *, contract_ref: str, client: str, inputs: Path, price: int | None,
           tier: str = "T1", agents: list[str], reviewers: list[str] | None = None,
           deadline: str | None = None, key: PrivateKey | None = None,
           mode: str = "direct", parent: str | None = None, fund: bool = True,
           benchmark: bool = False, mission_id: str | None = None,
           funding_cause: str | None = None) -> Created:
    """Create and fund a mission; on any error nothing is left behind.

    A workflow child (``parent`` set, the platform as client) is funded from the parent's
    escrow, keyed by ``funding_cause`` (the decision that opened it), under the given
    ``mission_id`` (derived from the decision, so a repeated execution finds it)."""
    reviewers = reviewers or []
    client_actor = registry.actor(hub, client)
    if not {"client", "orchestrator"} & set(client_actor.roles) and not (
            (benchmark or parent) and client == hub.config.platform):
        raise ActorError(f"--client {client}: lacks the client role; use a client actor")
    contract, files, sha = _resolve_contract(hub, contract_ref)
    if price is not None and price < 0:
        raise UsageError(f"--price {price}: must not be negative; give a whole number of tokens")
    if price is not None and price > MAX_AMOUNT:
        raise UsageError(f"--price {price}: above the limit of {MAX_AMOUNT} tokens; offer at "
                         f"most {MAX_AMOUNT} (see Money limits in docs/protocol.md)")
    if not agents:
        raise UsageError("--agent: assign at least one agent (or use --auto / --contest N)")
    rate = fee_rate(hub, contract, tier)
    if len(set(agents)) != len(agents):
        raise UsageError("--agent: an agent is named twice; name each once")
    actors = registry.actors(hub)
    for agent_id in agents:
        agent = registry.actor(hub, agent_id)
        if not {"specialist", "orchestrator"} & set(agent.roles):
            raise ActorError(f"--agent {agent_id}: lacks the specialist role; assign a "
                             "specialist")
        if tier != "T0":
            record = latest_assessment(hub, agent_id)
            if record is None or not record.listed:
                raise ActorError(f"--agent {agent_id}: not listed (no passing assessment); at "
                                 f"{tier} only listed agents can be hired: run `aismm agent "
                                 "assess`, or hire it at --tier T0 at your own risk")
    if not benchmark:
        _check_capacity(hub, agents)
    for rid in reviewers:
        reviewer = registry.actor(hub, rid, "reviewer")
        for agent_id in agents:  # the gate's own rule, checked early to refuse cleanly
            why = dependence(reviewer, agent_id, actors[agent_id], client_actor)
            if why:
                raise ActorError(f"--reviewer {rid}: not independent of {agent_id} or the "
                                 f"client {client} ({why}); pick an independent reviewer")
    price = _price(hub, agents, price)
    if not contract.pricing.min <= price <= contract.pricing.max:
        raise ContractError(f"--price {price}: outside {contract.ref}'s range "
                            f"{contract.pricing.min}-{contract.pricing.max}; pick a price in it")
    try:
        span = parse_duration(deadline) if deadline else contract.sla.deadline
        iso(hub.clock.now() + span)
    except (ValueError, OverflowError) as exc:
        where = f"--deadline {deadline}" if deadline else f"{contract.ref}: sla.deadline"
        raise UsageError(f"{where}: {exc}" if isinstance(exc, ValueError) else
                         f"{where}: ends after the year 9999; give a shorter duration") from exc
    input_files = read_inputs(inputs)
    check_inputs(contract, files, input_files, inputs)
    if key is None:
        key = hub.hosted_key(client)
    if key.public_line != client_actor.key:
        raise ActorError(f"--key: does not match the key registered for {client}; use the "
                         "client's own private key")
    now = hub.clock.now()
    mission_id = mission_id or f"{BENCH_PREFIX if benchmark else ''}" \
        f"{contract.name.replace('_', '-')}-{secrets.token_hex(4)}"
    doc = MissionDoc(
        id=mission_id, contract=ContractPin(ref=contract.ref, sha256=sha), client=client,
        tier=tier,
        price=price, fee=fee_for(price, rate), fee_bp=rate, created=iso(now),
        deadline=iso(now + span), assignment=Assignment(mode=mode, agents=agents),
        reviewers=reviewers, arbiter=contract.disputes.arbiter or hub.config.arbiter,
        parent=parent,
    )
    frozen = {p: d for p, d in files.items() if p == "contract.yaml" or p in
              contract.schema_paths()}
    tree_files: dict[str, bytes | None] = {
        "mission.yaml": dump_yaml(doc.model_dump(mode="json")).encode(),
        "README.md": _render_readme(doc, contract), **frozen, **input_files,
    }
    final = hub.mission_path(mission_id)
    staging = hub.missions_dir / f".tmp-{mission_id}.git"
    if funding_cause is not None:  # a repeated execution: drop what a crash left half built
        shutil.rmtree(staging, ignore_errors=True)
    try:
        repo = Repo.init_bare(staging)
        repo.set_configs({**provision.settings(hub.config.limits.max_push_bytes),
                          "gpg.format": "ssh",
                          "gpg.ssh.allowedSignersFile": str(hub.allowed_signers_path)})
        tree = repo.build_tree(None, tree_files)
        main = repo.write_commit(tree=tree, parents=[], message=f"Open mission {mission_id}\n\n"
                                 f"contract: {contract.ref}\nclient: {client}\n", key=key,
                                 who=registry.identity(client), when=now)
        updates: list[gate.Update] = [(None, main, MAIN), (None, main, ACCEPTED)]
        updates += [(None, main, f"{ATTEMPT}{a}") for a in agents]
        judged.judge(hub, repo, updates, creating=True)
        for _old, new, ref in updates:
            repo.update_ref(ref, new, None)
        install(staging)
        policy = load_policy(repo)
        if policy is not None:  # so the mission's first delivery takes the lean hook path too
            lean.remember(hub.root, staging, policy)
        if fund and not benchmark:
            with Ledger(hub.db_path, hub.clock) as ledger:
                if parent is not None and funding_cause is not None:
                    ledger.fund_child(mission_id, parent, doc.price, doc.fee, funding_cause)
                else:
                    ledger.fund(mission_id, client, doc.price, doc.fee, cause=main)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

    events.record(hub, final, [("0" * 40, new, ref) for _old, new, ref in updates], client)
    return Created(doc, final, main)


_CONTRACTS: dict[tuple[Path, str, str], tuple[Contract, dict[str, bytes], str]] = {}
_CONTRACTS_KEPT = 64  # entries (a resident process sees few registry commits and contracts)


def _resolve_contract(hub: Hub, ref: str) -> tuple[Contract, dict[str, bytes], str]:
    """:func:`registry.resolve_contract`, remembered per registry commit: a resident process
    (`aismm serve`, the HTTP API) parses the published contracts once per registry commit
    instead of once per mission. Keyed by the commit it was read at (the same before and
    after reading, else not kept), so an entry is never stale."""
    before = (read_refs(hub.registry_path) or {}).get(MAIN)
    key = (hub.registry_path, before or "", ref)
    if before is not None and key in _CONTRACTS:
        contract, files, sha = _CONTRACTS[key]
        return contract, dict(files), sha
    contract, files, sha = registry.resolve_contract(hub, ref)
    if before is not None and before == (read_refs(hub.registry_path) or {}).get(MAIN):
        if len(_CONTRACTS) >= _CONTRACTS_KEPT:
            _CONTRACTS.clear()
        _CONTRACTS[key] = (contract, dict(files), sha)
    return contract, files, sha


def _price(hub: Hub, agents: list[str], price: int | None) -> int:
    """The mission price: given, or the highest asking price of the assigned agents."""
    asks = {a: m.price for a, m in registry.manifests(hub).items() if a in agents}
    if price is None:
        if not asks:
            raise UsageError("--price: required when no assigned agent publishes a price")
        return max(asks.values())
    for agent, ask in sorted(asks.items()):
        if price < ask:
            raise UsageError(f"--price {price}: {agent} asks {ask} tokens; offer at least that "
                             "or pick another agent")
    return price




def open_mission(hub: Hub, mission_id: str) -> tuple[Repo, MissionPolicy]:
    """A mission's repository and policy, or a MissionError naming the id.

    Its refs (and the registry's) are judged first: whatever moved without the gate is judged
    now and put back if refused (:mod:`aismm.services.judged`), so callers read only judged state.
    """
    path = hub.mission_path(mission_id)
    if not path.is_dir() or mission_id.startswith(".") or "/" in mission_id:
        raise MissionError(f"{mission_id}: no such mission; see `aismm mission list`")
    judged.ensure_mission(hub, mission_id)
    repo = Repo(path)
    policy = load_policy(repo)
    if policy is None:
        raise MissionError(f"{mission_id}: repository has no main; it is not a mission")
    return repo, policy


def show(hub: Hub, mission_id: str) -> dict[str, Any]:
    """Refs, files on main and who signed each ref's tip."""
    repo, policy = open_mission(hub, mission_id)
    snap = registry.snapshot(Repo(hub.registry_path))
    refs = {}
    for ref, oid in sorted(repo.refs().items()):
        signer = None
        try:
            if repo.object_type(oid) == "tag":
                info = repo.tag(oid)
                sig, payload = info.signature, info.payload
            else:
                c = repo.commit(oid)
                sig, payload = c.signature, c.payload
            if sig and payload is not None:
                actor = snap.by_key.get(verify(sig, payload))
                signer = actor.id if actor else "unknown key"
        except Exception:
            signer = "invalid signature"
        refs[ref] = {"id": oid, "signer": signer}
    return {"id": mission_id, "path": str(repo.path), "mission": policy.doc.model_dump(
        mode="json"), "refs": refs, "files": sorted(repo.flatten(policy.main))}
