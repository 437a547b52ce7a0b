"""Generate the README's CLI reference from the click definitions (so it cannot drift).

``python -m aismm.cli.docs`` prints it; ``python -m aismm.cli.docs --write README.md`` replaces
the block between the ``<!-- cli:start -->`` and ``<!-- cli:end -->`` markers.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

START, END = "<!-- cli:start -->", "<!-- cli:end -->"


def _walk(command: click.Command, path: list[str], out: list[str]) -> None:
    ctx = click.Context(command, info_name=" ".join(path))
    if isinstance(command, click.Group):  # the aismm group loads its commands on demand
        for name in sorted(command.list_commands(ctx)):
            sub = command.get_command(ctx, name)
            if sub is not None:
                _walk(sub, [*path, name], out)
        return
    pieces = command.collect_usage_pieces(ctx)
    summary = (command.help or "").strip().splitlines()[0] if command.help else ""
    out.append(f"| `{' '.join(path)} {' '.join(pieces)}` | {summary} |")


def reference() -> str:
    """The CLI reference as a Markdown table."""
    from aismm.cli import cli

    rows: list[str] = []
    _walk(cli, ["aismm"], rows)
    head = ["| command | what it does |", "| --- | --- |"]
    note = ("\nGlobal: `--hub DIR` (or `AISMM_HUB`); read commands take `--json`; "
            "`aismm COMMAND --help` lists every option.\n")
    return "\n".join(head + [r.replace("[OPTIONS] ", "") for r in rows]) + "\n" + note


def splice(readme: str) -> str:
    """README text with the generated block replaced."""
    before, _, rest = readme.partition(START)
    _, _, after = rest.partition(END)
    return f"{before}{START}\n{reference()}{END}{after}"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--write":
        target = Path(sys.argv[2])
        target.write_text(splice(target.read_text()))
    else:
        sys.stdout.write(reference())
