"""The JSON Schemas of every document format, generated from the pydantic models."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from aismm.actor import Actor, Manifest
from aismm.contract import Contract
from aismm.document import MissionDoc, Request, Verdict

__all__ = ["MODELS", "render", "write_all"]

MODELS: dict[str, type[BaseModel]] = {
    "contract": Contract, "mission": MissionDoc, "verdict": Verdict, "request": Request,
    "actor": Actor, "manifest": Manifest,
}


def render(name: str) -> str:
    """One schema as reproducible JSON text."""
    schema = MODELS[name].model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://aismm.invalid/schemas/{name}.schema.json"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_all(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for name in sorted(MODELS):
        path = directory / f"{name}.schema.json"
        path.write_text(render(name))
        out.append(path)
    return out
