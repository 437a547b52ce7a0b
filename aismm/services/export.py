"""The ownership ladder: a hub (or one client's share of it) as one signed, reproducible archive.

An export is a gzip'd tar holding ``repos/<name>.bundle`` for every repository in scope, the
ledger and the execution records as canonical NDJSON, the ref-state log, the roster, the
``allowed_signers`` file, ``hub.yaml``, ``VERIFY.md`` and ``manifest.json`` (every file's
sha256 and size, every repository's refs, the ledger's hash and balances, the state position)
with ``manifest.dsse.json``, the manifest in a DSSE envelope signed by the platform key. The
snapshot is consistent (the database copied in one step, the refs bundled between two reads
that agree) and the archive is byte-for-byte reproducible: an unchanged hub exports the same
bytes (see docs/ownership.md). :mod:`aismm.services.verify` checks one; :func:`import_hub`
builds a working hub from one.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import gzip
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from aismm.core.actor import signers_text
from aismm.core.clock import Instant
from aismm.core.envelope import seal
from aismm.core.errors import ConflictError, UsageError
from aismm.core.model import Strict, dump_yaml
from aismm.core.refs import MAIN
from aismm.core.reputation import Execution, Reputation, compute
from aismm.infra import bundle, store
from aismm.infra.git import ZERO, Repo
from aismm.infra.hub import Hub
from aismm.infra.ledger import Ledger
from aismm.services import handover, judged
from aismm.state import registry
from aismm.state.policy import load_policy

__all__ = ["ENVELOPE", "FORMAT", "MANIFEST", "PAYLOAD_TYPE", "Counts", "ExportManifest",
           "ExportSummary", "FileEntry", "Handover", "LedgerSummary", "Position", "Progress",
           "RepoEntry", "canonical", "decrypt_secrets", "export_hub", "ndjson", "reputations",
           "snapshot", "snapshot_time", "write_archive"]

FORMAT = 1
PAYLOAD_TYPE = "application/vnd.aismm.export.manifest+json"
MANIFEST = "manifest.json"
ENVELOPE = "manifest.dsse.json"
SECRETS = "secrets/keys.enc"
_TRIES = 5

Progress = Callable[[str, int, int], None]  # (what, done, total)


# -- the manifest ----------------------------------------------------------------------------
# ``manifest.json``: validated once when read (verify, import), written canonically (sorted
# keys) by :func:`canonical` of :meth:`ExportManifest.to_json`.

class Position(Strict):
    """Where the hub's two logs stood: the last ref-state event and the last ledger transfer
    (id and instant), and the snapshot's time (epoch seconds, :func:`snapshot_time`)."""

    event: int
    event_at: Instant | None
    transfer: int
    transfer_at: Instant | None
    time: int

    def to_json(self) -> dict[str, Any]:
        """The position as JSON (instants as ``...Z``)."""
        return self.model_dump(mode="json")


class RepoEntry(Strict):
    """A repository of the export: its bundle's archive path and its refs."""

    bundle: str
    refs: dict[str, str]


class LedgerSummary(Strict):
    """The ledger rows' hash, counts and the balances they add up to."""

    sha256: str
    transfers: int
    closures: int
    balances: dict[str, int]


class Counts(Strict):
    """How many ref-state events, execution records and repositories the export holds."""

    events: int
    executions: int
    repos: int


class FileEntry(Strict):
    """A file of the archive: its sha256 and size."""

    sha256: str
    size: int


class Handover(Strict):
    """A client's buyout: when the registry was handed over and the new platform's key."""

    at: Instant
    platform_key: str


class ExportManifest(Strict):
    """``manifest.json``: what the archive holds and where the hub stood."""

    format: int
    kind: Literal["aismm-export"]
    scope: str
    hub_id: str
    platform: str
    platform_key: str
    position: Position
    repos: dict[str, RepoEntry]
    ledger: LedgerSummary
    counts: Counts
    files: dict[str, FileEntry]
    handover: Handover | None = None  # a client's export with its keys only

    def to_json(self) -> dict[str, Any]:
        """The manifest as JSON (``handover`` only when there is one)."""
        return self.model_dump(mode="json", exclude_none=False,
                               exclude={"handover"} if self.handover is None else None)


