"""``aismm wallet`` and ``aismm ledger``: balances and the escrow ledger."""

from __future__ import annotations

import click

from aismm.cli import emit, hub_from


@click.group("wallet")
def wallet() -> None:
    """Deposit tokens and read balances."""


@wallet.command("deposit")
@click.argument("actor")
@click.argument("amount", type=int)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def deposit(ctx: click.Context, actor: str, amount: int, as_json: bool) -> None:
    """Issue AMOUNT tokens to ACTOR's wallet."""
    import secrets

    from aismm import registry
    from aismm.errors import UsageError
    from aismm.ledger import Ledger

    hub = hub_from(ctx)
    registry.actor(hub, actor)
    if amount <= 0:
        raise UsageError(f"AMOUNT {amount}: must be a positive whole number of tokens")
    with Ledger(hub.db_path, hub.clock) as ledger:
        ledger.deposit(actor, amount, cause=f"deposit-{secrets.token_hex(8)}")
        balance = ledger.balance(f"client:{actor}")
    emit({"actor": actor, "deposited": amount, "balance": balance}, as_json,
         f"Deposited {amount} tokens to {actor}; balance {balance}")


@wallet.command("balance")
@click.argument("actor")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def balance(ctx: click.Context, actor: str, as_json: bool) -> None:
    """Show ACTOR's wallet (and, for an owner, its provider earnings)."""
    from aismm import registry
    from aismm.ledger import Ledger

    hub = hub_from(ctx)
    found = registry.actor(hub, actor)
    with Ledger(hub.db_path, hub.clock) as ledger:
        data = {"actor": actor, "wallet": ledger.balance(f"client:{actor}"),
                "earned": ledger.balance(f"provider:{found.owner}"), "owner": found.owner}
    emit(data, as_json, f"{actor}: wallet {data['wallet']} tokens; provider {found.owner} "
         f"earned {data['earned']}")


@click.group("ledger")
def ledger_group() -> None:
    """Read and check the escrow ledger."""


@ledger_group.command("history")
@click.argument("account", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def history(ctx: click.Context, account: str | None, as_json: bool) -> None:
    """List transfers (of ACCOUNT, e.g. client:alice or escrow:<mission>)."""
    from dataclasses import asdict

    from aismm.ledger import Ledger

    hub = hub_from(ctx)
    with Ledger(hub.db_path, hub.clock) as ledger:
        rows = [asdict(t) for t in ledger.history(account)]
    emit(rows, as_json, "\n".join(
        f"{r['at']} {r['action']:<10} {r['debit']:>28} -> {r['credit']:<28} {r['amount']:>8}"
        for r in rows) or "(no transfers)")


@ledger_group.command("check")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def check(ctx: click.Context, as_json: bool) -> None:
    """Check every ledger invariant; exit 1 with one line per violation."""
    from aismm.errors import CheckFailed
    from aismm.ledger import Ledger

    hub = hub_from(ctx)
    with Ledger(hub.db_path, hub.clock) as ledger:
        violations = ledger.check()
        total = sum(ledger.balances().values())
    emit({"ok": not violations, "violations": violations, "sum": total}, as_json,
         None if violations else f"ledger check: clean (sum of balances {total})")
    if violations:
        raise CheckFailed("ledger check", violations)


def register(cli: click.Group) -> None:
    cli.add_command(wallet)
    cli.add_command(ledger_group)
