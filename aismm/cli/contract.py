"""``aismm contract``: the published catalog."""

from __future__ import annotations

from pathlib import Path

import click

from aismm.cli.common import emit, hub_from


@click.group("contract")
def group() -> None:
    """List, show and validate contracts."""


@group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def list_(ctx: click.Context, as_json: bool) -> None:
    """List the contracts published in the hub."""
    from aismm.state import registry

    found = registry.contracts(hub_from(ctx))
    rows = [{"ref": ref, "title": c.title, "category": c.category,
             "tiers": sorted(c.tiers), "price": [c.pricing.min, c.pricing.max]}
            for ref, c in sorted(found.items())]
    emit(rows, as_json, "\n".join(f"{r['ref']:<34} {r['title']}" for r in rows) or "(none)")


@group.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def show(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Show a published contract (REF is contract.<name>[@version])."""
    from aismm.core.model import dump_yaml
    from aismm.state import registry

    contract, _files, sha = registry.resolve_contract(hub_from(ctx), ref)
    data = {**contract.model_dump(mode="json", by_alias=True), "sha256": sha}
    emit(data, as_json, dump_yaml(data).rstrip())


@group.command("validate")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def validate(path: Path, as_json: bool) -> None:
    """Validate a contract folder (or its contract.yaml) without a hub."""
    from aismm.core.contract import load_contract_dir

    folder = path.parent if path.is_file() else path
    contract = load_contract_dir(folder)
    emit({"ref": contract.ref, "valid": True}, as_json, f"{contract.ref}: valid")


def register(cli: click.Group) -> None:
    cli.add_command(group)
