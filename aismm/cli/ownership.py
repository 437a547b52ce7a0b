"""``aismm export``, ``aismm verify`` and ``aismm import``: the ownership ladder.

Exit codes: 0 all good, 1 a check failed (the line names the stage and the object), 2 bad
input.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from aismm.cli.common import emit, hub_from, read_text
from aismm.core.errors import CheckFailed, UsageError
from aismm.core.signing import parse_public_key
from aismm.services import export as exporter
from aismm.services import restore
from aismm.services import verify as verifier

ProgressFn = Callable[[str, int, int], None]


@contextmanager
def _progress(label: str, quiet: bool) -> Iterator[ProgressFn | None]:
    """A click progress bar on a terminal (stderr); nothing otherwise."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    bar = {"pos": 0}
    with click.progressbar(length=1, label=label, file=sys.stderr) as shown:

        def step(what: str, done: int, total: int) -> None:
            shown.length = max(total, 1)
            shown.label = f"{label} {what}"
            shown.update(done - bar["pos"])
            bar["pos"] = done

        yield step


def _passphrase(env: str | None, confirm: bool) -> bytes:
    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise UsageError(f"--passphrase-env {env}: the variable is unset or empty; export "
                             "it with the passphrase")
        return value.encode()
    if not sys.stdin.isatty():
        raise UsageError("--include-secrets: no terminal to read the passphrase from; pass "
                         "--passphrase-env VAR")
    text: str = click.prompt("Passphrase for the keys", hide_input=True,
                             confirmation_prompt=confirm, err=True)
    return text.encode()


@click.command("export")
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--scope", default="hub", show_default=True, metavar="hub|client:<id>",
              help="The whole hub, or one client's missions, contracts, hired agents' "
                   "manifests and ledger slice.")
@click.option("--include-secrets", is_flag=True,
              help="Also carry the hosted private keys, encrypted with a passphrase.")
@click.option("--passphrase-env", metavar="VAR",
              help="Read the passphrase from environment variable VAR (else the terminal).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def export_cmd(ctx: click.Context, dest: Path, scope: str, include_secrets: bool,
               passphrase_env: str | None, as_json: bool) -> None:
    """Write the hub (or one client's share) to the archive DEST, signed by the platform."""
    if passphrase_env is not None and not include_secrets:
        raise UsageError("--passphrase-env: only with --include-secrets; add it or drop the "
                         "option")
    hub = hub_from(ctx)
    secret = _passphrase(passphrase_env, confirm=True) if include_secrets else None
    with _progress("export", as_json) as step:
        done = exporter.export_hub(hub, dest, scope, secret, step)
    pos = done.position
    emit(done.to_json(), as_json, f"Exported {done.scope} to {done.archive}: {done.repos} "
         f"repositories, {done.transfers} transfers, event {pos.event}, transfer "
         f"{pos.transfer}\n  manifest sha256 {done.digest}"
         + ("\n  hosted keys included (encrypted)" if done.secrets else ""))


@click.command("verify")
@click.argument("src", type=click.Path(path_type=Path))
@click.option("--trust-key", "trust_key", type=click.Path(path_type=Path), metavar="FILE",
              help="The platform's public key (.pub) the export must be signed by (default: "
                   "the platform key its own allowed_signers names).")
@click.option("--allowed-signers", type=click.Path(path_type=Path), metavar="FILE",
              help="For a mission clone: the hub's allowed_signers file.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
def verify_cmd(src: Path, trust_key: Path | None, allowed_signers: Path | None,
               as_json: bool) -> None:
    """Check an export archive, a hub folder or a mission clone, stage by stage."""
    trusted = None
    if trust_key is not None:
        trusted = [parse_public_key(read_text(trust_key, "--trust-key").strip(),
                                    f"--trust-key {trust_key}")]
    with _progress("verify", as_json) as step:
        report = verifier.verify(src, trusted, progress=step, allowed_signers=allowed_signers)
    if as_json:
        emit(report.to_dict(), True)
    else:
        for stage in report.stages:
            click.echo(stage.line())
    bad = report.first_failure()
    if bad is not None:
        raise CheckFailed("verify", [f"{bad['stage']}: {bad['object']}: {bad['what']}; do not "
                                     "trust this copy"])


@click.command("import")
@click.argument("src", type=click.Path(path_type=Path))
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--passphrase-env", metavar="VAR",
              help="The variable holding the passphrase of the export's keys.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def import_cmd(src: Path, directory: Path, passphrase_env: str | None, as_json: bool) -> None:
    """Verify the export SRC and build a working hub from it at DIRECTORY."""
    secret: bytes | Callable[[], bytes] | None = None
    if passphrase_env is not None:
        secret = _passphrase(passphrase_env, confirm=False)
    elif sys.stdin.isatty():  # asked only if the export carries keys
        secret = lambda: _passphrase(None, confirm=False)  # noqa: E731 (a deferred question)
    with _progress("import", as_json) as step:
        done = restore.import_hub(src, directory, secret, step)
    text = (f"Imported {done.scope} into {done.hub} ({done.repos} repositories, "
            f"{done.keys} hosted keys)\nUse it with: export AISMM_HUB={done.hub}"
            if done.imported else f"{done.hub} already holds this export; nothing to do")
    emit(done.to_json(), as_json, text)


def register(cli: click.Group) -> None:
    cli.add_command(export_cmd)
    cli.add_command(verify_cmd)
    cli.add_command(import_cmd)
