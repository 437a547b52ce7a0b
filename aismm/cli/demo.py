"""``aismm demo``: the whole story on a fresh hub."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from aismm.cli.common import assessment_workers


@click.command("demo")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="Where to build the demo hub (default: a new temporary folder).")
def demo(directory: Path | None) -> None:
    """Run the marketplace end to end on a fresh embedded hub, narrated."""
    from aismm.core.errors import UsageError
    from aismm.demo import run

    target = directory or Path(tempfile.mkdtemp(prefix="aismm-demo-"))
    if target.exists() and any(target.iterdir()):
        raise UsageError(f"--dir {target}: folder is not empty; pick a new folder")
    with assessment_workers():  # the demo assesses four agents: warm sandbox workers
        run(target, click.echo)


def register(cli: click.Group) -> None:
    cli.add_command(demo)
