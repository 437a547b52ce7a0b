"""Provisioning: a bare repository made ready for the hub (receive settings, our hooks).

Both hooks come from one template. Where a C compiler exists, the hub builds the native hook
client once (``<hub>/run/aismm-hook``, from ``hooks/client.c``) and the hooks are two-line shell
scripts that exec it; elsewhere they are the stdlib-only Python client (``hooks/hook.py.in``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import aismm
from aismm.infra.git import Repo
from aismm.infra.hub import bundled

__all__ = ["CLIENT", "MARKER", "PYCACHE", "build_client", "compile_package", "configure",
           "install", "settings"]

MARKER = "# aismm-hook:"
NAMES = ("pre-receive", "post-receive")
CLIENT = "run/aismm-hook"  # the native hook client, relative to the hub folder
PYCACHE = "run/pycache"  # the package's bytecode when its own folder is read-only
PACKAGE = Path(aismm.__file__).resolve().parent


def compile_package(hub_root: Path) -> Path | None:
    """Compile the package's bytecode, so no hook pays for compiling it: into the package's own
    ``__pycache__`` folders where they are writable, else into ``<hub>/run/pycache``, which the
    hook scripts then name as the interpreter's ``pycache_prefix``. Where it went (None: not
    compiled, the hooks compile as they import)."""
    import compileall  # noqa: PLC0415 - and py_compile, traceback: only when a hub is set up

    writable = all(os.access(folder, os.W_OK) for folder in
                   [PACKAGE, *(p for p in PACKAGE.rglob("__pycache__") if p.is_dir())])
    target = PACKAGE if writable else hub_root / PYCACHE
    previous = sys.pycache_prefix
    try:
        if not writable:
            target.mkdir(parents=True, exist_ok=True)
            sys.pycache_prefix = str(target)
        ok = compileall.compile_dir(PACKAGE, quiet=2, workers=1)
    except OSError:
        ok = False
    finally:
        sys.pycache_prefix = previous
    return target if ok else None


def build_client(hub_root: Path) -> Path | None:
    """Put the native hook client into the hub, compiled or copied from this user's cache
    (None without a C compiler: Python hooks), and compile the package's bytecode
    (:func:`compile_package`): what makes a hook start fast.

    Built atomically and only when the source changed (its sha256 is kept beside it).
    """
    compile_package(hub_root)
    compiler = next((c for c in (os.environ.get("CC"), "cc", "gcc", "clang")
                     if c and shutil.which(c)), None)
    if compiler is None:
        return None
    source = bundled("hooks") / "client.c"
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    target = hub_root / CLIENT
    stamp = target.with_suffix(".sha256")
    if target.is_file() and stamp.is_file() and stamp.read_text().strip() == digest:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(f"{digest} {shutil.which(compiler)} {os.uname().machine}".encode())
    cache = _cache_dir()
    cached = cache / f"aismm-hook-{key.hexdigest()[:24]}" if cache else None
    client = _from_cache(cached) if cached else None
    if client is None:
        client = _compile(compiler, source)
        if client is None:
            return None
        if cached is not None:
            _to_cache(cached, client)
    _write(target, client)
    stamp.write_text(digest + "\n")
    return target


def _cache_dir() -> Path | None:
    """Where this user keeps one compiled client per source, compiler and machine, so a new hub
    copies it instead of compiling (``$XDG_CACHE_HOME/aismm``, by default ``~/.cache/aismm``;
    None for a user without a home folder: each hub compiles its own)."""
    try:
        return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aismm"
    except RuntimeError:  # Path.home(): no $HOME and no entry in the user database
        return None


def _compile(compiler: str, source: Path) -> bytes | None:
    """The compiled client; None when the compiler fails."""
    with tempfile.TemporaryDirectory(prefix="aismm-hook-") as tmp:
        out = Path(tmp) / "aismm-hook"
        done = subprocess.run([compiler, "-O2", "-o", str(out), str(source)],
                              capture_output=True, check=False)
        return out.read_bytes() if done.returncode == 0 else None


def _from_cache(cached: Path) -> bytes | None:
    """A cached client whose bytes still match the sha256 kept beside it (copied into each hub,
    not linked: the hub stays whole when the cache goes); None when there is none to trust."""
    try:
        data = cached.read_bytes()
        kept = cached.with_suffix(".sha256").read_text().strip()
    except OSError:
        return None
    return data if hashlib.sha256(data).hexdigest() == kept else None


def _to_cache(cached: Path, client: bytes) -> None:
    """Keep a fresh build for the next hub (best effort: without a cache each hub compiles)."""
    with contextlib.suppress(OSError):
        cached.parent.mkdir(parents=True, exist_ok=True)
        _write(cached, client)
        cached.with_suffix(".sha256").write_text(hashlib.sha256(client).hexdigest() + "\n")


def _write(target: Path, data: bytes) -> None:
    """Write an executable atomically (OSError when its folder cannot be written)."""
    fd, tmp = tempfile.mkstemp(prefix=".aismm-hook-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def settings(max_input: int = 64 << 20) -> dict[str, str | int | bool]:
    """The receive settings every hub repository has (docs/protocol.md, "The hub")."""
    return {"receive.fsckObjects": True, "receive.denyNonFastForwards": True,
            "receive.denyDeletes": True, "receive.advertisePushOptions": True,
            "receive.maxInputSize": max_input, "core.logAllRefUpdates": "always", "gc.auto": 0}


def configure(repo: Repo, max_input: int = 64 << 20) -> None:
    """Write :func:`settings` into a repository's config (one key at a time, over whatever it
    holds; a repository just created takes them in one write with ``Repo.set_configs``)."""
    for key, value in settings(max_input).items():
        repo.set_config(key, value)


def install(repo_path: Path) -> None:
    """Write our hooks into a bare repository of a hub (keep foreign hooks as ``.legacy``).

    The native shell hooks when the hub has its client (the hub folder is the repository's
    parent or grandparent), else the Python ones; both with this interpreter's absolute path.
    """
    native = any((hub / CLIENT).is_file() for hub in (repo_path.parent, repo_path.parent.parent))
    template = (bundled("hooks") / ("hook.sh.in" if native else "hook.py.in")).read_text()
    hooks = repo_path / "hooks"
    hooks.mkdir(exist_ok=True)
    for name in NAMES:
        target = hooks / name
        if target.exists() and MARKER not in target.read_text(errors="replace"):
            target.rename(hooks / f"{name}.legacy")
        text = (template.replace("@HOOK@", name).replace("@PYTHON@", sys.executable)
                .replace("@PACKAGE_PARENT@", str(PACKAGE.parent)))
        tmp = hooks / f".{name}.tmp"
        tmp.write_text(text)
        tmp.chmod(0o755)
        tmp.replace(target)
    for sample in hooks.glob("*.sample"):
        sample.unlink()
