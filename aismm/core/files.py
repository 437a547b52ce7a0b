"""A contract's rules on a folder of files (``inputs/`` or ``deliverable/``), in one place.

The gate (every push), mission creation (the client's inputs) and the DoD's ``files`` and
``schema`` checks all judge files with these functions, so one rule has one implementation and
one wording. They are pure: paths, sizes and bytes in, :class:`FileProblem` values out; each
caller reads the files its own way (git blobs, a checkout, an inputs folder) and formats the
problems its own way.

* :func:`layout_problems`: case collisions, file count, per-file and total size, paths outside
  the allowed globs, and (unless told otherwise) required files that are missing.
* :func:`document_problems`: every file a file spec gives a schema is parsed
  (:func:`parse_document`) and validated against that schema.

The rules are read through small protocols (:class:`FileRules`): a
:class:`aismm.core.contract.Contract` is one, and so is the plain record the lean hook path
builds from its cache (:mod:`aismm.state.lean`), so this module imports neither pydantic nor,
until a document is validated, jsonschema or PyYAML.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from aismm.core.safepath import case_collisions
from aismm.core.schema_subset import surely_valid

__all__ = [
    "FileProblem",
    "FileRules",
    "Part",
    "document_format",
    "document_problems",
    "layout_problems",
    "match_glob",
    "parse_document",
    "schema_errors",
    "schema_targets",
]

Part = Literal["inputs", "deliverable"]
_NOUN: dict[Part, str] = {"inputs": "input", "deliverable": "deliverable"}
_VERB: dict[Part, str] = {"inputs": "provide", "deliverable": "deliver"}
SCHEMA_DETAIL = 200  # characters of a schema error a problem quotes
PARSE_DETAIL = 120  # characters of a parser error a problem quotes


@dataclass(frozen=True)
class FileProblem:
    """One way a folder breaks its contract: ``path`` (a file, the folder ``<part>/``, or the
    contract's glob for a missing file), what is wrong, and how to fix it."""

    path: str
    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.path}: {self.what}; {self.fix}"


class SpecRule(Protocol):
    """A file (or glob) a part requires or allows (:class:`aismm.core.contract.FileSpec`)."""

    @property
    def path(self) -> str: ...
    @property
    def required(self) -> bool: ...
    @property
    def schema_(self) -> str | None: ...


class LimitRule(Protocol):
    """Size limits on a part's files (:class:`aismm.core.contract.Limits`)."""

    @property
    def max_file_bytes(self) -> int: ...
    @property
    def max_files(self) -> int: ...
    @property
    def max_total_bytes(self) -> int: ...


class InputRules(Protocol):
    """What the client provides (:class:`aismm.core.contract.Inputs`)."""

    @property
    def files(self) -> Sequence[SpecRule]: ...
    @property
    def limits(self) -> LimitRule: ...


class DeliverableRules(InputRules, Protocol):
    """What the agent delivers (:class:`aismm.core.contract.Deliverable`)."""

    @property
    def allowed(self) -> Sequence[str]: ...


class FileRules(Protocol):
    """A contract's rules on files, as this module reads them."""

    @property
    def inputs(self) -> InputRules: ...
    @property
    def deliverable(self) -> DeliverableRules: ...


def match_glob(path: str, pattern: str) -> bool:
    """Match a repository path against a glob where ``**`` spans directories."""
    if pattern.endswith("/**"):
        return path.startswith(pattern[:-2])
    return fnmatch.fnmatchcase(path, pattern) and path.count("/") == pattern.count("/")


def schema_errors(schema_text: bytes, data: Any) -> list[tuple[str, str]]:
    """Validate data against a JSON Schema: ``(field, message)`` per error, by field path
    (``(document)`` for the whole document).

    A document :func:`~aismm.core.schema_subset.surely_valid` accepts has none (jsonschema
    would find none): answered without importing jsonschema, which is asked otherwise (and
    words the errors)."""
    schema = json.loads(schema_text)
    if surely_valid(schema, data):
        return []
    from aismm.core import jsonschemas  # noqa: PLC0415 - jsonschema only where it must judge

    return jsonschemas.document_errors(schema, data)


def _rules(contract: FileRules, part: Part
           ) -> tuple[Sequence[SpecRule], Sequence[str], LimitRule]:
    """A part's file specs, allowed globs and limits (inputs allow exactly their specs)."""
    if part == "inputs":
        specs = contract.inputs.files
        return specs, [s.path for s in specs], contract.inputs.limits
    return contract.deliverable.files, contract.deliverable.allowed, contract.deliverable.limits


