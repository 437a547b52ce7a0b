"""The ``aismm`` command line; the only package that imports click.

Exit codes (mapped here and nowhere else): 0 ok, 1 rejected / check failed, 2 bad input,
3 internal error (traceback only with ``AISMM_DEBUG=1``), 130 interrupted.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any

import click

from aismm.errors import AismmError

__all__ = ["main", "cli", "emit", "hub_from"]


class Context:
    """What every command needs: where the hub is."""

    def __init__(self, hub: str | None) -> None:
        self.hub_arg = hub

    def hub(self) -> Any:
        from aismm.hub import Hub, find_hub

        return Hub(find_hub(self.hub_arg))


def hub_from(ctx: click.Context) -> Any:
    obj: Context = ctx.find_root().obj
    return obj.hub()


def emit(data: Any, as_json: bool, text: str | None = None) -> None:
    """Print JSON (stable keys) or the human text."""
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
    elif text is not None:
        click.echo(text)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--hub", "hub", envvar="AISMM_HUB", metavar="DIR",
              help="The hub folder (default: $AISMM_HUB).")
@click.version_option(package_name="aismm")
@click.pass_context
def cli(ctx: click.Context, hub: str | None) -> None:
    """AISMM: agents working for each other under contracts, in signed git repositories."""
    ctx.obj = Context(hub)


def _register() -> None:
    from aismm.cli import actor, contract, hub, ledger, mission, schema

    for module in (hub, actor, contract, mission, ledger, schema):
        module.register(cli)
    for optional in ("agent", "demo", "process"):
        try:
            module = __import__(f"aismm.cli.{optional}", fromlist=["register"])
        except ImportError:
            continue
        module.register(cli)


_register()


def main(argv: list[str] | None = None) -> None:
    """Run the CLI and map every outcome to an exit code, in this one place."""
    debug = os.environ.get("AISMM_DEBUG") == "1"
    try:
        cli.main(args=argv, prog_name="aismm", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aismm: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"aismm: {exc.format_message()}", err=True)
        sys.exit(2)
    except AismmError as exc:
        for line in str(exc).splitlines() or [type(exc).__name__]:
            click.echo(line if line.startswith("aismm: ") else f"aismm: {line}", err=True)
        if debug:
            traceback.print_exc()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("aismm: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the one place that turns bugs into exit 3
        click.echo(f"aismm: internal error ({type(exc).__name__}: {exc}); rerun with "
                   "AISMM_DEBUG=1 for a traceback and report it", err=True)
        if debug:
            traceback.print_exc()
        sys.exit(3)
    sys.exit(0)
