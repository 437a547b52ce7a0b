"""``aismm wallet`` and ``aismm ledger``: balances and the escrow ledger."""

from __future__ import annotations

import click

from aismm.cli.common import emit, hub_from


@click.group("wallet")
def wallet() -> None:
    """Deposit tokens and read balances."""


@wallet.command("deposit")
@click.argument("actor")
@click.argument("amount", type=int)
@click.option("--ref", "reference", metavar="REFERENCE",
              help="Your reference for this deposit (an invoice or payment id): the same "
                   "REFERENCE and AMOUNT again is a no-op that prints the original deposit; "
                   "another AMOUNT is refused. Scoped to ACTOR's wallet.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def deposit(ctx: click.Context, actor: str, amount: int, reference: str | None,
            as_json: bool) -> None:
    """Issue AMOUNT tokens to ACTOR's wallet (once per --ref REFERENCE).

    Without --ref every call is a new deposit, so a retried call posts twice; give --ref to
    make retries safe. AMOUNT is at most 10^15 tokens (Money limits in docs/protocol.md).
    """
    import re
    import secrets

    from aismm.core.errors import UsageError
    from aismm.infra.ledger import MAX_AMOUNT, Ledger
    from aismm.state import registry

    hub = hub_from(ctx)
    registry.actor(hub, actor)
    if amount <= 0:
        raise UsageError(f"AMOUNT {amount}: must be a positive whole number of tokens")
    if amount > MAX_AMOUNT:
        raise UsageError(f"wallet deposit: AMOUNT {amount} is above the limit of {MAX_AMOUNT} "
                         f"tokens; deposit at most {MAX_AMOUNT} at a time")
    if reference is not None and not re.fullmatch(r"[^\x00-\x1f\x7f]{1,200}", reference):
        raise UsageError(f"wallet deposit: --ref {reference!r} is not 1-200 printable "
                         "characters; use your invoice or payment id")
    cause = f"deposit-{secrets.token_hex(8)}" if reference is None else f"ref:{reference}"
    with Ledger(hub.db_path, hub.clock) as ledger:
        earlier = None if reference is None else ledger.find_deposit(actor, cause)
        if earlier is not None and earlier.amount != amount:
            raise UsageError(f"wallet deposit: --ref {reference} was already used for "
                             f"{earlier.amount} tokens to {actor} at {earlier.at}; repeat it "
                             f"with AMOUNT {earlier.amount} or give a new --ref")
        posted = earlier or ledger.deposit(actor, amount, cause=cause)[0]
        balance = ledger.balance(f"client:{actor}")
    data = {"actor": actor, "deposited": amount, "balance": balance, "ref": reference,
            "replayed": earlier is not None, "transfer": posted.to_dict()}
    if earlier is not None:
        text = (f"Deposit --ref {reference} was already posted at {earlier.at}: {amount} tokens "
                f"to {actor} (transfer {earlier.id}); nothing changed; balance {balance}")
    else:
        text = f"Deposited {amount} tokens to {actor}; balance {balance}"
    emit(data, as_json, text)


@wallet.command("balance")
@click.argument("actor")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def balance(ctx: click.Context, actor: str, as_json: bool) -> None:
    """Show ACTOR's wallet (and, for an owner, its provider earnings)."""
    from aismm.infra.ledger import Ledger
    from aismm.state import registry

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

    from aismm.infra.ledger import Ledger

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
    from aismm.core.errors import CheckFailed
    from aismm.infra.ledger import Ledger

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