def layout_problems(contract: FileRules, part: Part, sizes: Mapping[str, int], *,
                    around: Iterable[str] = (), required: bool = True,
                    show: Callable[[str], str] = str) -> list[FileProblem]:
    """Whether the files of ``part`` fit the contract's layout and limits.

    ``sizes`` maps each file to its size in bytes; only those under ``<part>/`` are measured,
    the others (and ``around``: the rest of the same checkout) count only for case collisions.
    ``required=False`` leaves missing required files alone (the gate: an attempt may be
    delivered over several pushes; the DoD requires them). ``show`` renders a path quoted
    inside a message. Problems come in a stable order: collisions, count, each file by path
    (size, then allowed), total size, missing files.
    """
    specs, allowed, limits = _rules(contract, part)
    prefix, noun, verb = f"{part}/", _NOUN[part], _VERB[part]
    own = {path: size for path, size in sizes.items() if path.startswith(prefix)}
    out = [FileProblem(b, f"collides with {show(a)} on case-insensitive file systems",
                       "rename one of them")
           for a, b in case_collisions([*sizes, *around])]
    if len(own) > limits.max_files:
        out.append(FileProblem(prefix, f"{len(own)} files exceed the contract's limit of "
                               f"{limits.max_files}", f"{verb} fewer files"))
    for path, size in sorted(own.items()):
        if size > limits.max_file_bytes:
            out.append(FileProblem(path, f"{size} bytes exceed the per-file limit of "
                                   f"{limits.max_file_bytes}", "make the file smaller"))
        if not any(match_glob(path, pattern) for pattern in allowed):
            out.append(FileProblem(path, f"not an allowed {noun} path",
                                   f"{verb} only {', '.join(allowed)}"))
    total = sum(own.values())
    if total > limits.max_total_bytes:
        out.append(FileProblem(prefix, f"{total} bytes exceed the total limit of "
                               f"{limits.max_total_bytes}", f"{verb} less"))
    if required:
        out += [FileProblem(spec.path, f"required {noun} missing", "add it") for spec in specs
                if spec.required and not any(match_glob(path, spec.path) for path in own)]
    return out


def schema_targets(contract: FileRules, part: Part, paths: Iterable[str]
                   ) -> list[tuple[str, str]]:
    """``(path, schema)`` for each file of ``part`` a file spec gives a schema, spec by spec."""
    prefix = f"{part}/"
    present = sorted(path for path in paths if path.startswith(prefix))
    return [(path, spec.schema_) for spec in _rules(contract, part)[0] if spec.schema_
            for path in present if match_glob(path, spec.path)]


def document_format(path: str) -> Literal["JSON", "YAML"]:
    """How a document is read: JSON when its name ends in ``.json``, YAML otherwise."""
    return "JSON" if path.endswith(".json") else "YAML"


def parse_document(path: str, data: bytes) -> Any:
    """Parse a document by its name (:func:`document_format`); ValueError when malformed."""
    try:
        if document_format(path) == "JSON":
            return json.loads(data)
        from aismm.core.model import load_yaml  # noqa: PLC0415 - lean hook path (module doc)

        return load_yaml(data, path)
    except RecursionError as exc:
        raise ValueError(f"{path}: nested too deeply to parse") from exc


def document_problems(contract: FileRules, part: Part, files: Mapping[str, bytes | None],
                      schemas: Mapping[str, bytes], *, per_file: int | None = None
                      ) -> list[FileProblem]:
    """Each file of ``files`` a spec of ``part`` gives a schema parses and validates.

    ``files`` maps paths to their content (None: present but not a regular file); paths no
    schema covers are ignored, so callers may pass only :func:`schema_targets`. ``schemas``
    maps the contract's schema paths to their text. ``per_file`` caps the schema errors
    reported per file.
    """
    verb = _VERB[part]
    out = []
    for path, schema_path in schema_targets(contract, part, files):
        data = files[path]
        if data is None:
            out.append(FileProblem(path, "not a regular file", f"{verb} the file itself"))
            continue
        schema = schemas.get(schema_path)
        if schema is None:
            out.append(FileProblem(path, f"the contract's schema {schema_path} is missing",
                                   "report this to the hub operator"))
            continue
        try:
            document = parse_document(path, data)
        except ValueError as exc:
            out.append(FileProblem(path, f"cannot be parsed ({str(exc)[:PARSE_DETAIL]})",
                                   f"{verb} valid {document_format(path)}"))
            continue
        out += [FileProblem(path, "fails the contract schema "
                            f"({f'{field}: {message}'[:SCHEMA_DETAIL]})",
                            "make the file match the contract's schema")
                for field, message in schema_errors(schema, document)[:per_file]]
    return out
