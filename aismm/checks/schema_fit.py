"""schema_design check: the schema is valid, accepts every sample and rejects counter-examples.

Run in a checkout: ``python -m aismm.checks.schema_fit``. Formats are asserted (``date``,
``email``, ...). Counter-examples are generated from the samples: an empty object, the first
sample without each field present in every sample, with each field's value of another JSON type,
and with an unknown extra field. Prints one line per problem; exit 0 = pass.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import jsonschema

from aismm.checks import report

__all__ = ["check", "counter_examples", "first_error", "json_kind", "main", "validator"]

SCHEMA = "deliverable/schema.json"
SAMPLES = "inputs/samples.json"
DRAFT = "https://json-schema.org/draft/2020-12/schema"
UNKNOWN_FIELD = "__unexpected_field__"
_WRONG_VALUES: list[tuple[str, Any]] = [
    ("string", "__wrong_type__"),
    ("number", 987654321),
    ("object", {"__wrong_type__": True}),
    ("array", ["__wrong_type__"]),
    ("boolean", True),
]


def json_kind(value: Any) -> str:
    """The JSON type of a parsed value (integers and floats are both ``number``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def counter_examples(samples: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Records a non-trivial schema for these samples must reject, each with a description."""
    if not samples:
        return []
    common = [key for key in samples[0] if all(key in s for s in samples)]
    base = samples[0]
    out: list[tuple[str, dict[str, Any]]] = []
    if common:
        out.append(("an empty object", {}))
    for key in common:
        record = copy.deepcopy(base)
        del record[key]
        out.append((f"sample 0 without the field {key!r} present in every sample", record))
    for key in base:
        kinds = {json_kind(s[key]) for s in samples if key in s}
        for kind, wrong in _WRONG_VALUES:
            if kind not in kinds:
                record = copy.deepcopy(base)
                record[key] = wrong
                article = "an" if kind[0] in "aeiou" else "a"
                out.append((f"sample 0 with {key!r} set to {article} {kind}", record))
                break
    unknown = UNKNOWN_FIELD
    while any(unknown in s for s in samples):
        unknown += "_"
    extra = copy.deepcopy(base)
    extra[unknown] = "unexpected"
    out.append((f"sample 0 with an unknown field {unknown!r}", extra))
    return out


def validator(schema: Any) -> jsonschema.Draft202012Validator:
    """A draft 2020-12 validator that asserts formats."""
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def first_error(check: jsonschema.Draft202012Validator, record: Any) -> str | None:
    """The first validation error for a record, or None when it validates."""
    try:
        error = next(iter(check.iter_errors(record)), None)
    except Exception as exc:  # an unresolvable $ref or a broken keyword
        return f"cannot evaluate the schema: {type(exc).__name__}: {exc}"
    if error is None:
        return None
    field = "/".join(str(p) for p in error.path) or "(record)"
    return f"{field}: {error.message}"[:200]


def check(root: Path) -> list[str]:
    """Problems with ``deliverable/schema.json`` against ``inputs/samples.json``."""
    try:
        schema = json.loads((root / SCHEMA).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [f"{SCHEMA}: missing; deliver the JSON Schema"]
    except (ValueError, UnicodeDecodeError) as exc:
        return [f"{SCHEMA}: not valid JSON ({exc}); write a JSON object"]
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        return [f"{SCHEMA}: not a valid JSON Schema ({exc.message}); fix the keyword it names"]
    if isinstance(schema, dict) and schema.get("$schema", DRAFT) != DRAFT:
        return [f"{SCHEMA}: $schema is {schema['$schema']!r}; declare draft 2020-12 ({DRAFT})"]
    samples = json.loads((root / SAMPLES).read_text(encoding="utf-8"))
    check_ = validator(schema)
    problems = []
    for index, sample in enumerate(samples):
        error = first_error(check_, sample)
        if error is not None:
            problems.append(
                f"{SCHEMA}: rejects {SAMPLES}[{index}] ({error}); accept every sample"
            )
    for description, record in counter_examples(samples):
        if first_error(check_, record) is None:
            problems.append(
                f"{SCHEMA}: accepts {description}; tighten it (required, types,"
                " additionalProperties: false)"
            )
    return problems


def main() -> int:
    """Entry point: check the checkout in the current directory."""
    problems = check(Path.cwd())
    return report(problems)


if __name__ == "__main__":
    sys.exit(main())
