"""``aismm mission``: create, inspect and act on missions."""

from __future__ import annotations

from pathlib import Path

import click

from aismm.cli import emit, hub_from


@click.group("mission")
def group() -> None:
    """Create missions and act on them as client, agent or platform."""


@group.command("create")
@click.option("--contract", "contract_ref", required=True, help="contract.<name>[@version]")
@click.option("--client", required=True, help="The paying client actor.")
@click.option("--inputs", type=click.Path(path_type=Path), required=True,
              help="Folder with the inputs (becomes inputs/).")
@click.option("--price", type=int, required=True, help="The agent's price in tokens.")
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
def create(ctx: click.Context, contract_ref: str, client: str, inputs: Path, price: int,
           tier: str, agents: tuple[str, ...], reviewers: tuple[str, ...], contest: int | None,
           auto: bool, deadline: str | None, key: Path | None, as_json: bool) -> None:
    """Create and fund a mission; print its id."""
    from aismm import mission
    from aismm.signing import read_private_key_file

    hub = hub_from(ctx)
    chosen, mode = list(agents), "direct"
    if contest is not None or auto:
        from aismm import market
        from aismm.errors import UsageError

        if agents:
            raise UsageError("--agent: cannot be combined with --contest or --auto")
        chosen = market.pick(hub, contract_ref, client, contest or 1)
        mode = "contest" if contest is not None else "direct"
    created = mission.create(
        hub, contract_ref=contract_ref, client=client, inputs=inputs, price=price, tier=tier,
        agents=chosen, reviewers=list(reviewers), deadline=deadline,
        key=read_private_key_file(key) if key else None, mode=mode)
    data = created.to_dict()
    emit(data, as_json, f"{data['id']}\n  contract {data['contract']} · tier {data['tier']} · "
         f"price {data['price']} + fee {data['fee']} = {data['total']} tokens in escrow\n"
         f"  assigned: {', '.join(data['agents'])}\n  clone: git clone {data['url']}")


@group.command("list")
@click.option("--state", help="Only missions in this state.")
@click.option("--agent", help="Only missions assigned to this agent.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def list_(ctx: click.Context, state: str | None, agent: str | None, as_json: bool) -> None:
    """List missions with their state."""
    from aismm import lifecycle

    hub = hub_from(ctx)
    rows = lifecycle.list_missions(hub, state=state, agent=agent)
    emit(rows, as_json, "\n".join(
        f"{r['id']:<28} {r['state']:<20} {r['contract']:<30} {r['tier']} "
        f"{','.join(r['agents'])}" for r in rows) or "(no missions)")


@group.command("show")
@click.argument("mission_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def show(ctx: click.Context, mission_id: str, as_json: bool) -> None:
    """Show a mission's refs (with signers) and files."""
    from aismm import mission

    data = mission.show(hub_from(ctx), mission_id)
    lines = [f"mission {data['id']} ({data['path']})"]
    lines += [f"  {ref:<34} {v['id'][:12]}  signed by {v['signer']}"
              for ref, v in data["refs"].items()]
    lines += ["  files on main:"] + [f"    {f}" for f in data["files"]]
    emit(data, as_json, "\n".join(lines))


def register(cli: click.Group) -> None:
    cli.add_command(group)
