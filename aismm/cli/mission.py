"""``aismm mission``: create, inspect and act on missions."""

from __future__ import annotations

from json.encoder import encode_basestring_ascii as _string
from pathlib import Path
from typing import TYPE_CHECKING

import click

from aismm.cli.common import emit, hub_from
from aismm.services import client, worker

if TYPE_CHECKING:  # the list command imports lifecycle when it runs
    from aismm.services.lifecycle import MissionRow


@click.group("mission")
def group() -> None:
    """Create missions and act on them as client, agent or platform."""


@group.command("create")
@click.option("--contract", "contract_ref", required=True, help="contract.<name>[@version]")
@click.option("--client", required=True, help="The paying client actor.")
@click.option("--inputs", type=click.Path(path_type=Path), required=True,
              help="Folder with the inputs (becomes inputs/).")
@click.option("--price", type=int, default=None,
              help="Price in tokens (default: the highest asking price of the assigned agents).")
@click.option("--tier", type=click.Choice(["T0", "T1", "T2"]), default="T1", show_default=True)
@click.option("--agent", "agents", multiple=True, help="Assign an agent (repeatable).")
@click.option("--reviewer", "reviewers", multiple=True, help="Name a reviewer (repeatable).")
@click.option("--contest", type=int, default=None, help="Assign the top N listed agents.")
@click.option("--auto", is_flag=True, help="Assign the best-ranked listed agent.")
@click.option("--deadline", help="ISO 8601 duration from now (default: the contract's).")
@click.option("--key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The client's private key (for a client that keeps its own).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def create(ctx: click.Context, contract_ref: str, client: str, inputs: Path, price: int | None,
           tier: str, agents: tuple[str, ...], reviewers: tuple[str, ...], contest: int | None,
           auto: bool, deadline: str | None, key: Path | None, as_json: bool) -> None:
    """Create and fund a mission; print its id."""
    from aismm.core.safepath import printable
    from aismm.core.signing import read_private_key_file
    from aismm.services import mission

    hub = hub_from(ctx)
    chosen, mode = list(agents), "direct"
    if contest is not None or auto:
        from aismm.core.errors import UsageError
        from aismm.services import market

        if agents:
            raise UsageError("--agent: cannot be combined with --contest or --auto")
        chosen = market.pick(hub, contract_ref, client, contest or 1)
        mode = "contest" if contest is not None else "direct"
    created = mission.create(
        hub, contract_ref=contract_ref, client=client, inputs=inputs, price=price, tier=tier,
        agents=chosen, reviewers=list(reviewers), deadline=deadline,
        key=read_private_key_file(key) if key else None, mode=mode)
    data = created.to_dict()
    # creating a mission is an event: inline, the hub runs its hosted agents now
    lines = [printable(line) for line in worker.process(hub)] \
        if hub.config.processing == "inline" else []
    data["lines"] = lines
    emit(data, as_json, f"{data['id']}\n  contract {data['contract']} · tier {data['tier']} · "
         f"price {data['price']} + fee {data['fee']} = {data['total']} tokens in escrow\n"
         f"  assigned: {', '.join(data['agents'])}\n  clone: git clone {data['url']}"
         + "".join(f"\n  {line.removeprefix('aismm: ')}" for line in lines))


