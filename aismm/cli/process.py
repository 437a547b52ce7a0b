"""``aismm process``, ``tick`` and ``reconcile``: the hub's background work, by hand."""

from __future__ import annotations

import click

from aismm.cli.common import emit, hub_from
from aismm.services import client, worker


def _out(lines: list[str], as_json: bool) -> None:
    emit({"lines": lines}, as_json, "\n".join(line.removeprefix("aismm: ") for line in lines)
         or "nothing to do")


@click.command("process")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def process(ctx: click.Context, as_json: bool) -> None:
    """Drain the event outbox (idempotent; safe to run twice or concurrently)."""
    from aismm.services import events, orchestration, settlement

    hub = hub_from(ctx)
    lines = settlement.reconcile(hub)
    lines = [line for line in lines if "nothing to finish" not in line] + worker.process(hub)
    resumed = orchestration.resume(hub)  # workflows whose decision's event failed or was lost
    lines += resumed + (worker.process(hub) if resumed else [])
    _out(lines + events.in_progress(hub), as_json)


@click.command("tick")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def tick(ctx: click.Context, as_json: bool) -> None:
    """Apply due timers (deadlines, acceptance windows, workflow timeouts) on the hub clock."""

    _out(client.tick(hub_from(ctx)), as_json)


@click.command("reconcile")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def reconcile(ctx: click.Context, as_json: bool) -> None:
    """Finish half-done settlements and refunds; cross-check tags against the ledger."""
    from aismm.services import settlement

    _out(settlement.reconcile(hub_from(ctx)), as_json)


def _seconds(ctx: click.Context, param: click.Parameter, value: float) -> float:
    """``--interval``: a positive, finite number of seconds (not 0, -1, nan or inf), at most a
    day (timers must still run, and the OS cannot wait for 1e300 seconds)."""
    import math

    from aismm.core.errors import UsageError

    if not math.isfinite(value) or not 0 < value <= 86400:
        raise UsageError(f"--interval {value:g}: not a positive number of seconds up to 86400 "
                         "(a day); give one like 5 or 0.5")
    return value


@click.command("serve")
@click.option("--interval", type=float, default=5.0, show_default=True, callback=_seconds,
              help="Seconds between periodic passes (timers, reconciler).")
@click.option("--once", is_flag=True, help="One pass, then exit.")
@click.option("--http", "http", metavar="HOST:PORT", is_flag=False, flag_value="127.0.0.1:8470",
              default=None, help="Also serve git, the API and the pages over HTTP "
              "(alone: 127.0.0.1:8470; port 0 picks a free one).")
@click.pass_context
def serve(ctx: click.Context, interval: float, once: bool, http: str | None) -> None:
    """Run the resident hub process: hook socket, outbox, timers, reconciler, watcher."""
    from aismm.serve import Server
    from aismm.web.server import parse_address

    hub = hub_from(ctx)
    address = parse_address(http) if http is not None else None
    try:
        Server(hub, lambda line: click.echo(line, err=True), interval, address).run(once=once)
    except KeyboardInterrupt:
        click.echo("aismm serve: stopped", err=True)


def register(cli: click.Group) -> None:
    for command in (process, tick, reconcile, serve):
        cli.add_command(command)
