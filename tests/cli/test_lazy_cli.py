"""The ``aismm`` group loads a command's module only when that command is used."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import click

from aismm.cli import COMMANDS, cli


def test_the_lazy_map_names_exactly_what_each_module_registers() -> None:
    for module in sorted(set(COMMANDS.values())):
        group = click.Group("probe")
        importlib.import_module(f"aismm.cli.{module}").register(group)
        assert sorted(group.commands) == sorted(n for n, m in COMMANDS.items() if m == module)
    ctx = click.Context(cli)
    assert cli.list_commands(ctx) == sorted(COMMANDS)
    assert all(cli.get_command(ctx, name) is not None for name in COMMANDS)
    assert cli.get_command(ctx, "nonsense") is None


def test_a_command_imports_only_its_own_module() -> None:
    probe = ("import json, sys\nfrom aismm.cli import cli\nimport click\n"
             "before = sorted(m for m in sys.modules if m.startswith('aismm.'))\n"
             "cli.get_command(click.Context(cli), 'wallet')\n"
             "after = sorted(m for m in sys.modules if m.startswith('aismm.cli.'))\n"
             "print(json.dumps([before, after]))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    before, after = json.loads(done.stdout)
    assert not [m for m in before if m.startswith(("aismm.services", "aismm.infra"))], before
    assert after == ["aismm.cli.common", "aismm.cli.ledger"]