@group.command("list")
@click.option("--state", help="Only missions in this state.")
@click.option("--agent", help="Only missions assigned to this agent.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def list_(ctx: click.Context, state: str | None, agent: str | None, as_json: bool) -> None:
    """List missions with their state."""
    from aismm.core.errors import UsageError
    from aismm.services import lifecycle
    from aismm.state import registry

    hub = hub_from(ctx)
    if state is not None and state not in lifecycle.STATES:
        raise UsageError(f"--state {state}: not a mission state; use one of "
                         f"{', '.join(lifecycle.STATES)}")
    if agent is not None:
        registry.actor(hub, agent)  # an unknown agent is bad input, not an empty list
    rows = lifecycle.list_missions(hub, state=state, agent=agent)
    if as_json:
        click.echo(rows_json(rows))
        return
    emit(rows, False, "\n".join(
        f"{r.id:<28} {r.state:<20} {r.contract:<30} {r.tier} {','.join(r.agents)}"
        for r in rows) or "(no missions)")


def rows_json(rows: list[MissionRow]) -> str:
    """``json.dumps([r.to_dict() for r in rows], indent=2, sort_keys=True)``, byte for byte,
    with the C string encoder (the indenting encoder is pure Python: ~15 µs a row)."""
    if not rows:
        return "[]"
    out = []
    for r in rows:
        agents = ("[\n      " + ",\n      ".join(map(_string, r.agents)) + "\n    ]"
                  if r.agents else "[]")
        out.append(f'  {{\n    "agents": {agents},\n    "client": {_string(r.client)},\n'
                   f'    "contract": {_string(r.contract)},\n    "fee": {int(r.fee)!r},\n'
                   f'    "id": {_string(r.id)},\n    "price": {int(r.price)!r},\n'
                   f'    "state": {_string(r.state)},\n    "tier": {_string(r.tier)}\n  }}')
    return "[\n" + ",\n".join(out) + "\n]"


@group.command("show")
@click.argument("mission_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def show(ctx: click.Context, mission_id: str, as_json: bool) -> None:
    """Show a mission's refs (with signers) and files."""
    from aismm.services import mission

    data = mission.show(hub_from(ctx), mission_id)
    lines = [f"mission {data['id']} ({data['path']})"]
    lines += [f"  {ref:<34} {v['id'][:12]}  signed by {v['signer']}"
              for ref, v in data["refs"].items()]
    lines += ["  files on main:"] + [f"    {f}" for f in data["files"]]
    emit(data, as_json, "\n".join(lines))


def register(cli: click.Group) -> None:
    cli.add_command(group)


@group.command("status")
@click.argument("mission_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status(ctx: click.Context, mission_id: str, as_json: bool) -> None:
    """Derive a mission's state: attempts, verdicts, escrow, and who acts next."""
    from aismm.core.safepath import printable
    from aismm.services import lifecycle

    st = lifecycle.status(hub_from(ctx), mission_id)
    lines = [f"mission {st['id']}: {st['state'].upper()}  ({st['contract']}, {st['tier']}, "
             f"client {st['client']}, deadline {st['deadline']})"]
    esc = st["escrow"]
    if esc["state"] == "settled":
        detail = (f" — {esc.get('provider', 0)} to provider:{esc.get('provider_owner')}, "
                  f"{esc.get('fee', 0)} fee")
    elif esc["state"] == "refunded":
        detail = (f" — {esc.get('client_refund', 0)} back to the client"
                  + (f", {esc.get('fee', 0)} fee kept" if esc.get("fee") else ""))
    else:
        detail = f" ({esc['balance']} tokens held)"
    lines.append(f"  escrow: {esc['state']}{detail}")
    if st["parent"]:
        lines.append(f"  parent: {st['parent']} (a workflow step; `aismm mission tree "
                     f"{st['parent']}`)")
    for a in st["attempts"]:
        lines.append(f"  attempts/{a['agent']}: {a['state']}  head {a['head'][:12]}  "
                     f"deliverable {(a['deliverable_tree'] or '-')[:12]}  DoD {a['dod'] or '-'}  "
                     f"quorum {len(a['quorum']['have'])}/{a['quorum']['need']}  "
                     f"reworks {a['reworks']}")
        if a["failure"]:
            lines.append(f"      run failed at {a['failure']['at']}: "
                         f"{printable(a['failure']['reason'], limit=300)}")
        for who, v in a["verdicts"].items():
            lines.append(f"      {who:<20} {v['verdict']:<8} {v['score']:>3}/100"
                         f"{'' if v['current'] else '  (stale)'}")
            lines += [f"        {c['name']}: {c['status']} ({printable(c['detail'], limit=200)})"
                      for c in v["checks"] if v["current"] and c["status"] != "pass"]
    lines.append(f"  next: {st['next']}")
    emit(st, as_json, "\n".join(lines))


def _acting(ctx: click.Context, mission_id: str, action: str, *, attempt: str = "",
            reason: str = "", as_actor: str | None = None, key: Path | None = None,
            as_json: bool = False) -> None:
    from aismm.core.errors import Rejection
    from aismm.core.safepath import printable
    from aismm.core.signing import read_private_key_file
    from aismm.services import delivery, settlement

    hub = hub_from(ctx)
    private = read_private_key_file(key) if key else None
    failures: list[dict[str, str]] = []
    if action == "run":
        from aismm.services import orchestration
        from aismm.services.mission import open_mission

        if orchestration.is_workflow(open_mission(hub, mission_id)[1]):  # its orchestrator
            lines = orchestration.sync(hub, mission_id) + orchestration.wake(hub, mission_id)
        else:
            lines = delivery.dispatch(hub, mission_id)
        failures = delivery.failed_attempts(lines)

        lines += worker.process(hub)
    elif action in ("rework", "escalate"):
        lines = client.request(hub, mission_id, attempt,
                               "rework" if action == "rework" else "escalation", reason, private)
    elif action == "accept":
        lines = client.accept(hub, mission_id, attempt, as_actor or None, private)
    else:
        lines = settlement.cancel(hub, mission_id)
    lines = [printable(line) for line in lines]  # agent text in them is escaped already
    failed = [f"aismm: {f['agent']}: attempt failed ({f['reason']}); nothing committed"
              for f in failures]
    data: dict[str, object] = {"mission": mission_id, "action": action, "lines": lines}
    if action == "run":
        data["failures"] = failures
    text = "\n".join(line.removeprefix("aismm: ") for line in lines if line not in failed)
    emit(data, as_json, text or None)
    if failed:  # one stderr line per failed attempt, exit 1
        raise Rejection("\n".join(failed))


def _reason(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--reason``: the text a request file records, within the request schema's limits."""
    from aismm.core.document import Request
    from aismm.core.errors import UsageError

    if value is None:
        return value
    limit = next(m.max_length for m in Request.model_fields["reason"].metadata
                 if getattr(m, "max_length", None) is not None)
    if not value.strip():
        raise UsageError("--reason: empty; say in a sentence what is wrong with the delivery")
    if len(value) > limit:
        raise UsageError(f"--reason: {len(value)} characters exceed the limit of {limit}; "
                         "shorten it")
    return value


@group.command("run")
@click.argument("mission_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def run(ctx: click.Context, mission_id: str, as_json: bool) -> None:
    """Dispatch the mission's hosted agents, then assess what they deliver."""
    _acting(ctx, mission_id, "run", as_json=as_json)


@group.command("rework")
@click.argument("mission_id")
@click.option("--attempt", required=True, help="The agent whose attempt needs rework.")
@click.option("--reason", required=True, callback=_reason, help="What to change.")
@click.option("--key", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def rework(ctx: click.Context, mission_id: str, attempt: str, reason: str, key: Path | None,
           as_json: bool) -> None:
    """Ask an agent to rework its delivery (bound to the current deliverable)."""
    _acting(ctx, mission_id, "rework", attempt=attempt, reason=reason, key=key, as_json=as_json)


@group.command("escalate")
@click.argument("mission_id")
@click.option("--attempt", required=True, help="The attempt in dispute.")
@click.option("--reason", required=True, callback=_reason,
              help="Why the client disputes it.")
@click.option("--key", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def escalate(ctx: click.Context, mission_id: str, attempt: str, reason: str, key: Path | None,
             as_json: bool) -> None:
    """Escalate to the contract's arbiter (it rules release or refund)."""
    _acting(ctx, mission_id, "escalate", attempt=attempt, reason=reason, key=key,
            as_json=as_json)


@group.command("accept")
@click.argument("mission_id")
@click.option("--attempt", required=True, help="The agent whose attempt is accepted.")
@click.option("--as", "as_actor", help="Sign as this actor (default: the client).")
@click.option("--key", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def accept(ctx: click.Context, mission_id: str, attempt: str, as_actor: str | None,
           key: Path | None, as_json: bool) -> None:
    """Accept an attempt: a signed merge into accepted, which settles the escrow."""
    _acting(ctx, mission_id, "accept", attempt=attempt, as_actor=as_actor, key=key,
            as_json=as_json)


@group.command("cancel")
@click.argument("mission_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def cancel(ctx: click.Context, mission_id: str, as_json: bool) -> None:
    """Cancel a mission before any delivery (a workflow: its open children too); refund all."""
    _acting(ctx, mission_id, "cancel", as_json=as_json)


@group.command("tree")
@click.argument("mission_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def tree(ctx: click.Context, mission_id: str, as_json: bool) -> None:
    """Show a workflow mission: its budget, each step and each child mission with its money."""
    from aismm.core.safepath import printable
    from aismm.services import orchestration

    data = orchestration.tree(hub_from(ctx), mission_id)
    esc = data["escrow"]
    lines = [f"mission {data['id']}: {data['state'].upper()}  ({data['contract']}, client "
             f"{data['client']}, price {data['price']} + fee {data['fee']}, escrow "
             f"{esc['state']} {esc['balance']})"]
    if data.get("orchestrator"):
        budget = data["budget"]
        lines.append(f"  orchestrator {data['orchestrator']}: budget {budget['total']}, spent "
                     f"{budget['spent']}, left {budget['left']}")
    for step in data["steps"]:
        lines.append(f"  step {step['id']:<16} {step['state']:<10} attempts {step['attempts']}/"
                     f"{step['max_attempts']}  cost {step['cost']} of share {step['share']}  "
                     f"({step['contract']})")
        for child in (c for c in data["children"] if c["step"] == step["id"]):
            lines.append(f"    {child['id']}  {printable(child['agent'] or '-')}  "
                         f"{child['state']:<9} price {child['price']} + fee {child['fee']}  "
                         f"escrow {child['escrow']}  paid {child['paid']}")
    if not data["steps"]:
        lines.append("  not a workflow mission: no steps, no children")
    emit(data, as_json, "\n".join(lines))
