"""Shared pydantic conventions: strict models and readable validation errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = ["CONFIG", "Strict", "defaults", "describe_validation", "dump_yaml", "forget_documents",
           "load_document", "load_yaml"]


#: The shared model configuration. ``defer_build``: a model's validator is built when it first
#: validates (or dumps), not when its class is created, so a process pays only for the models
#: it uses (a start-up cost; validation is the same).
CONFIG = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Strict(BaseModel):
    """A frozen model that refuses unknown fields."""

    model_config = CONFIG


_M = TypeVar("_M", bound=BaseModel)


def defaults(model: type[_M]) -> _M:
    """``model()``, every field at its default, made without building the model's validator:
    the default of a field whose type is a model (``limits: Limits = defaults(Limits)``), so
    that creating the class that holds it builds nothing (see :data:`CONFIG`). The same value
    as ``model()``: the defaults are the class's own constants, valid by construction."""
    return model.model_construct()


def describe_validation(exc: ValidationError) -> list[str]:
    """Turn pydantic errors into ``field.path: message`` lines."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err["loc"]) or "(document)"
        lines.append(f"{loc}: {err['msg']}")
    return lines


# libyaml's CSafeLoader when PyYAML was built with it; it has SafeLoader's constructor API, which
# is what the type checker is shown.
if TYPE_CHECKING:
    _LoaderBase = yaml.SafeLoader
else:
    _LoaderBase = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _SafeLoader(_LoaderBase):
    """Safe loader (libyaml's parser when present) that refuses duplicate keys."""


def _construct_mapping(loader: _SafeLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_SafeLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(text: str | bytes, where: str) -> Any:
    """Parse YAML safely; raise ValueError('<where>: line N: ...') on malformed input."""
    try:
        return yaml.load(text, Loader=_SafeLoader)  # safe loader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValueError(f"{where}: {at}malformed YAML ({problem})") from exc


def dump_yaml(data: Any) -> str:
    """Reproducible YAML: keys in the given order, block style, trailing newline."""
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)


# -- documents by blob id ------------------------------------------------------------------------
# A git blob id names its content, so a document validated from a blob never goes stale: the
# registry's documents, a mission's verdicts and plan records, and every document the gate
# validates are parsed once per process however many commits (and registry snapshots) hold the
# same blob. The models are
# frozen; the memo is emptied when it reaches MEMO_MAX entries. Failures are not memoised.
MEMO_MAX = 20_000
_MEMO: dict[tuple[type[BaseModel], str], BaseModel] = {}


def forget_documents() -> None:
    """Empty the memo (as a new process starts)."""
    _MEMO.clear()


def load_document(model: type[_M], oid: str, blob: Callable[[str], bytes], where: str,
                  parse: Callable[[bytes, str], _M] | None = None) -> _M:
    """``model`` made from the YAML blob ``oid`` (its bytes from ``blob(oid)``): by ``parse(data,
    where)``, or by validating it with :func:`load_yaml`. Made once per process per (model,
    blob id), as said above; raises what ``parse`` (or load_yaml and validation) raise, and
    ``parse`` must depend on the content alone (its error messages may name ``where``)."""
    data = blob(oid)  # read even when memoised: a blob this repository lacks fails as before
    key = (model, oid)
    found = _MEMO.get(key)
    if found is None:
        found = parse(data, where) if parse is not None else \
            model.model_validate(load_yaml(data, where))
        if len(_MEMO) >= MEMO_MAX:
            _MEMO.clear()
        _MEMO[key] = found
    return cast(_M, found)
