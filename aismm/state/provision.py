"""Provisioning: a bare repository made ready for the hub (receive settings, our hooks)."""

from __future__ import annotations

import sys
from pathlib import Path

from aismm.infra.git import Repo
from aismm.infra.hub import bundled

__all__ = ["MARKER", "configure", "install"]

MARKER = "# aismm-hook:"
NAMES = ("pre-receive", "post-receive")


def configure(repo: Repo, max_input: int = 64 << 20) -> None:
    """The receive settings of DESIGN §5 on a bare repository."""
    for key, value in (("receive.fsckObjects", True), ("receive.denyNonFastForwards", True),
                       ("receive.denyDeletes", True), ("receive.advertisePushOptions", True),
                       ("receive.maxInputSize", max_input), ("core.logAllRefUpdates", "always"),
                       ("gc.auto", 0)):
        repo.set_config(key, value)


def install(repo_path: Path) -> None:
    """Write our hooks into a bare repository (absolute interpreter path; keep foreign hooks)."""
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
