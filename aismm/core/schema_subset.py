"""Sure answers on a subset of JSON Schema (draft 2020-12), without importing jsonschema.

:func:`surely_valid` answers True only when ``jsonschema.Draft202012Validator(schema)`` (no
format assertion, as :func:`aismm.core.files.schema_errors` builds it) finds no error in the
instance. It knows the keywords the contracts' schemas use — ``type``, ``properties``,
``required``, ``additionalProperties``, ``items``, ``enum``, ``const``, the numeric, length and
count bounds, ``pattern`` (``re.search``, as jsonschema does) and local ``$ref`` — and every
check is at least as strict as jsonschema's: ``1.0`` is not taken for an integer, ``enum`` and
``const`` compare scalars of the same type only. Any other keyword, a reference it cannot
follow (or one through an array), a ``$schema`` naming another dialect anywhere (jsonschema
switches to it for that subschema), a malformed schema (a root ``$id`` that is not a string),
anything it is not sure of, answers False, and the caller asks
jsonschema (which then also words the errors). It exists because importing jsonschema costs a
hook run without ``aismm serve`` more than everything else it judges (docs/architecture.md).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["surely_valid"]

# Annotations: jsonschema validates nothing with them (``format`` asserts nothing without a
# format checker). ``$defs`` and ``definitions`` only hold subschemas for ``$ref``.
_IGNORED = frozenset({"$schema", "$comment", "title", "description", "examples", "default",
                      "format", "deprecated", "readOnly", "writeOnly", "$defs", "definitions"})
# Keywords that change how references resolve: a schema holding one anywhere is left to
# jsonschema (only the root's $id, the base every local reference resolves against, is fine).
_SCOPED = frozenset({"$id", "$anchor", "$dynamicRef", "$dynamicAnchor", "$recursiveRef",
                     "$recursiveAnchor", "$vocabulary"})
_DEPTH = 64  # reference and nesting depth beyond which the answer is "not sure"
# jsonschema switches to the dialect a (sub)schema's $schema names: only this one is judged here
_DIALECT = "https://json-schema.org/draft/2020-12/schema"


class _Unsure(Exception):
    """Not a keyword, a form or a value this module judges with certainty."""


def surely_valid(schema: Any, instance: Any) -> bool:
    """True only when jsonschema's draft 2020-12 validator would find ``instance`` valid under
    ``schema`` (see the module doc); False when it is invalid or not surely valid."""
    try:
        if isinstance(schema, dict) and _scoped(schema, root=True):
            return False
        return _valid(schema, instance, schema, 0)
    except Exception:  # _Unsure, or a malformed schema: jsonschema decides
        return False


def _scoped(node: Any, root: bool = False, names: bool = False) -> bool:
    """Whether a keyword that changes how references resolve, or which dialect applies, is
    anywhere in ``node``; ``names``: ``node`` is a ``properties`` mapping, whose keys are
    property names, not keywords (:func:`_ref` never lands on such a mapping)."""
    if isinstance(node, dict):
        return any((not names and ((key in _SCOPED and not (
            root and key == "$id" and isinstance(value, str))) or (
            key == "$schema" and value != _DIALECT)))
            or _scoped(value, names=not names and key == "properties")
            for key, value in node.items())
    if isinstance(node, list):
        return any(_scoped(value) for value in node)
    return False


def _valid(schema: Any, instance: Any, root: dict[str, Any], depth: int) -> bool:
    if depth > _DEPTH:
        raise _Unsure
    if schema is True:
        return True
    if not isinstance(schema, dict):  # False, or not a schema
        raise _Unsure
    for key, value in schema.items():
        if key in _IGNORED or (key == "$id" and schema is root):
            continue
        keyword = _KEYWORDS.get(key)
        if keyword is None:
            raise _Unsure
        if not keyword(value, instance, schema, root, depth + 1):
            return False
    return True


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)


def _count(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise _Unsure
    return value


def _type(value: Any, instance: Any, *_: Any) -> bool:
    names = value if isinstance(value, list) else [value]
    return any(_TYPES[name](instance) for name in names)


_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict), "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str), "integer": lambda v: type(v) is int,
    "number": _is_number, "boolean": lambda v: type(v) is bool, "null": lambda v: v is None,
}


def _properties(value: Any, instance: Any, _schema: Any, root: dict[str, Any],
                depth: int) -> bool:
    if not isinstance(value, dict):
        raise _Unsure
    if not isinstance(instance, dict):
        return True
    return all(_valid(sub, instance[name], root, depth) for name, sub in value.items()
               if name in instance)


def _required(value: Any, instance: Any, *_: Any) -> bool:
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise _Unsure
    return not isinstance(instance, dict) or all(name in instance for name in value)


def _additional(value: Any, instance: Any, schema: dict[str, Any], root: dict[str, Any],
                depth: int) -> bool:
    if "patternProperties" in schema:
        raise _Unsure
    if not isinstance(instance, dict):
        return True
    known = schema.get("properties", {})
    if not isinstance(known, dict):
        raise _Unsure
    extras = [name for name in instance if name not in known]
    if value is True:
        return True
    if value is False:
        return not extras
    if isinstance(value, dict):
        return all(_valid(value, instance[name], root, depth) for name in extras)
    raise _Unsure


def _items(value: Any, instance: Any, schema: dict[str, Any], root: dict[str, Any],
           depth: int) -> bool:
    if "prefixItems" in schema:
        raise _Unsure
    if not isinstance(instance, list) or value is True:
        return True
    if value is False:
        return not instance
    return all(_valid(value, item, root, depth) for item in instance)


def _same(instance: Any, member: Any) -> bool:
    """Surely equal, as jsonschema compares: scalars of one type (containers: not sure)."""
    if isinstance(member, (dict, list)) or isinstance(instance, (dict, list)):
        raise _Unsure
    return type(instance) is type(member) and instance == member


def _enum(value: Any, instance: Any, *_: Any) -> bool:
    if not isinstance(value, list):
        raise _Unsure
    return any(_same(instance, member) for member in value)


def _const(value: Any, instance: Any, *_: Any) -> bool:
    return _same(instance, value)


def _bound(check: Any) -> Any:
    def keyword(value: Any, instance: Any, *_: Any) -> bool:
        if not _is_number(value):
            raise _Unsure
        return not _is_number(instance) or bool(check(instance, value))
    return keyword


def _sized(kind: type[str] | type[list[Any]] | type[dict[str, Any]], check: Any) -> Any:
    def keyword(value: Any, instance: Any, *_: Any) -> bool:
        if not isinstance(instance, kind):
            return True
        return bool(check(len(instance), _count(value)))
    return keyword


def _pattern(value: Any, instance: Any, *_: Any) -> bool:
    if not isinstance(value, str):
        raise _Unsure
    return not isinstance(instance, str) or re.search(value, instance) is not None


def _unique(value: Any, instance: Any, *_: Any) -> bool:
    if value is False or not isinstance(instance, list):
        return True
    if value is not True or not all(isinstance(item, str) for item in instance):
        raise _Unsure
    return len(set(instance)) == len(instance)


def _ref(value: Any, instance: Any, _schema: Any, root: dict[str, Any], depth: int) -> bool:
    if not isinstance(value, str) or not value.startswith("#") or "%" in value:
        raise _Unsure
    target: Any = root
    pointer = value[1:]
    if pointer:
        if not pointer.startswith("/"):
            raise _Unsure  # an anchor name
        for part in pointer[1:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise _Unsure  # (through an array: jsonschema may fail where it walks)
            target = target[part]
        if part == "properties":
            raise _Unsure  # maybe a mapping of property names, which _scoped did not check
    return _valid(target, instance, root, depth)


_KEYWORDS: dict[str, Any] = {
    "type": _type, "properties": _properties, "required": _required,
    "additionalProperties": _additional, "items": _items, "enum": _enum, "const": _const,
    "minimum": _bound(lambda i, v: i >= v), "maximum": _bound(lambda i, v: i <= v),
    "exclusiveMinimum": _bound(lambda i, v: i > v), "exclusiveMaximum": _bound(lambda i, v: i < v),
    "minLength": _sized(str, lambda n, v: n >= v), "maxLength": _sized(str, lambda n, v: n <= v),
    "minItems": _sized(list, lambda n, v: n >= v), "maxItems": _sized(list, lambda n, v: n <= v),
    "minProperties": _sized(dict, lambda n, v: n >= v),
    "maxProperties": _sized(dict, lambda n, v: n <= v),
    "pattern": _pattern, "uniqueItems": _unique, "$ref": _ref,
}
