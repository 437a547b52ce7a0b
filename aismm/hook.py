"""Server-side hooks: install them, and the code the thin hook scripts call."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from aismm.errors import AismmError, GateRejection

__all__ = ["install", "main", "hub_of", "MARKER"]

MARKER = "# aismm-hook:"
NAMES = ("pre-receive", "post-receive")


def install(repo_path: Path) -> None:
    """Write our hooks into a bare repository (absolute interpreter path; keep foreign hooks)."""
    from aismm.hub import bundled

    hooks = repo_path / "hooks"
    hooks.mkdir(exist_ok=True)
    for name in NAMES:
        target = hooks / name
        if target.exists() and MARKER not in target.read_text(errors="replace"):
            target.rename(hooks / f"{name}.legacy")
        text = (bundled("hooks") / name).read_text().replace("@PYTHON@", sys.executable)
        tmp = hooks / f".{name}.tmp"
        tmp.write_text(text)
        tmp.chmod(0o755)
        tmp.replace(target)
    for sample in hooks.glob("*.sample"):
        sample.unlink()


def hub_of(repo_path: Path) -> Path:
    """The hub a repository belongs to (registry.git or missions/<id>.git)."""
    repo_path = repo_path.resolve()
    for candidate in (repo_path.parent, repo_path.parent.parent):
        if (candidate / "hub.yaml").is_file():
            return candidate
    raise AismmError(f"{repo_path}: not inside an AISMM hub; install hooks only in hub repos")


def _updates(stdin: bytes) -> list[tuple[str, str, str]]:
    out = []
    for line in stdin.decode("utf-8", "replace").splitlines():
        parts = line.split()
        if len(parts) == 3:
            out.append((parts[0], parts[1], parts[2]))
    return out


def main(name: str, stdin: bytes) -> int:
    """Entry point of the hook scripts; returns the exit status."""
    try:
        if name == "pre-receive":
            return _pre_receive(stdin)
        return _post_receive(stdin)
    except GateRejection as exc:
        for problem in exc.problems:
            print(str(problem), file=sys.stderr)
        return 1
    except AismmError as exc:
        print(f"aismm: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - fail closed, one line, no traceback
        print(f"aismm: internal error in {name} ({type(exc).__name__}: {exc}); the push was "
              "refused to stay safe", file=sys.stderr)
        return 1 if name == "pre-receive" else 0


def _pre_receive(stdin: bytes) -> int:
    from aismm import gate
    from aismm.git import Repo
    from aismm.hub import Hub

    repo = Repo(os.environ.get("GIT_DIR", "."), from_env=True)
    hub = Hub(hub_of(repo.path))
    pusher = os.environ.get("AISMM_PUSHER") or os.environ.get("REMOTE_USER") or None
    gate.judge(hub, repo, _updates(stdin), pusher=pusher)
    return 0


def _post_receive(stdin: bytes) -> int:
    from aismm import events
    from aismm.hub import Hub

    repo_path = Path(os.environ.get("GIT_DIR", ".")).resolve()
    hub = Hub(hub_of(repo_path))
    pusher = os.environ.get("AISMM_PUSHER") or os.environ.get("REMOTE_USER") or None
    for line in events.record_and_process(hub, repo_path, _updates(stdin), pusher):
        print(line, file=sys.stderr)
    return 0
