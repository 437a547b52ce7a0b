"""``aismm schema export``: the published JSON Schemas, generated from the models."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("schema")
def group() -> None:
    """Published meta-schemas of every file format."""


@group.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def export(directory: Path) -> None:
    """Write the JSON Schemas of every document format into DIRECTORY."""
    from aismm.core.schemas import write_all

    for path in write_all(directory):
        click.echo(str(path))


def register(cli: click.Group) -> None:
    cli.add_command(group)