class ExportSummary(Strict):
    """What ``aismm export`` did."""

    archive: str
    scope: str
    format: int
    digest: str
    files: int
    repos: int
    transfers: int
    position: Position
    secrets: bool

    def to_json(self) -> dict[str, Any]:
        """The summary as JSON (``aismm export --json``)."""
        return self.model_dump(mode="json")


def canonical(data: object) -> bytes:
    """Canonical JSON: sorted keys, no spaces, UTF-8, one trailing newline."""
    return (json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            + "\n").encode("utf-8")


def ndjson(rows: Iterable[dict[str, Any]]) -> bytes:
    """Canonical NDJSON: one canonical JSON object per line."""
    return b"".join(canonical(row) for row in rows)


def _repo_names(hub: Hub, client: str | None) -> list[str]:
    names = [judged.REGISTRY]
    for mission_id in hub.mission_ids(benchmark=client is None):
        if client is not None:
            policy = _client_of(Repo(hub.mission_path(mission_id)))
            if policy != client:
                continue
        names.append(f"missions/{mission_id}.git")
    return names


def _client_of(repo: Repo) -> str | None:
    try:
        policy = load_policy(repo)
    except Exception:  # a mission whose main cannot be read belongs to nobody we can name
        return None
    return policy.doc.client if policy is not None else None


def bundle_path(name: str) -> str:
    """The archive path of a repository's bundle: ``registry.git`` -> ``repos/registry.bundle``."""
    return f"repos/{name.removesuffix('.git')}.bundle"


def snapshot_time(position: Position) -> int:
    """The snapshot's time (epoch seconds): the later of the last ref-state event and the last
    ledger transfer, so an unchanged hub has the same time."""
    return max((int(at.timestamp()) for at in (position.event_at, position.transfer_at)
                if at is not None), default=0)


def _in_scope(client: str | None, missions: set[str]) -> Callable[[dict[str, Any]], bool]:
    account = f"client:{client}"

    def keep(t: dict[str, Any]) -> bool:
        return client is None or t.get("mission") in missions or account in (
            t.get("debit"), t.get("credit"))

    return keep


def reputations(executions: list[dict[str, Any]], now: dt.datetime) -> dict[str, Reputation]:
    """Every agent's reputation from execution records (rows of the export's NDJSON)."""
    return compute([Execution.of(r) for r in executions], now)


def reputation_json(reputations: dict[str, Reputation]) -> dict[str, dict[str, Any]]:
    """``roster/reputation.json``: each agent's :meth:`Reputation.to_dict`."""
    return {agent: rep.to_dict() for agent, rep in reputations.items()}


