"""Stock git for what travels between hubs: bundles, clones of them, fsck and verify-commit.

The exports and their checks use the real ``git`` binary on purpose: what an export promises
("check it with stock git") is what these calls do. Every call runs with the user's and the
system's git configuration cut off, so a local setting cannot change a bundle's bytes or a
verdict.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from aismm.core.errors import RepositoryError

__all__ = ["clone_bundle", "config_value", "create", "drop_remote", "fsck", "heads", "objects",
           "verify_signed"]

_ENV_DROP = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
             "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_QUARANTINE_PATH", "GIT_NAMESPACE")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _ENV_DROP}
    env.update(GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1", LC_ALL="C",
               GIT_TERMINAL_PROMPT="0")
    return env


def _git(*args: str, cwd: Path | None = None, check: bool = True
         ) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, env=_env(), check=False)
    if check and proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise RepositoryError(f"git {args[0]}: {err[-1] if err else 'failed'}; check the "
                              "repository")
    return proc


def create(repo: Path, dest: Path) -> None:
    """A bundle of every ref of a bare repository (one thread: the same repository gives the
    same bytes)."""
    _git("-C", str(repo), "-c", "pack.threads=1", "bundle", "create", "--quiet", str(dest),
         "--all")


def heads(bundle: Path) -> dict[str, str]:
    """The refs a bundle carries (ref -> object id), read from its header (v2 or v3)."""
    out: dict[str, str] = {}
    try:
        with bundle.open("rb") as handle:
            first = handle.readline(100)
            if first not in (b"# v2 git bundle\n", b"# v3 git bundle\n"):
                raise ValueError("no bundle signature")
            for _ in range(1 << 20):
                line = handle.readline(1 << 12)
                if line in (b"\n", b""):
                    break
                if line.startswith((b"-", b"@")):  # prerequisites and v3 capabilities
                    continue
                oid, _, ref = line.decode("utf-8").rstrip("\n").partition(" ")
                if len(oid) != 40 or not ref:
                    raise ValueError("malformed ref line")
                if ref != "HEAD":
                    out[ref] = oid
    except (OSError, ValueError) as exc:
        raise RepositoryError(f"{bundle.name}: not a readable git bundle ({exc}); re-export "
                              "it") from exc
    return out


def clone_bundle(bundle: Path, dest: Path) -> None:
    """Unpack a bundle into a new bare repository at ``dest`` (every object checked as it
    comes in, as ``receive.fsckObjects`` does), holding exactly the bundle's refs (its
    ``origin`` names the bundle: :func:`drop_remote`)."""
    _git("-c", "fetch.fsckObjects=true", "-c", "transfer.fsckObjects=true", "clone", "--quiet",
         "--mirror", "--template=", str(bundle), str(dest))  # no sample hooks


def drop_remote(repo: Path) -> None:
    """Forget the bundle a repository was cloned from (its ``origin``)."""
    _git("-C", str(repo), "remote", "remove", "origin")


def fsck(repo: Path) -> list[str]:
    """``git fsck --strict`` of a repository: its complaint lines ([] when clean)."""
    proc = _git("-C", str(repo), "fsck", "--strict", "--no-dangling", "--no-progress",
                check=False)
    text = (proc.stdout + proc.stderr).decode("utf-8", "replace").splitlines()
    lines = [line for line in text if line.strip()]
    return lines or ([f"git fsck exited {proc.returncode}"] if proc.returncode else [])


def objects(repo: Path) -> dict[str, list[str]]:
    """The commits and tags reachable from every ref: ``{"commit": [...], "tag": [...]}``."""
    proc = _git("-C", str(repo), "cat-file", "--batch-check=%(objecttype) %(objectname)",
                "--batch-all-objects", "--unordered")
    out: dict[str, list[str]] = {"commit": [], "tag": []}
    for line in proc.stdout.decode().splitlines():
        kind, _, oid = line.partition(" ")
        if kind in out:
            out[kind].append(oid)
    return {k: sorted(v) for k, v in out.items()}


def config_value(repo: Path, key: str) -> str | None:
    """One setting of a repository's own config (None when unset)."""
    proc = _git("-C", str(repo), "config", "--local", "--get", key, check=False)
    return proc.stdout.decode("utf-8", "replace").strip() or None


def verify_signed(repo: Path, kind: str, oids: list[str], allowed_signers: Path) -> bool:
    """Whether stock ``git verify-commit`` / ``verify-tag`` accepts every one of the objects
    against an allowed-signers file (one git run for them all)."""
    if not oids:
        return True
    proc = _git("-C", str(repo), "-c", "gpg.format=ssh", "-c",
                f"gpg.ssh.allowedSignersFile={allowed_signers}", f"verify-{kind}", *oids,
                check=False)
    return proc.returncode == 0
