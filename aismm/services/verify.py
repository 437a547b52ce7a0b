"""``aismm verify``: an export, a live hub or a mission clone checked as a whole, offline.

Stages, in order; the first failing stage stops the run (later stages would judge objects an
earlier stage already found untrustworthy):

``envelope``    the manifest's DSSE envelope verifies with the platform key; a known format
``inventory``   the archive holds exactly the manifest's files (regular files only, no ``..``,
                no absolute or duplicate names) with their sizes and sha256
``git``         every bundle unpacks with every object checked, its refs equal the manifest's,
                ``git fsck --strict`` is clean
``signatures``  every commit and tag is signed by a key ``allowed_signers`` holds valid at its
                time; stock ``git verify-commit``/``verify-tag`` agrees on every ref tip
``gate``        every update of the ref-state log, replayed in order, is allowed by the gate
                against the registry as it was then, and the replay ends at the exported refs
``ledger``      the rows hash to the manifest's hash, every invariant of ``ledger check``
                holds, the balances are the manifest's; every settlement cites its mission's
                acceptance merge with a platform-signed ``settled`` tag, every refund has a
                ``refunded`` tag
``reputation``  the reputations recomputed from the execution records equal the exported ones

Nothing here writes outside a temporary folder it removes (or the ``work`` folder import gives).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import ValidationError

from aismm.core.envelope import open_envelope
from aismm.core.errors import AismmError, SignatureError, UsageError
from aismm.core.model import describe_validation
from aismm.infra import bundle
from aismm.infra.git import Repo
from aismm.infra.hub import Hub
from aismm.services import export
from aismm.services.audit import Failed, Stage, allowed_keys, check_folder, check_repo_signatures

__all__ = ["STAGES", "Progress", "Report", "safe_name", "verify"]

STAGES = ("envelope", "inventory", "git", "signatures", "gate", "ledger", "reputation")
_MAX_MEMBERS = 1_000_000

Progress = Callable[[str, int, int], None]


@dataclass
class Report:
    """What :func:`verify` found: every stage and the first failure."""

    source: str
    kind: str
    stages: list[Stage]
    # what the manifest says (an export: all four; a hub: the id and position; a clone: none)
    hub_id: str | None = None
    position: export.Position | None = None
    scope: str | None = None
    signer: str | None = None
    manifest: export.ExportManifest | None = None  # an export's, once its envelope verified

    @property
    def ok(self) -> bool:
        return all(s.status != "failed" for s in self.stages)

    def first_failure(self) -> dict[str, str] | None:
        return next(({"stage": s.id, **s.failure} for s in self.stages if s.failure), None)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "kind": self.kind, "ok": self.ok,
                "first_failure": self.first_failure(),
                **({"hub_id": self.hub_id} if self.hub_id is not None else {}),
                **({"position": self.position.to_json()} if self.position is not None else {}),
                **({"scope": self.scope} if self.scope is not None else {}),
                **({"signer": self.signer} if self.signer is not None else {}),
                "stages": [{"id": s.id, "status": s.status, "counts": s.counts,
                            "failure": s.failure, "note": s.note} for s in self.stages]}


class _Run:
    """Stages run one after another; the first failure skips the rest."""

    def __init__(self, report: Report, progress: Progress | None) -> None:
        self.report, self.progress, self.stopped = report, progress, False

    def stage(self, sid: str, fn: Callable[[Stage], None], skip: str = "") -> None:
        st = Stage(sid)
        self.report.stages.append(st)
        if self.stopped or skip:
            st.note = skip or "not run: an earlier stage failed"
            return
        try:
            fn(st)
            st.status = "ok"
        except Failed as exc:
            st.status, st.failure = "failed", {"object": exc.obj, "what": exc.what}
            self.stopped = True
        except (AismmError, OSError, ValueError, KeyError, TypeError) as exc:
            st.status, st.failure = "failed", {"object": sid, "what": f"{type(exc).__name__}: "
                                               f"{exc}"}
            self.stopped = True
        if self.progress:
            self.progress(sid, STAGES.index(sid) + 1, len(STAGES))


def verify(src: Path, trusted: list[str] | None = None, work: Path | None = None,
           progress: Progress | None = None, allowed_signers: Path | None = None) -> Report:
    """Check an export archive, a live hub folder or a mission clone; the report.

    ``trusted`` pins the platform key lines an export's envelope must be signed by (default:
    the platform key its own ``allowed_signers`` names). ``work`` keeps the unpacked export
    (import uses it); otherwise everything is unpacked in a temporary folder and removed.
    """
    src = Path(src)
    if not src.exists():
        raise UsageError(f"{src}: no such file or folder; pass an export archive, a hub "
                         "folder or a mission clone")
    own = work is None
    folder = Path(tempfile.mkdtemp(prefix=".aismm-verify-")) if work is None else work
    try:
        if src.is_file():
            return _verify_archive(src, folder, trusted, progress)
        if (src / "hub.yaml").is_file():
            return _verify_hub(Hub(src), folder, progress)
        return _verify_clone(src, folder, allowed_signers)
    finally:
        if own:
            shutil.rmtree(folder, ignore_errors=True)


# -- sources ----------------------------------------------------------------------------------
def _verify_archive(src: Path, folder: Path, trusted: list[str] | None,
                    progress: Progress | None) -> Report:
    try:
        tar = tarfile.open(src, mode="r:gz")  # noqa: SIM115 (closed by the with below)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UsageError(f"{src}: not a gzip'd tar archive ({exc}); pass the file `aismm "
                         "export` wrote") from exc
    report = Report(str(src), "export", [])
    run = _Run(report, progress)
    with tar:
        try:
            members = _members(tar)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise UsageError(f"{src}: unreadable archive ({exc}); export it again") from exc
        state: dict[str, export.ExportManifest] = {}
        run.stage("envelope", lambda st: _stage_envelope(st, tar, members, trusted, state,
                                                         report))
        run.stage("inventory", lambda st: _stage_inventory(st, tar, members, state["manifest"],
                                                           folder))
    if not run.stopped:
        check_folder(run.stage, folder, state["manifest"])
    else:
        for sid in STAGES[len(report.stages):]:
            run.stage(sid, lambda st: None)
    return report


def _verify_hub(hub: Hub, folder: Path, progress: Progress | None) -> Report:
    report = Report(str(hub.root), "hub", [])
    run = _Run(report, progress)
    manifest = export.snapshot(hub, folder, logged=False)  # the gate stage judges the log
    report.hub_id, report.position = manifest.hub_id, manifest.position
    run.stage("envelope", lambda st: None, skip="a live hub has no envelope")
    run.stage("inventory", lambda st: st.counts.update(files=len(manifest.files)),
              skip="")
    check_folder(run.stage, folder, manifest)
    return report


def _verify_clone(src: Path, folder: Path, allowed_signers: Path | None) -> Report:
    try:
        repo = Repo(src if (src / "objects").is_dir() else src / ".git")
    except AismmError as exc:
        raise UsageError(f"{src}: neither an export, a hub nor a git repository; pass one of "
                         "them") from exc
    signers = allowed_signers or _configured_signers(repo)
    report = Report(str(src), "clone", [])
    run = _Run(report, None)
    for sid in ("envelope", "inventory"):
        run.stage(sid, lambda st: None, skip="a clone has no manifest")

    def git_stage(st: Stage) -> None:
        problems = bundle.fsck(repo.path)
        if problems:
            raise Failed(str(src), problems[0])
        st.counts["refs"] = len(repo.refs())

    run.stage("git", git_stage)
    if signers is None:
        run.stage("signatures", lambda st: None, skip="no allowed_signers: pass "
                  "--allowed-signers FILE")
    else:
        keys = allowed_keys(signers.read_text())
        run.stage("signatures", lambda st: check_repo_signatures(st, repo, keys, signers,
                                                                  str(src)))
    for sid in ("gate", "ledger", "reputation"):
        run.stage(sid, lambda st: None, skip="needs the hub (verify an export or the hub)")
    return report


def _configured_signers(repo: Repo) -> Path | None:
    value = bundle.config_value(repo.path, "gpg.ssh.allowedSignersFile")
    path = Path(value) if value else None
    return path if path is not None and path.is_file() else None


# -- envelope and inventory --------------------------------------------------------------------
def _members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    members = []
    for info in tar:
        members.append(info)
        if len(members) > _MAX_MEMBERS:
            raise tarfile.TarError(f"more than {_MAX_MEMBERS} entries")
    return members


def _read_member(tar: tarfile.TarFile, members: list[tarfile.TarInfo], name: str,
                 limit: int = 64 << 20) -> bytes:
    found = [m for m in members if m.name == name]
    if len(found) != 1 or not found[0].isreg() or found[0].size > limit:
        raise Failed(name, "missing, repeated, not a regular file or too large")
    handle = tar.extractfile(found[0])
    if handle is None:  # a regular member always has one
        raise Failed(name, "unreadable")
    return handle.read()


def _stage_envelope(st: Stage, tar: tarfile.TarFile, members: list[tarfile.TarInfo],
                    trusted: list[str] | None, state: dict[str, export.ExportManifest],
                    report: Report) -> None:
    body = _read_member(tar, members, export.MANIFEST)
    envelope = _read_member(tar, members, export.ENVELOPE)
    try:
        claimed = json.loads(body)
        platform = str(claimed["platform"])
    except (ValueError, KeyError, TypeError) as exc:
        raise Failed(export.MANIFEST, f"not a manifest ({exc})") from exc
    if trusted is None:
        # the platform key valid at the snapshot (a buyout export rotates it right after)
        position = claimed.get("position") if isinstance(claimed, dict) else None
        at = dt.datetime.fromtimestamp(int(position.get("time", 0)) if isinstance(
            position, dict) else 0, dt.UTC)
        signers = allowed_keys(_read_member(tar, members, "roster/allowed_signers").decode())
        trusted = [k for k, who, until in signers
                   if who == f"{platform}@aismm.invalid" and (until is None or at < until)]
    try:
        payload, signer = open_envelope(envelope, export.PAYLOAD_TYPE, trusted)
    except SignatureError as exc:
        raise Failed(export.ENVELOPE, str(exc).removeprefix("envelope: ")) from exc
    if payload != body:
        raise Failed(export.MANIFEST, "differs from the signed payload of the envelope")
    data = json.loads(payload)
    if not isinstance(data, dict) or data.get("kind") != "aismm-export":
        raise Failed(export.MANIFEST, "not an AISMM export manifest")
    if not isinstance(data.get("format"), int) or data["format"] > export.FORMAT:
        raise Failed(export.MANIFEST, f"format {data.get('format')!r} is newer than this "
                     f"aismm reads ({export.FORMAT}); upgrade aismm")
    try:  # validated once here; every later stage reads the model
        manifest = export.ExportManifest.model_validate(data)
    except ValidationError as exc:
        raise Failed(export.MANIFEST, "not an AISMM export manifest ("
                     f"{describe_validation(exc)[0]})") from exc
    if manifest.platform_key.split()[:2] != signer.split()[:2]:
        raise Failed(export.MANIFEST, "names a platform key other than the one that signed it")
    state["manifest"] = manifest
    report.hub_id, report.position = manifest.hub_id, manifest.position
    report.scope, report.signer, report.manifest = manifest.scope, signer, manifest
    st.counts["signatures"] = 1


def safe_name(name: str) -> bool:
    """A relative POSIX path without ``..``, ``.``, empty or control-character parts."""
    if not name or name.startswith("/") or "\\" in name or any(ord(c) < 32 for c in name):
        return False
    parts = PurePosixPath(name).parts
    return "/".join(parts) == name and all(p not in ("", ".", "..") for p in parts)


def _stage_inventory(st: Stage, tar: tarfile.TarFile, members: list[tarfile.TarInfo],
                     manifest: export.ExportManifest, folder: Path) -> None:
    files = manifest.files
    expected = {*files, export.MANIFEST, export.ENVELOPE}
    seen: set[str] = set()
    for info in members:
        if not safe_name(info.name):
            raise Failed(info.name, "unsafe entry name (absolute, '..' or odd parts)")
        if not info.isreg():
            raise Failed(info.name, "not a regular file (symlink, link, folder or device)")
        if info.name in seen:
            raise Failed(info.name, "appears twice in the archive")
        seen.add(info.name)
        if info.name not in expected:
            raise Failed(info.name, "extra file the manifest does not list")
    for name in sorted(expected - seen):
        raise Failed(name, "listed in the manifest but missing from the archive")
    for info in members:  # sizes first: nothing is unpacked that the manifest did not declare
        want = files.get(info.name)
        if want is not None and info.size != want.size:
            raise Failed(info.name, "size differs from the manifest")
    total = sum(info.size for info in members)
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if total > free:
        raise Failed("archive", f"unpacks to {total} bytes but {folder} has {free} free")
    for info in members:
        target = folder / info.name
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        handle = tar.extractfile(info)
        if handle is None:
            raise Failed(info.name, "unreadable")
        with handle, target.open("wb") as out:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        want = files.get(info.name)
        if want is not None and (info.size != want.size or digest.hexdigest() != want.sha256):
            raise Failed(info.name, "size or sha256 differs from the manifest")
    st.counts["files"] = len(files)

