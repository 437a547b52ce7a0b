"""aismm.core.schema_subset against jsonschema, the reference: whatever it calls surely valid,
jsonschema's draft 2020-12 validator (as aismm.core.files builds it) finds valid too.

Differential, over every schema the contracts ship plus hand-written ones for each keyword it
knows, with the golden documents, hypothesis mutations of them and arbitrary JSON values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aismm.core.schema_subset import surely_valid

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = {p.relative_to(ROOT / "contracts").as_posix(): json.loads(p.read_text())
           for p in sorted((ROOT / "contracts").glob("*/schemas/*.json"))}
CRAFTED: dict[str, Any] = {
    "types": {"type": ["integer", "null"], "minimum": 0, "exclusiveMaximum": 10},
    "numbers": {"type": "number", "maximum": 1.5, "exclusiveMinimum": -1},
    "strings": {"type": "string", "minLength": 2, "maxLength": 4, "pattern": "^a|b$"},
    "enum": {"enum": [1, "1", True, None, 1.5, "x"]},
    "const": {"properties": {"a": {"const": 0}, "b": {"const": False}}},
    "arrays": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3,
               "uniqueItems": True},
    "no items": {"type": "array", "items": False},
    "objects": {"type": "object", "minProperties": 1, "maxProperties": 2,
                "additionalProperties": {"type": "integer"}, "properties": {"s": True}},
    "closed": {"properties": {"a": {"type": "boolean"}}, "required": ["a"],
               "additionalProperties": False},
    "refs": {"$defs": {"n": {"type": "integer"}, "l": {"type": "array", "items": {
        "$ref": "#/$defs/n"}}}, "properties": {"l": {"$ref": "#/$defs/l"}, "m": {
            "$ref": "#/$defs/n", "minimum": 3}}},
    "pattern props": {"patternProperties": {"^x": {"type": "string"}},
                      "additionalProperties": False},
    "one of": {"oneOf": [{"type": "integer"}, {"minimum": 2}]},
    "nested id": {"$defs": {"a": {"$id": "other.json", "type": "string"}},
                  "properties": {"a": {"$ref": "#/$defs/a"}}},
    "unknown ref": {"$ref": "other.json#/x"},
    "malformed": {"type": "strng", "minimum": "a", "required": "x"},
}
SCHEMAS = {**SHIPPED, **CRAFTED}
GOLDEN = [json.loads(p.read_text()) for p in sorted((ROOT / "contracts").glob(
    "*/benchmark/*/golden/*.json"))]
KEYS = sorted({"a", "b", "l", "m", "s", "x1", *(k for s in SCHEMAS.values() if isinstance(s, dict)
                                               for k in s.get("properties", {}))})


def reference_valid(schema: Any, instance: Any) -> bool:
    try:
        return not list(jsonschema.Draft202012Validator(schema).iter_errors(instance))
    except Exception:  # a malformed schema: the gate reports an internal error, never a pass
        return False


scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 12), st.floats(-2, 12),
                    st.sampled_from(["", "a", "ab", "b", "abcde", "x", "1", "inputs/src/a.py",
                                     "error", "warning", "info", "other"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)),
    max_leaves=12)


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    """A golden document with one value somewhere replaced, removed or added."""
    doc = json.loads(json.dumps(draw(st.sampled_from(GOLDEN))))
    node = doc
    for _ in range(draw(st.integers(0, 4))):
        children = list(node.items()) if isinstance(node, dict) else list(enumerate(node)) \
            if isinstance(node, list) else []
        containers = [(k, v) for k, v in children if isinstance(v, (dict, list)) and v]
        if not containers:
            break
        node = draw(st.sampled_from(containers))[1]
    action = draw(st.sampled_from(["replace", "remove", "add"]))
    if isinstance(node, dict) and node:
        key = draw(st.sampled_from(sorted(node)))
        if action == "remove":
            del node[key]
        elif action == "add":
            node[draw(st.sampled_from(KEYS))] = draw(values)
        else:
            node[key] = draw(values)
    elif isinstance(node, list) and node:
        index = draw(st.integers(0, len(node) - 1))
        if action == "remove":
            node.pop(index)
        elif action == "add":
            node.append(draw(st.one_of(values, st.sampled_from(node))))
        else:
            node[index] = draw(values)
    return doc


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(SCHEMAS)), instance=st.one_of(mutated(), values,
                                                                  st.sampled_from(GOLDEN)))
def test_surely_valid_only_when_jsonschema_finds_it_valid(name: str, instance: Any) -> None:
    if surely_valid(SCHEMAS[name], instance):
        assert reference_valid(SCHEMAS[name], instance), (name, instance)


@pytest.mark.parametrize("path", sorted(p for p in SHIPPED if p.endswith(
    "code_review/schemas/deliverable.schema.json")))
def test_the_golden_findings_need_no_jsonschema(path: str) -> None:
    """The commonest delivery is judged without importing jsonschema (the point of the
    module), and a broken one is left to jsonschema."""
    findings = [g for g in GOLDEN if "findings" in g]
    assert findings and all(surely_valid(SHIPPED[path], g) for g in findings)
    broken = {**findings[0], "findings": [{**findings[0]["findings"][0], "line": 0}]}
    assert not surely_valid(SHIPPED[path], broken) and not reference_valid(SHIPPED[path], broken)


@pytest.mark.parametrize(("name", "instance", "sure"), [
    ("types", 1.0, False),  # jsonschema takes 1.0 for an integer; this module is not sure
    ("types", None, True), ("types", 10, False), ("numbers", 1.5, True),
    ("strings", "ab", True), ("strings", "abcde", False), ("strings", "cc", False),
    ("enum", True, True), ("enum", 1.0, False), ("const", {"a": 0, "b": False}, True),
    ("const", {"a": False}, False), ("arrays", ["a", "a"], False), ("arrays", ["a"], True),
    ("no items", [], True), ("no items", [1], False), ("objects", {"s": "x"}, True),
    ("objects", {"t": "x"}, False), ("closed", {"a": True}, True), ("closed", {}, False),
    ("refs", {"l": [1, 2], "m": 3}, True), ("refs", {"m": 2}, False),
    ("pattern props", {}, False), ("one of", 1, False), ("nested id", {}, False),
    ("unknown ref", 1, False), ("malformed", "x", False),
])
def test_each_keyword(name: str, instance: Any, sure: bool) -> None:
    assert surely_valid(CRAFTED[name], instance) is sure
    if sure:
        assert reference_valid(CRAFTED[name], instance)


FINDINGS = SHIPPED["code_review/schemas/deliverable.schema.json"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instance=mutated())
def test_mutated_deliveries_under_their_own_schemas(instance: Any) -> None:
    """Near misses of real deliveries, each under every shipped schema (its own among them)."""
    for name, schema in SHIPPED.items():
        if surely_valid(schema, instance):
            assert reference_valid(schema, instance), (name, instance)
    if surely_valid(FINDINGS, instance):
        assert reference_valid(FINDINGS, instance)
