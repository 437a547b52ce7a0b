"""The JSON Schemas of every document format, generated from the pydantic models."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from pydantic import BaseModel

from aismm.core.actor import Actor, Manifest
from aismm.core.contract import Contract
from aismm.core.document import MissionDoc, Request, Verdict
from aismm.core.errors import UsageError
from aismm.core.plan import Decision, Outcome, Routing

__all__ = ["MODELS", "render", "write_all"]

MODELS: dict[str, type[BaseModel]] = {
    "contract": Contract, "mission": MissionDoc, "verdict": Verdict, "request": Request,
    "actor": Actor, "manifest": Manifest, "decision": Decision, "outcome": Outcome,
    "routing": Routing,
}


def render(name: str) -> str:
    """One schema as reproducible JSON text."""
    schema = MODELS[name].model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://aismm.invalid/schemas/{name}.schema.json"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_all(directory: Path) -> list[Path]:
    """Write every schema into ``directory`` (made if missing); the files written.

    Bad input (a path under a file, a folder that cannot be written) is one UsageError, and
    leaves behind no folder or file this call made.
    """
    texts = {directory / f"{name}.schema.json": render(name) for name in sorted(MODELS)}
    above = next((p for p in [directory, *directory.parents] if p.exists()), None)
    if above is not None and not above.is_dir():
        where = "is a file" if above == directory else f"is under {above}, a file"
        raise UsageError(f"{directory}: {where}, not a folder; pass a folder to write into")
    made = [p for p in [directory, *directory.parents] if not p.exists()]
    written: list[Path] = []
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for path, text in texts.items():
            if path.is_dir() or path.is_symlink():
                raise UsageError(f"{path}: in the way (a folder or symbolic link); move it "
                                 "aside or pick another folder")
            existed = path.exists()
            path.write_text(text)
            if not existed:
                written.append(path)
    except (OSError, UsageError) as exc:
        for path in written:
            path.unlink(missing_ok=True)
        for folder in made:
            with contextlib.suppress(OSError):
                folder.rmdir()
        if isinstance(exc, UsageError):
            raise
        raise UsageError(f"{directory}: cannot write the schemas ({exc.strerror or exc}); "
                         "pick a folder you can write") from exc
    return list(texts)
