"""``aismm hub``: create and describe a hub."""

from __future__ import annotations

from pathlib import Path

import click

from aismm.cli.common import assessment_workers, context_of, emit, hub_from
from aismm.services.hubs import init_hub


@click.group("hub")
def group() -> None:
    """Create and inspect the embedded hub."""


@group.command("init")
@click.argument("directory", type=click.Path(path_type=Path), required=False)
@click.option("--with-reference-agents", is_flag=True,
              help="Register the bundled reference agents as hosted agents.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def init(ctx: click.Context, directory: Path | None, with_reference_agents: bool,
         as_json: bool) -> None:
    """Create a hub in DIRECTORY (default: --hub / $AISMM_HUB)."""
    from aismm.infra.hub import find_hub

    root = directory or find_hub(context_of(ctx).hub_arg)
    isolation = None
    if with_reference_agents:  # assessing runs agent code: a hub that cannot contain it stops here
        from aismm.infra import sandbox

        isolation = sandbox.isolation()
    hub = init_hub(root)
    agents: list[str] = []
    if with_reference_agents:
        from aismm.services import market, worker, workflowbench

        progress = None if as_json else lambda line: click.echo(f"  assessing {line}", err=True)
        # ~130 sandboxed runs: warm workers import the programs once and fork each run into
        # the same isolation (a third less CPU); a worker that cannot start means one-shot runs
        with assessment_workers():
            agents = market.register_reference_agents(hub, progress=progress)
            for agent in agents:  # orchestrators are assessed on workflow runs of the others
                if workflowbench.is_orchestrator(hub, agent):
                    workflowbench.assess(hub, agent, worker.process, progress=progress)
    from aismm.state import registry

    contracts = sorted(registry.contracts(hub))
    data = {"hub": str(hub.root), "platform": hub.config.platform, "contracts": contracts,
            "agents": agents, "sandbox": isolation}
    emit(data, as_json, f"Created hub {hub.root}\n  platform: {hub.config.platform}\n"
         f"  contracts: {', '.join(contracts)}" +
         (f"\n  agents: {', '.join(agents)} (assessed in the {isolation} sandbox)"
          if agents else "") +
         f"\nUse it with: export AISMM_HUB={hub.root}")


@group.command("info")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def info(ctx: click.Context, as_json: bool) -> None:
    """Show the hub's layout and configuration."""
    from aismm.core.errors import SandboxError
    from aismm.infra import sandbox

    hub = hub_from(ctx)
    try:
        isolation = sandbox.isolation()
    except SandboxError as exc:
        isolation = f"none ({exc})"
    config = hub.config.model_dump(mode="json")
    data = {"hub": str(hub.root), "config": config,
            "allowed_signers": str(hub.allowed_signers_path), "sandbox": isolation}
    lines = [f"hub: {hub.root}", *(f"{k}: {v}" for k, v in config.items()),
             f"allowed_signers: {hub.allowed_signers_path}", f"sandbox: {isolation}"]
    emit(data, as_json, "\n".join(lines))


def register(cli: click.Group) -> None:
    cli.add_command(group)