def snapshot(hub: Hub, dest: Path, scope: str = "hub", progress: Progress | None = None,
             logged: bool = True) -> ExportManifest:
    """Write the export's files (all but the envelope) into the folder ``dest``; the
    manifest. The refs are bundled between two reads that agree with each other and (with
    ``logged``) with the database copy's ref-state log."""
    client = _scope_client(scope)
    dest.mkdir(parents=True, exist_ok=True)
    names = _repo_names(hub, client)
    db = dest / ".hub.db"
    for _ in range(_TRIES):
        before = {name: Repo(hub.root / name).refs() for name in names}
        db.unlink(missing_ok=True)
        store.backup(hub.db_path, db)
        (dest / "repos/missions").mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # git does the work
            for n, _done in enumerate(pool.map(lambda name: bundle.create(
                    hub.root / name, dest / bundle_path(name)), names)):
                if progress:
                    progress("bundle", n, len(names))
        if progress:
            progress("bundle", len(names), len(names))
        after = {name: Repo(hub.root / name).refs() for name in names}
        stable = before == after and all(bundle.heads(dest / bundle_path(n)) == before[n]
                                         for n in names)
        differ = _unlogged(db, before) if stable and logged else None
        if stable and differ is None:
            break
    else:
        if differ is not None:
            raise ConflictError(f"{hub.root}: {differ} is not where the ref-state log says; "
                                "run `aismm verify` on the hub, then export again")
        raise ConflictError(f"{hub.root}: the hub kept changing while it was exported; retry "
                            "when pushes are quieter")
    missions = {name[len("missions/"):-len(".git")] for name in names[1:]}
    with Ledger(db) as ledger:
        transfers, closures = ledger.dump()
    with store.Store(db) as st:
        log = st.log_rows()
        execs = st.executions()
    db.unlink()
    Path(f"{db}-wal").unlink(missing_ok=True)
    Path(f"{db}-shm").unlink(missing_ok=True)
    keep = _in_scope(client, missions)
    transfers = [t for t in transfers if keep(t)]
    closures = [c for c in closures if c["mission"] in missions]
    log = [e for e in log if e["repo"] in names]
    execs = [x for x in execs if client is None or x["client"] == client]
    position = Position.model_validate({
        "event": log[-1]["id"] if log else 0, "event_at": log[-1]["created"] if log else None,
        "transfer": transfers[-1]["seq"] if transfers else 0,
        "transfer_at": max((t["at"] for t in transfers), default=None), "time": 0})
    when = snapshot_time(position)
    position = position.model_copy(update={"time": when})
    balances: dict[str, int] = {}
    for t in transfers:
        balances[t["debit"]] = balances.get(t["debit"], 0) - t["amount"]
        balances[t["credit"]] = balances.get(t["credit"], 0) + t["amount"]
    roster = _roster(hub, before[judged.REGISTRY].get(MAIN))
    files: dict[str, bytes] = {
        "ledger/transfers.ndjson": ndjson(transfers),
        "ledger/closures.ndjson": ndjson(closures),
        "state/log.ndjson": ndjson(log),
        "state/executions.ndjson": ndjson(execs),
        "roster/allowed_signers": hub.allowed_signers_path.read_bytes(),
        "roster/actors.json": canonical(roster),
        "roster/reputation.json": canonical(reputation_json(reputations(
            execs, dt.datetime.fromtimestamp(when, dt.UTC)))),
        "hub.yaml": dump_yaml(hub.config.model_dump(mode="json")).encode(),
        "VERIFY.md": _verify_text().encode(),
    }
    for rel, data in files.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(data)
    root_id = next((info.id for info in Repo(hub.registry_path).iter_commits(
        before[judged.REGISTRY][MAIN]) if not info.parents), "")
    ledger_hash = hashlib.sha256(files["ledger/transfers.ndjson"] +
                                 files["ledger/closures.ndjson"]).hexdigest()
    return ExportManifest(
        format=FORMAT, kind="aismm-export", scope=scope, hub_id=root_id,
        platform=hub.config.platform,
        platform_key=roster.get(hub.config.platform, {}).get("key", ""), position=position,
        repos={name: RepoEntry(bundle=bundle_path(name), refs=before[name]) for name in names},
        ledger=LedgerSummary(sha256=ledger_hash, transfers=len(transfers),
                             closures=len(closures), balances=dict(sorted(balances.items()))),
        counts=Counts(events=len(log), executions=len(execs), repos=len(names)),
        files=inventory(dest))


def _unlogged(db: Path, refs: dict[str, dict[str, str]]) -> str | None:
    """The first ref whose value the database copy's ref-state log does not end with (a push
    whose post-receive has not logged it yet makes the export read again), or None."""
    with store.Store(db) as st:
        for name, values in refs.items():
            for ref, oid in sorted(st.last_values(name).items()):
                if values.get(ref) != (None if oid == ZERO else oid):
                    return f"{name} {ref}"
    return None


def _scope_client(scope: str) -> str | None:
    if scope == "hub":
        return None
    kind, _, client = scope.partition(":")
    if kind != "client" or not client:
        raise UsageError(f"--scope {scope}: not a scope; use hub or client:<id>")
    return client


def _roster(hub: Hub, registry_main: str | None) -> dict[str, Any]:
    actors = registry.load_actors(Repo(hub.registry_path), registry_main)
    return {aid: a.model_dump(mode="json") for aid, a in sorted(actors.items())}


def inventory(folder: Path) -> dict[str, FileEntry]:
    """Every regular file under ``folder`` but the manifest and envelope: sha256 and size."""
    out: dict[str, FileEntry] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and rel not in (MANIFEST, ENVELOPE) and not rel.startswith("."):
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
            out[rel] = FileEntry(sha256=digest.hexdigest(), size=path.stat().st_size)
    return out


