"""The hub: its layout on disk, its configuration and the keys of hosted actors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError

from aismm.core.clock import Clock, default_clock
from aismm.core.errors import UsageError
from aismm.core.model import Strict, defaults, describe_validation, load_yaml
from aismm.core.signing import PrivateKey, generate_key, read_private_key_file

__all__ = ["FeeBand", "Hub", "HubConfig", "bundled", "find_hub"]


class FeeBand(Strict):
    """The fee range a tier's rate must fall in, in basis points."""

    min_bp: int = Field(ge=0, le=10000)
    max_bp: int = Field(ge=0, le=10000)


BENCH_PREFIX = "bench-"  # unfunded benchmark missions: missions/bench-<contract>-<hex>


class HubLimits(Strict):
    """Hub-wide ceilings that hold whatever a contract says."""

    max_push_bytes: int = 64 << 20
    max_path_length: int = 255
    max_path_depth: int = 12
    max_files: int = 10000


def _default_fees() -> dict[Literal["T0", "T1", "T2"], FeeBand]:
    return {
        "T0": FeeBand(min_bp=0, max_bp=300),
        "T1": FeeBand(min_bp=800, max_bp=1200),
        "T2": FeeBand(min_bp=2000, max_bp=3500),
    }


class HubConfig(Strict):
    """``hub.yaml``."""

    schema_version: Literal[1] = 1
    platform: str = "platform"
    arbiter: str = "arbiter"
    fees: dict[Literal["T0", "T1", "T2"], FeeBand] = Field(default_factory=_default_fees)
    limits: HubLimits = defaults(HubLimits)
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

    def mission_ids(self, benchmark: bool = False) -> list[str]:
        """Mission ids; benchmark missions only when asked (they hold no money)."""
        try:
            names = os.listdir(self.missions_dir)  # (not Path.glob: 10x the cost at 10,000)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(name[:-4] for name in names
                      if name.endswith(".git") and not name.startswith(".")
                      and (benchmark or not name.startswith(BENCH_PREFIX)))

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

