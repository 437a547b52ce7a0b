"""``aismm import``: a working hub built from an export, at another path or on another machine.

The export is verified first (every stage of :mod:`aismm.services.verify`), unpacked into a
quarantine folder beside the target, turned into a hub there (repositories from the bundles
with this hub's receive settings, hooks and ``allowed_signers`` path; ``hub.db`` from the
log, the execution records and the ledger rows; the hosted keys when the export carries them
and the passphrase opens them) and renamed into place in one step: a crash at any point
leaves the target absent or complete. Importing the same export again changes nothing (the
manifest's digest is kept in ``import.json``); an export older than the hub already at the
target is refused, a newer one replaces it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from aismm.core.errors import CheckFailed, Rejection, UsageError
from aismm.core.model import Strict, describe_validation
from aismm.infra import bundle
from aismm.infra.git import Repo
from aismm.infra.hub import Hub
from aismm.infra.ledger import Ledger
from aismm.infra.store import Store
from aismm.services import audit, export, registrar
from aismm.services import verify as verifier
from aismm.state import provision

__all__ = ["MARKER", "import_hub"]

MARKER = "import.json"  # in the imported hub: which export it is (digest, position)


def _crash_point(name: str) -> None:
    """Test hook: ``AISMM_CRASH_AT=import:<name>`` kills the process here (crash tests)."""
    if os.environ.get("AISMM_CRASH_AT") == f"import:{name}":
        os.kill(os.getpid(), 9)


class ImportMarker(Strict):
    """``import.json`` in an imported hub: which export it was built from."""

    digest: str
    position: export.Position
    format: int
    hub_id: str
    scope: str


class ImportSummary(Strict):
    """What ``aismm import`` did (``imported`` False: the hub already held this export)."""

    hub: str
    digest: str
    scope: str
    position: export.Position
    repos: int
    imported: bool
    keys: int

    def to_json(self) -> dict[str, Any]:
        """The summary as JSON (``aismm import --json``)."""
        return self.model_dump(mode="json")


def _position(position: export.Position) -> tuple[int, int]:
    return position.event, position.transfer


def _live_position(dest: Path) -> tuple[int, int]:
    """The (last event, last transfer) a hub holds now (it may have moved on since import)."""
    with Store(dest / "hub.db") as store:
        event = store.max_event_id()
    with Ledger(dest / "hub.db") as ledger:
        history = ledger.history()
    return event, history[-1].seq if history else 0


Passphrase = bytes | Callable[[], bytes] | None  # or how to ask for it, once it is needed


def import_hub(src: Path, dest: Path, passphrase: Passphrase = None,
               progress: verifier.Progress | None = None) -> ImportSummary:
    """Verify the export ``src`` and build a hub from it at ``dest``; a summary.

    ``passphrase`` opens the export's encrypted keys (bytes, or a function asked only when the
    export carries keys)."""
    src, dest = Path(src).resolve(), Path(dest).resolve()
    if not src.is_file():
        raise UsageError(f"{src}: not an export archive; pass the file `aismm export` wrote")
    if not dest.parent.is_dir():
        raise UsageError(f"{dest}: folder {dest.parent} does not exist; create it first")
    held = _held(dest)
    quarantine = Path(tempfile.mkdtemp(prefix=f".{dest.name}.import-", dir=dest.parent))
    try:
        work = quarantine / "export"
        report = verifier.verify(src, work=work, progress=progress)
        if not report.ok:
            bad = report.first_failure() or {}
            raise CheckFailed(f"import: {src.name}", [
                f"verify failed at {bad.get('stage')}: {bad.get('object')}: {bad.get('what')}; "
                "nothing was imported"])
        manifest = report.manifest
        if manifest is None:  # an export's report always has it: verify read the envelope
            raise CheckFailed(f"import: {src.name}", ["verify read no manifest; nothing was "
                                                      "imported"])
        digest = hashlib.sha256((work / export.MANIFEST).read_bytes()).hexdigest()
        summary = ImportSummary(hub=str(dest), digest=digest, scope=manifest.scope,
                                position=manifest.position, repos=len(manifest.repos),
                                imported=True, keys=0)
        if held is not None:
            if held.digest == digest:
                return summary.model_copy(update={"imported": False})
            if held.hub_id != manifest.hub_id:
                raise UsageError(f"import: {dest} holds another hub ({held.hub_id}); "
                                 "pick a new DIR")
            live, marked = _live_position(dest), _position(held.position)
            offered = _position(manifest.position)
            now = (max(live[0], marked[0]), max(live[1], marked[1]))
            if offered[0] < now[0] or offered[1] < now[1]:  # behind in either log
                raise Rejection(f"import: {src.name}: its state position {offered} "
                                f"is older than the one {dest} holds {now}; import a newer "
                                "export")
        root = quarantine / "hub"
        summary = summary.model_copy(update={"keys": _build(work, root, dest, manifest,
                                                            passphrase)})
        (root / MARKER).write_bytes(export.canonical(ImportMarker(
            digest=digest, position=manifest.position, format=manifest.format,
            hub_id=manifest.hub_id, scope=manifest.scope).model_dump(mode="json")))
        _crash_point("before-rename")
        if held is None:
            if dest.exists():
                dest.rmdir()  # an empty folder (checked by _held)
            os.rename(root, dest)
        else:
            aside = quarantine / "replaced"
            os.rename(dest, aside)
            _crash_point("between-renames")
            try:
                os.rename(root, dest)
            except BaseException:
                os.rename(aside, dest)  # the hub that was there stays
                raise
        _crash_point("after-rename")
    finally:
        shutil.rmtree(quarantine, ignore_errors=True)
    return summary


def _held(dest: Path) -> ImportMarker | None:
    """What an earlier import left at ``dest`` (None: nothing there, or an empty folder)."""
    if not dest.exists():
        return None
    if dest.is_dir() and not any(dest.iterdir()):
        return None
    marker = dest / MARKER
    if not marker.is_file():
        raise UsageError(f"{dest}: exists and is not a hub imported from an export; pick a new "
                         "or empty DIR")
    try:
        return ImportMarker.model_validate_json(marker.read_bytes())
    except ValidationError as exc:
        raise UsageError(f"{marker}: unreadable ({describe_validation(exc)[0]}); pick a new "
                         "DIR") from exc


def _build(work: Path, root: Path, final: Path, manifest: export.ExportManifest,
           passphrase: Passphrase) -> int:
    """The hub in the quarantine folder ``root``, configured for its final path; the number
    of hosted keys restored."""
    for sub in ("missions", "keys", "run"):
        (root / sub).mkdir(parents=True)
    os.chmod(root / "keys", 0o700)
    shutil.copyfile(work / "hub.yaml", root / "hub.yaml")
    provision.build_client(root)  # before the hooks: they exec the native client when built
    shutil.copyfile(work / "roster/allowed_signers", root / "allowed_signers")
    signers = final / "allowed_signers"
    for name in sorted(manifest.repos):
        path = root / name
        os.rename(audit.unpacked(work, name), path)
        bundle.drop_remote(path)
        repo = Repo(path)
        provision.configure(repo)
        provision.install(path)
        repo.set_config("gpg.format", "ssh")
        repo.set_config("gpg.ssh.allowedSignersFile", str(signers))
    _crash_point("repos")
    db = root / "hub.db"
    with Store(db) as store:
        store.restore(audit.ndjson_rows(work / "state/log.ndjson"),
                      audit.ndjson_rows(work / "state/executions.ndjson"))
    with Ledger(db) as ledger:
        ledger.restore(audit.ndjson_rows(work / "ledger/transfers.ndjson"),
                       audit.ndjson_rows(work / "ledger/closures.ndjson"))
    _crash_point("database")
    keys = 0
    secret = work / export.SECRETS
    if secret.is_file():
        if passphrase is None:
            raise UsageError("import: the export carries encrypted keys; pass --passphrase-env "
                             "VAR naming the variable that holds the export's passphrase")
        secret_text = passphrase if isinstance(passphrase, bytes) else passphrase()
        for filename, pem in sorted(export.decrypt_secrets(secret.read_bytes(),
                                                           secret_text).items()):
            if not verifier.safe_name(filename) or "/" in filename or \
                    not filename.endswith(".key"):
                raise UsageError(f"{export.SECRETS}: names {filename!r}; re-export")
            target = root / "keys" / filename
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(pem)
            keys += 1
    hub = Hub(root)
    with contextlib.suppress(OSError):
        registrar.write_allowed_signers(hub)  # the same entries, from the imported registry
    return keys