def write_archive(folder: Path, files: list[str], dest: Path, mtime: int) -> None:
    """A reproducible tar.gz of ``files`` (sorted, 0:0, fixed modes, one mtime, gzip mtime 0),
    written beside ``dest`` and renamed into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as raw, \
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                              compresslevel=6) as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for rel in sorted(files):
                info = tarfile.TarInfo(rel)
                info.size = (folder / rel).stat().st_size
                info.mtime, info.mode = mtime, 0o644
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                with (folder / rel).open("rb") as handle:
                    tar.addfile(info, handle)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def export_hub(hub: Hub, dest: Path, scope: str = "hub", passphrase: bytes | None = None,
               progress: Progress | None = None) -> ExportSummary:
    """Export the hub (or ``client:<id>``'s share) to the archive ``dest``; a summary.

    With ``passphrase`` the hosted private keys go in too, encrypted (scrypt + AES-GCM).
    """
    dest = Path(dest).resolve()
    if dest.is_dir():
        raise UsageError(f"{dest}: is a folder; name the archive file to write, e.g. "
                         f"{dest}/hub.tar.gz")
    if not dest.parent.is_dir():
        raise UsageError(f"{dest}: folder {dest.parent} does not exist; create it first")
    if not hub.key_path(hub.config.platform).is_file():
        raise UsageError(f"{hub.root}: the platform's key {hub.key_path(hub.config.platform)} "
                         "is missing and an export is signed by it; restore the key (an "
                         "import made without --include-secrets has none)")
    client = _scope_client(scope)
    if client is not None and client not in registry.actors(hub):
        raise UsageError(f"--scope {scope}: no actor {client} in this hub; see `aismm actor "
                         "list`")
    judged.sweep(hub)  # judge every unlogged move first: an export carries judged refs only
    work = Path(tempfile.mkdtemp(prefix=".aismm-export-", dir=dest.parent))
    try:
        manifest = snapshot(hub, work, scope, progress)
        if passphrase is not None:
            keys = _hosted_keys(hub, scope)
            if scope != "hub":  # a buyout: the new hub gets a platform key of its own
                manifest, keys[f"{hub.config.platform}.key"] = _hand_over(hub, work, manifest)
            secret = work / SECRETS
            secret.parent.mkdir(parents=True, exist_ok=True)
            secret.write_bytes(encrypt_secrets(keys, passphrase))
            manifest = manifest.model_copy(update={"files": inventory(work)})
        body = canonical(manifest.to_json())
        (work / MANIFEST).write_bytes(body)
        key = hub.hosted_key(hub.config.platform)
        (work / ENVELOPE).write_bytes(seal(body, PAYLOAD_TYPE, key))
        names = [*manifest.files, MANIFEST, ENVELOPE]
        write_archive(work, names, dest, manifest.position.time)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ExportSummary(archive=str(dest), scope=scope, format=FORMAT,
                         digest=hashlib.sha256(body).hexdigest(), files=len(names),
                         repos=len(manifest.repos), transfers=manifest.ledger.transfers,
                         position=manifest.position, secrets=passphrase is not None)


def _hand_over(hub: Hub, work: Path, manifest: ExportManifest) -> tuple[ExportManifest, str]:
    """Add the buyout handover to the export in ``work`` (registry bundle, log, roster); the
    manifest that says so and the new platform's private key (PEM)."""
    when = dt.datetime.fromtimestamp(manifest.position.time, dt.UTC) + dt.timedelta(seconds=1)
    done = handover.hand_over(hub, work / bundle_path(judged.REGISTRY), work / ".handover", when)
    shutil.rmtree(work / ".handover")
    log_path = work / "state/log.ndjson"
    rows = [json.loads(line) for line in log_path.read_bytes().splitlines()]
    event = {"id": max((r["id"] for r in rows), default=0) + 1, "repo": judged.REGISTRY,
             "ref": MAIN, "old": done.old, "new": done.new, "pusher": hub.config.platform,
             "created": done.at, "status": "done"}
    log_path.write_bytes(ndjson([*rows, event]))
    (work / "roster/actors.json").write_bytes(canonical(
        {aid: a.model_dump(mode="json") for aid, a in sorted(done.actors.items())}))
    (work / "roster/allowed_signers").write_text(signers_text(done.actors.values()))
    repos = {**manifest.repos, judged.REGISTRY: RepoEntry(
        bundle=bundle_path(judged.REGISTRY), refs=bundle.heads(work / bundle_path(
            judged.REGISTRY)))}
    position = Position.model_validate({**manifest.position.to_json(), "event": event["id"],
                                        "event_at": done.at})
    counts = manifest.counts.model_copy(update={"events": manifest.counts.events + 1})
    handed = manifest.model_copy(update={
        "repos": repos, "position": position, "counts": counts,
        "handover": Handover.model_validate({"at": done.at,
                                             "platform_key": done.key.public_line})})
    return handed, done.key.pem().decode()


def _hosted_keys(hub: Hub, scope: str) -> dict[str, str]:
    client = _scope_client(scope)
    out = {}
    for path in sorted(hub.keys_dir.glob("*.key")):
        actor = path.name[:-4]
        if client is None or actor == client:
            out[path.name] = path.read_text()
    return out


_SCRYPT = {"n": 1 << 15, "r": 8, "p": 1}


def encrypt_secrets(keys: dict[str, str], passphrase: bytes) -> bytes:
    """The hosted keys sealed with a passphrase: scrypt (2^15, 8, 1) then AES-256-GCM."""
    if not passphrase:
        raise UsageError("--passphrase-env: the passphrase is empty; set a non-empty one")
    salt, nonce = os.urandom(16), os.urandom(12)
    kdf = Scrypt(salt=salt, length=32, **_SCRYPT)
    sealed = AESGCM(kdf.derive(passphrase)).encrypt(nonce, canonical(keys), b"aismm-secrets")
    return canonical({"cipher": "aes-256-gcm", "kdf": {"name": "scrypt", **_SCRYPT},
                      "salt": base64.b64encode(salt).decode(),
                      "nonce": base64.b64encode(nonce).decode(),
                      "data": base64.b64encode(sealed).decode()})


def decrypt_secrets(blob: bytes, passphrase: bytes) -> dict[str, str]:
    """The hosted keys of an export's ``secrets/keys.enc`` (UsageError on a wrong passphrase)."""
    try:
        doc = json.loads(blob)
        kdf = Scrypt(salt=base64.b64decode(doc["salt"]), length=32,
                     n=int(doc["kdf"]["n"]), r=int(doc["kdf"]["r"]), p=int(doc["kdf"]["p"]))
        plain = AESGCM(kdf.derive(passphrase)).decrypt(
            base64.b64decode(doc["nonce"]), base64.b64decode(doc["data"]), b"aismm-secrets")
        keys = json.loads(plain)
    except InvalidTag as exc:
        raise UsageError(f"{SECRETS}: the passphrase does not open the keys; give the one "
                         "used at export") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{SECRETS}: malformed ({exc}); re-export with --include-secrets"
                         ) from exc
    if not isinstance(keys, dict):
        raise UsageError(f"{SECRETS}: malformed; re-export with --include-secrets")
    return {str(k): str(v) for k, v in keys.items()}


def _verify_text() -> str:
    return """\
# Checking this export

This archive is an AISMM export: every repository as a git bundle, the ledger and the
execution records as canonical NDJSON, the roster and `allowed_signers`, and `manifest.json`
(every file's sha256 and size, every repository's refs) signed by the platform key in
`manifest.dsse.json` (a DSSE envelope; the signature is SSHSIG, namespace `aismm-dsse`, over
the DSSE pre-authentication encoding of the payload).

With AISMM:

    aismm verify hub-export.tar.gz

With stock tools only:

    tar -xzf hub-export.tar.gz -C export && cd export
    sha256sum repos/registry.bundle      # compare with manifest.json "files"
    git clone --mirror repos/registry.bundle registry.git
    git -C registry.git fsck --strict
    git -C registry.git -c gpg.format=ssh \\
        -c gpg.ssh.allowedSignersFile="$PWD/roster/allowed_signers" verify-commit main

Every commit and tag of every bundle verifies the same way against roster/allowed_signers.
"""
