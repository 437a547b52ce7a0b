"""The hub: its layout on disk, its configuration and the keys of hosted actors (DESIGN §3)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError

from aismm.core.clock import Clock, default_clock
from aismm.core.errors import UsageError
from aismm.core.model import Strict, describe_validation, dump_yaml, load_yaml
from aismm.core.signing import PrivateKey, generate_key, read_private_key_file

__all__ = ["Hub", "HubConfig", "FeeBand", "bundled", "find_hub"]


class FeeBand(Strict):
    """The fee range a tier's rate must fall in, in basis points."""

    min_bp: int = Field(ge=0, le=10000)
    max_bp: int = Field(ge=0, le=10000)


class HubLimits(Strict):
    """Hub-wide ceilings that hold whatever a contract says."""

    max_push_bytes: int = 64 << 20
    max_path_length: int = 255
    max_path_depth: int = 12
    max_files: int = 10000


class HubConfig(Strict):
    """``hub.yaml``."""

    schema_version: Literal[1] = 1
    platform: str = "platform"
    arbiter: str = "arbiter"
    fees: dict[Literal["T0", "T1", "T2"], FeeBand] = Field(
        default_factory=lambda: {
            "T0": FeeBand(min_bp=0, max_bp=300),
            "T1": FeeBand(min_bp=800, max_bp=1200),
            "T2": FeeBand(min_bp=2000, max_bp=3500),
        }
    )
    limits: HubLimits = HubLimits()
    processing: Literal["inline", "daemon"] = "inline"


def bundled(name: str) -> Path:
    """A folder shipped with the package (contracts, templates, hooks), wheel or checkout."""
    here = Path(__file__).resolve().parent.parent  # the aismm package
    for candidate in (here / "_bundled" / name, here.parent / name):
        if candidate.is_dir():
            return candidate
    raise UsageError(f"{name}: bundled folder missing from the installation; reinstall aismm")


def find_hub(explicit: str | None) -> Path:
    """The hub folder from ``--hub`` or ``AISMM_HUB``."""
    value = explicit or os.environ.get("AISMM_HUB")
    if not value:
        raise UsageError("hub: no hub given; pass --hub DIR or set AISMM_HUB (create one with "
                         "`aismm hub init DIR`)")
    return Path(value).resolve()


class Hub:
    """An embedded hub on disk."""

    def __init__(self, root: Path, clock: Clock | None = None) -> None:
        self.root = Path(root).resolve()
        self.clock = clock or default_clock()
        cfg = self.root / "hub.yaml"
        if not cfg.is_file():
            raise UsageError(f"{self.root}: not an AISMM hub (no hub.yaml); create one with "
                             "`aismm hub init DIR`")
        try:
            self.config = HubConfig.model_validate(load_yaml(cfg.read_text(), str(cfg)) or {})
        except ValidationError as exc:
            raise UsageError(f"{cfg}: {describe_validation(exc)[0]}; fix hub.yaml") from exc
        except ValueError as exc:
            raise UsageError(f"{exc}; fix hub.yaml") from exc

    # -- layout ---------------------------------------------------------------------------
    @property
    def db_path(self) -> Path:
        return self.root / "hub.db"

    @property
    def registry_path(self) -> Path:
        return self.root / "registry.git"

    @property
    def missions_dir(self) -> Path:
        return self.root / "missions"

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def allowed_signers_path(self) -> Path:
        return self.root / "allowed_signers"

    def mission_path(self, mission_id: str) -> Path:
        return self.missions_dir / f"{mission_id}.git"

    def key_path(self, actor: str) -> Path:
        return self.keys_dir / f"{actor}.key"

    def hosted_key(self, actor: str) -> PrivateKey:
        """The private key the hub keeps for a hosted actor."""
        path = self.key_path(actor)
        if not path.is_file():
            raise UsageError(f"{actor}: no hosted key in {self.keys_dir}; pass --key FILE with "
                             "the actor's own private key")
        return read_private_key_file(path)

    def new_hosted_key(self, actor: str) -> PrivateKey:
        key = generate_key()
        key.write(self.key_path(actor))
        return key

    # -- creation -------------------------------------------------------------------------
    @classmethod
    def init(cls, root: Path, clock: Clock | None = None, config: HubConfig | None = None,
             ) -> "Hub":
        """Create a hub at ``root`` atomically: built beside it, renamed into place."""
        from aismm.infra import store
        from aismm.state import registry

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
            hub = cls(staging, clock)
            store.Store(hub.db_path).close()
            registry.create(hub)
            if root.exists():
                root.rmdir()
            os.rename(staging, root)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        hub = cls(root, clock)
        registry.write_allowed_signers(hub)
        return hub
