"""ref-schema-designer: infers a strict JSON Schema from sample records (contract.schema_design).

Reads ``inputs/request.json`` (the entity) and ``inputs/samples.json``; writes
``deliverable/schema.json`` and ``deliverable/report.json``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import uuid
from collections.abc import Callable
from typing import Any

from aismm.agents.runtime import (
    Invocation,
    fresh_deliverable,
    rework_notes,
    run,
    write_json,
    write_text,
)

__all__ = ["design", "infer", "main"]

DRAFT = "https://json-schema.org/draft/2020-12/schema"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
_ENUM_WORD = re.compile(r"^[a-z][a-z_\-]{0,31}$")  # status-like words, not codes


def _is_date(text: str) -> bool:
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return bool(_DATE.match(text))


def _is_datetime(text: str) -> bool:
    try:
        dt.datetime.fromisoformat(text)
    except ValueError:
        return False
    return bool(_DATETIME.match(text))


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text.lower()
    except ValueError:
        return False


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


_FORMATS: list[tuple[str, Callable[[str], bool]]] = [
    ("date-time", _is_datetime),
    ("date", _is_date),
    ("email", lambda s: bool(_EMAIL.match(s))),
    ("uuid", _is_uuid),
    ("ipv4", _is_ipv4),
]


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _string(values: list[str]) -> dict[str, Any]:
    for name, test in _FORMATS:
        if all(test(v) for v in values):
            return {"type": "string", "format": name}
    distinct = sorted(set(values))
    if (len(values) >= 4 and len(distinct) <= min(8, len(values) // 2)
            and all(_ENUM_WORD.match(v) for v in distinct)):
        return {"type": "string", "enum": distinct}
    schema: dict[str, Any] = {"type": "string"}
    if all(values):
        schema["minLength"] = 1
    return schema


def _object(values: list[dict[str, Any]]) -> dict[str, Any]:
    keys: list[str] = []
    for record in values:
        keys += [k for k in record if k not in keys]
    return {
        "type": "object",
        "properties": {k: infer([r[k] for r in values if k in r]) for k in keys},
        "required": [k for k in keys if all(k in r for r in values)],
        "additionalProperties": False,
    }


def _for_kind(kind: str, values: list[Any]) -> dict[str, Any]:
    if kind == "string":
        return _string(values)
    if kind == "object":
        return _object(values)
    if kind == "array":
        items = [item for value in values for item in value]
        return {"type": "array", "items": infer(items)} if items else {"type": "array"}
    schema: dict[str, Any] = {"type": kind}
    if kind in ("integer", "number") and all(v >= 0 for v in values):
        schema["minimum"] = 0
    return schema


def infer(values: list[Any]) -> dict[str, Any]:
    """The strictest reasonable schema that accepts every value."""
    nullable = any(v is None for v in values)
    groups: dict[str, list[Any]] = {}
    for value in values:
        if value is not None:
            groups.setdefault(_kind(value), []).append(value)
    if "integer" in groups and "number" in groups:
        groups["number"] = groups.pop("integer") + groups["number"]
    if not groups:
        return {"type": "null"}
    schemas = [_for_kind(kind, vals) for kind, vals in groups.items()]
    if len(schemas) == 1:
        schema = schemas[0]
        if nullable:
            schema["type"] = [schema["type"], "null"]
            if "enum" in schema:
                schema["enum"] = [*schema["enum"], None]
        return schema
    return {"anyOf": schemas + ([{"type": "null"}] if nullable else [])}


def design(entity: str, samples: list[dict[str, Any]], description: str = "") -> tuple[
        dict[str, Any], dict[str, Any]]:
    """The schema for ``entity`` records and a report describing each top-level field."""
    body = _object(samples)
    schema = {
        "$schema": DRAFT,
        "title": entity,
        "description": description or f"A {entity} record, inferred from {len(samples)} samples.",
        **body,
    }
    fields = []
    for name, prop in body["properties"].items():
        types = prop.get("type", [s.get("type") for s in prop.get("anyOf", [])])
        types = types if isinstance(types, list) else [types]
        field: dict[str, Any] = {
            "name": name,
            "types": [t for t in types if t != "null"] or ["null"],
            "required": name in body["required"],
            "nullable": "null" in types,
        }
        if "format" in prop:
            field["format"] = prop["format"]
        if "enum" in prop:
            field["enum"] = [v for v in prop["enum"] if v is not None]
        fields.append(field)
    report = {
        "schema_version": 1,
        "entity": entity,
        "samples": len(samples),
        "required": body["required"],
        "fields": fields,
    }
    return schema, report


def _serve(inv: Invocation) -> None:
    fresh_deliverable(inv)
    request = json.loads((inv.root / "inputs" / "request.json").read_text(encoding="utf-8"))
    samples = json.loads((inv.root / "inputs" / "samples.json").read_text(encoding="utf-8"))
    schema, report = design(request["entity"], samples, request.get("description", ""))
    write_json(inv.deliverable / "schema.json", schema)
    write_json(inv.deliverable / "report.json", report)
    if inv.request is not None:
        write_text(inv.deliverable / "notes.md", rework_notes(inv, [
            f"Re-inferred the schema from all {len(samples)} samples.",
            f"Required fields: {', '.join(report['required']) or 'none'}.",
            "Unknown fields are refused (additionalProperties: false) at every level.",
        ]))


def main() -> int:
    """Entry point for ``python -m aismm.agents.schema_designer``."""
    return run(_serve, ("contract.schema_design",))


if __name__ == "__main__":
    raise SystemExit(main())
