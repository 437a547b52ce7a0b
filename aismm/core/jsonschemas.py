"""JSON Schema validation: the one module that imports ``jsonschema``.

Importing ``jsonschema`` (with ``referencing`` and ``attrs``) costs a process ~30 ms, so the
modules that validate documents (:mod:`aismm.core.files`, :mod:`aismm.core.contract`) import
this one only when a schema is actually checked: a command or hook that validates nothing
never loads it.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import jsonschema

__all__ = ["document_errors", "schema_problem"]


def document_errors(schema: Any, data: Any) -> list[tuple[str, str]]:
    """Validate data against a JSON Schema (parsed): ``(field, message)`` per error, by field
    path (``(document)`` for the whole document)."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.path)))
    return [("/".join(str(p) for p in err.path) or "(document)", err.message) for err in errors]


def schema_problem(schema: Any) -> str | None:
    """Why ``schema`` is not a valid draft 2020-12 JSON Schema (the first line), or None.

    Checking a schema against the meta-schema takes milliseconds and the answer depends on
    the schema alone, so it is kept per process by the schema's JSON text (the same contract
    schemas are checked at every load of their contract)."""
    try:
        text = json.dumps(schema)
    except (TypeError, ValueError):  # not JSON data (a YAML date, a cycle): checked each time
        return _problem(schema)
    return _problem_of_text(text)


@functools.lru_cache(maxsize=1_000)
def _problem_of_text(text: str) -> str | None:
    return _problem(json.loads(text))


def _problem(schema: Any) -> str | None:
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        return str(exc).splitlines()[0]
    return None
