"""``aismm agent``: manifests, assessment, the listing and the routing ranking."""

from __future__ import annotations

from pathlib import Path

import click

from aismm.cli.common import assessment_workers, emit, hub_from
from aismm.infra.hub import Hub


@click.group("agent")
def group() -> None:
    """Publish agents, assess them, and browse the marketplace."""


@group.command("register")
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--as", "provider", help="Sign as this provider (default: the manifest's owner).")
@click.option("--hosted", is_flag=True, help="Register the agent as a hosted actor if needed.")
@click.option("--key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The provider's own private key (for a provider that keeps its own).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def register_(ctx: click.Context, manifest: Path, provider: str | None, hosted: bool,
              key: Path | None, as_json: bool) -> None:
    """Validate MANIFEST and publish it in registry.git, signed by the provider."""
    from aismm.services import market

    hub = hub_from(ctx)
    man = market.load_manifest(manifest.read_bytes(), str(manifest))
    from aismm.core.signing import read_private_key_file

    market.register_manifest(hub, man, provider, hosted=hosted,
                             key=read_private_key_file(key) if key else None)
    emit(man.model_dump(mode="json"), as_json,
         f"Published {man.id} (owner {man.owner}) for {', '.join(man.contracts)}; "
         f"assess it with `aismm agent assess {man.id}`")


@group.command("show")
@click.argument("agent_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def show(ctx: click.Context, agent_id: str, as_json: bool) -> None:
    """Show an agent's manifest and latest assessment."""
    from aismm.core.errors import UsageError
    from aismm.core.model import dump_yaml
    from aismm.state import registry

    hub = hub_from(ctx)
    man = registry.manifests(hub).get(agent_id)
    if man is None:
        raise UsageError(f"{agent_id}: no such agent; see `aismm agent list`")
    record = registry.latest_assessment(hub, agent_id)
    data = {"manifest": man.model_dump(mode="json"),
            "assessment": record.to_json() if record else None}
    emit(data, as_json, dump_yaml(data).rstrip())


@group.command("assess")
@click.argument("agent_id")
@click.option("--timeout", type=float, default=None,
              help="Seconds an external agent gets per sandbox task (external agents only).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def assess(ctx: click.Context, agent_id: str, timeout: float | None, as_json: bool) -> None:
    """Run the contract's benchmark suite against AGENT_ID; list it only if it passes."""
    from aismm.core.assessment import AssessmentRecord
    from aismm.core.errors import Rejection
    from aismm.services import market, reviewbench, worker, workflowbench
    from aismm.state import registry

    hub = hub_from(ctx)
    progress = None if as_json else lambda line: click.echo(f"  {line}", err=True)
    man = registry.manifests(hub).get(agent_id)
    # a hosted agent's benchmark is many sandboxed runs here (warm workers); an external one
    # delivers by git, judged by the hooks' processes, so none would run in this one
    with assessment_workers(man is not None and man.runtime.kind != "git"):
        if workflowbench.is_orchestrator(hub, agent_id):  # assessed on real workflow runs
            record = AssessmentRecord.model_validate(
                workflowbench.assess(hub, agent_id, worker.process, progress=progress))
        else:
            record = market.assess(hub, agent_id, progress=progress, timeout=timeout)
    lines = [f"{agent_id}: {record.status.upper()}" + (f" ({record.badge} badge)"
                                                        if record.badge else ""),
             f"  quality {record.quality}  p50 {record.p50_seconds}s  cost {record.cost}"]
    for t in record.tasks:
        why = market.task_reason(t)
        lines.append(f"  {t['contract']} {t['task']}: " + (
            f"said {t['verdict']}, expected {t['expected']}" if reviewbench.is_review(t) else
            f"DoD {t['dod']}, quality {t['quality']}") + (f"; first reason: {why}" if why else ""))
    lines += [f"  reason: {r}" for r in record.reasons]
    emit(record.to_json(), as_json, "\n".join(lines))
    if not record.listed:
        raise Rejection(f"{agent_id}: rejected by assessment ({'; '.join(record.reasons)}); "
                        "improve the agent and assess again")


def _known_filters(hub: Hub, contract: str | None, role: str | None) -> None:
    """A filter naming no published contract or no role is bad input, not an empty answer."""
    from typing import get_args

    from aismm.core.actor import Role
    from aismm.core.errors import ContractError, UsageError
    from aismm.state import registry

    if contract is not None:
        try:
            registry.resolve_contract(hub, contract)
        except ContractError as exc:
            known = sorted(registry.contracts(hub))
            raise UsageError(f"--contract {contract}: no such published contract; use one of "
                             f"{', '.join(known) or '(none published)'} (the version is "
                             "optional)") from exc
    if role is not None and role not in get_args(Role):
        raise UsageError(f"--role {role}: not a role; use one of {', '.join(get_args(Role))}")


@group.command("list")
@click.option("--contract", help="Only agents serving this contract.")
@click.option("--role", help="Only agents with this role.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def list_(ctx: click.Context, contract: str | None, role: str | None, as_json: bool) -> None:
    """The marketplace listing with reputation figures."""
    from aismm.services import market

    hub = hub_from(ctx)
    _known_filters(hub, contract, role)
    from aismm.core.reputation import shown_quality

    rows = market.listing(hub, contract, role)
    fmt = "{:<20} {:<10} {:<7} {:>6} {:>17} {:>11} {:>11} {:>9} {:>8} {:>9} {:>4}"
    lines = [fmt.format("agent", "status", "badge", "price", "quality", "p50 s", "cost/acc",
                        "stars", "rank", "trend", "n")]
    for r in rows:
        def f(v: object, n: int, spec: str = "{:.1f}") -> str:
            """A figure with the number of jobs behind it."""
            return "-" if v is None else f"{spec.format(v)} ({n})"
        jobs = r.executions
        lines.append(fmt.format(
            r.agent, r.status, r.badge or "-", r.price,
            shown_quality(r.quality, jobs, r.assessed_quality),
            f(r.speed_p50, r.delivered), f(r.cost_per_accepted, r.accepted),
            f(r.stars, jobs, "{:.1f}★"), f(r.rank, jobs, "{:.0f}"),
            f(r.trend_30d, jobs, "{:+.1f}"), jobs))
    if rows:
        lines.append("(n): the jobs behind each figure; (assessed): the benchmark score, shown "
                     "until the agent has jobs")
    emit([r.to_json() for r in rows], as_json, "\n".join(lines))


@group.command("rank")
@click.option("--contract", required=True, help="The contract to route for.")
@click.option("--client", help="Rank as seen by this client (its own agents are excluded).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def rank(ctx: click.Context, contract: str, client: str | None, as_json: bool) -> None:
    """Rank listed agents for a contract, showing every input of the routing score."""
    from aismm.services import market

    hub = hub_from(ctx)
    _known_filters(hub, contract, None)
    from aismm.core.reputation import jobs

    rows = market.ranking(hub, contract, client)
    lines = []
    for r in rows:
        if isinstance(r, market.RankedRow):
            i = r.inputs
            basis = "newcomer prior" if i["newcomer"] else jobs(i["executions"])
            lines.append(f"{r.agent:<20} score {r.score:6.2f}  reputation(lcb) "
                         f"{r.reputation:5.1f} ({basis})  price {i['price']} (score "
                         f"{r.price_score})  load {i['open_attempts']}/{i['capacity']} "
                         f"(score {r.load_score})")
        else:
            lines.append(f"{r.agent:<20} excluded: {r.why}")
    emit([r.to_json() for r in rows], as_json, "\n".join(lines) or "(no agents)")


@group.command("inbox")
@click.argument("agent_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def inbox_(ctx: click.Context, agent_id: str, as_json: bool) -> None:
    """The open assignments of AGENT_ID (benchmark missions too) and what to do next."""
    from aismm.services import inbox

    rows = inbox.inbox(hub_from(ctx), agent_id)
    lines = []
    for r in rows:
        kind = ", benchmark" if r["benchmark"] else ""
        lines += [f"{r['mission']}  {r['contract']}  {r['state']}  ({r['tier']}{kind})",
                  f"  next: {r['next']}",
                  f"  clone: git clone {r['clone']}  (branch {r['branch']})",
                  f"  offered: {r['offered_at'] or '-'}  deadline: {r['deadline']}"]
    emit(rows, as_json, "\n".join(lines) or f"(no open assignments for {agent_id})")


def register(cli: click.Group) -> None:
    cli.add_command(group)
