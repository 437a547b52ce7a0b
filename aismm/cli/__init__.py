"""The ``aismm`` command line; the only package that imports click.

Exit codes (mapped here and nowhere else): 0 ok, 1 rejected / check failed, 2 bad input,
3 internal error (traceback only with ``AISMM_DEBUG=1``), 130 interrupted.
"""

from __future__ import annotations

import atexit
import importlib
import os
import re
import sys
import threading
import traceback

import click

from aismm.cli.common import Context
from aismm.core.errors import AismmError
from aismm.core.startup import skip_plugin_scan

__all__ = ["COMMANDS", "LazyGroup", "cli", "main"]

#: Each top-level command and the module under ``aismm.cli`` whose ``register(cli)`` adds it.
#: A command's module (and what it imports) is loaded only when that command is looked up, so
#: ``aismm wallet deposit`` does not pay for importing the export, the server or the demo.
COMMANDS = {
    "actor": "actor", "agent": "agent", "contract": "contract", "demo": "demo",
    "export": "ownership", "hub": "hub", "import": "ownership", "ledger": "ledger",
    "mission": "mission", "process": "process", "reconcile": "process", "schema": "schema",
    "serve": "process", "tick": "process", "token": "token", "verify": "ownership",
    "wallet": "ledger",
}


class LazyGroup(click.Group):
    """The ``aismm`` group: its commands are those of :data:`COMMANDS`, each module imported on
    first use (``--help`` and the README's CLI table load them all)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if cmd_name not in self.commands and module is not None:
            importlib.import_module(f"aismm.cli.{module}").register(self)
        return self.commands.get(cmd_name)


@click.group(cls=LazyGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--hub", "hub", envvar="AISMM_HUB", metavar="DIR",
              help="The hub folder (default: $AISMM_HUB).")
@click.version_option(package_name="aismm")
@click.pass_context
def cli(ctx: click.Context, hub: str | None) -> None:
    """AISMM: agents working for each other under contracts, in signed git repositories."""
    ctx.obj = Context(hub)


_QUOTED = re.compile(r"'(-{1,2}[A-Za-z0-9][\w-]*|[A-Z][A-Z0-9_]*)'")


def _command_path(argv: list[str]) -> str:
    """The command an argument list names (``aismm mission create``), read off its words."""
    path, words = ["aismm"], iter(argv)
    command: click.Command = cli
    for word in words:
        if not isinstance(command, click.Group):
            break
        if word.startswith("-"):
            option = next((p for p in command.params if isinstance(p, click.Option)
                           and word.partition("=")[0] in p.opts), None)
            if option is not None and not option.is_flag and "=" not in word:
                next(words, None)
            continue
        sub = command.get_command(click.Context(command), word)
        if sub is None:
            break
        path.append(word)
        command = sub
    return " ".join(path)


def usage_line(exc: click.ClickException, argv: list[str] | None = None) -> str:
    """One ``aismm: <command>: <what>; see aismm <command> --help`` line for an error click
    found while parsing (missing argument or option, unknown option or command, bad value)."""
    ctx: click.Context | None = getattr(exc, "ctx", None)
    path = ctx.command_path if ctx is not None else _command_path(
        sys.argv[1:] if argv is None else argv)
    where = path.removeprefix("aismm").strip() or "usage"
    fix = f"see {path} --help"
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):
        group = ctx.command if ctx is not None else None
        names = ", ".join(group.list_commands(ctx)) if ctx is not None and \
            isinstance(group, click.Group) else ""
        what = f"missing command{f' (one of {names})' if names else ''}"
        return f"aismm: {where}: {what}; {fix}"
    text = " ".join(exc.format_message().split())
    text = _QUOTED.sub(r"\1", text).replace(". (", " (")
    text = text.rstrip(".").replace("(Did you mean", "(did you mean")
    what = text[:1].lower() + text[1:] if text[1:2].islower() or not text[1:2] else text
    return f"aismm: {where}: {what}; {fix}"


def main(argv: list[str] | None = None) -> None:
    """Run the CLI and map every outcome to an exit code, in this one place.

    Called as the program (no ``argv``: the ``aismm`` script, ``python -m aismm``), it ends
    the process as soon as the exit code is known (:func:`_end`); given ``argv`` (tests, an
    embedding program) it raises :class:`SystemExit` as usual.
    """
    try:
        _main(argv)
    except SystemExit as exc:
        if argv is None and isinstance(exc.code, int):
            _end(exc.code)
        raise


def _end(code: int) -> None:
    """Exit with ``code`` without the interpreter's teardown (freeing every module and object
    one by one: ~50 ms of CPU, more than most commands' own work), when it has nothing else
    to do: the output is flushed, no other thread runs (a notice still being sent) and no
    exit handler is registered (e.g. a temporary folder's cleanup). Otherwise returns, and
    the caller exits as usual."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe: the usual exit reports it
        return
    if threading.active_count() == 1 and atexit._ncallbacks() == 0:
        os._exit(code)


def _main(argv: list[str] | None) -> None:
    debug = os.environ.get("AISMM_DEBUG") == "1"
    skip_plugin_scan()  # before any model is built (aismm.core.startup)
    try:
        cli.main(args=argv, prog_name="aismm", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aismm: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(usage_line(exc, argv), err=True)
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
    except Exception as exc:  # the one place that turns bugs into exit 3
        click.echo(f"aismm: internal error ({type(exc).__name__}: {exc}); rerun with "
                   "AISMM_DEBUG=1 for a traceback and report it", err=True)
        if debug:
            traceback.print_exc()
        sys.exit(3)
    sys.exit(0)
