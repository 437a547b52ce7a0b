"""A hub comes into being: its folders, database and registry, built beside and renamed in."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from aismm.core.clock import Clock
from aismm.core.errors import UsageError
from aismm.core.model import dump_yaml
from aismm.infra import store
from aismm.infra.git import Repo
from aismm.infra.hub import Hub, HubConfig
from aismm.services import registrar
from aismm.state import provision

__all__ = ["init_hub"]


def init_hub(root: Path, clock: Clock | None = None, config: HubConfig | None = None) -> Hub:
    """Create a hub at ``root`` atomically: built beside it, renamed into place."""
    root = Path(root).resolve()
    if (root / "hub.yaml").exists():
        raise UsageError(f"{root}: already a hub; use it with --hub {root} or pick a new DIR")
    if root.exists() and not root.is_dir():
        raise UsageError(f"{root}: not a folder; pick a new or empty DIR")
    if root.exists() and any(root.iterdir()):
        raise UsageError(f"{root}: folder is not empty; pick a new or empty DIR")
    above = next((p for p in root.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise UsageError(f"{root}: {above} is a file, not a folder; pick a DIR under a "
                         "folder")
    made = [p for p in root.parents if not p.exists()]
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.init-", dir=root.parent))
    except OSError as exc:
        for folder in made:  # the folders this call made, deepest first; nothing else
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise UsageError(f"{root}: cannot create the hub here ({exc.strerror or exc}); "
                         "pick a DIR in a folder you can write") from exc
    try:
        for sub in ("missions", "keys", "run"):
            (staging / sub).mkdir()
        os.chmod(staging / "keys", 0o700)
        cfg = config or HubConfig()
        (staging / "hub.yaml").write_text(dump_yaml(cfg.model_dump(mode="json")))
        hub = Hub(staging, clock)
        provision.build_client(staging)  # before any repository: its hooks exec the client
        store.Store(hub.db_path).close()
        registrar.create(hub)
        if root.exists():
            root.rmdir()
        os.rename(staging, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    hub = Hub(root, clock)
    registrar.write_allowed_signers(hub)
    registry = Repo(hub.registry_path)  # checkable in place: git log --show-signature works
    registry.set_config("gpg.format", "ssh")
    registry.set_config("gpg.ssh.allowedSignersFile", str(hub.allowed_signers_path))
    return hub
