"""Contracts: the published, versioned instruction an agent executes."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from aismm.core.clock import Duration
from aismm.core.errors import ContractError
from aismm.core.files import match_glob, schema_errors
from aismm.core.model import Strict, defaults, describe_validation, load_yaml
from aismm.core.money import MAX_AMOUNT

__all__ = [
    "TIERS",
    "Check",
    "Contract",
    "FileSpec",
    "Limits",
    "Retry",
    "Review",
    "RubricItem",
    "Step",
    "Tier",
    "Timeouts",
    "digest",
    "load_contract_dir",
    "match_glob",
    "parse_ref",
    "schema_errors",
    "step_order",
    "validate_document",
]

CONTRACT_ID = r"^contract\.[a-z0-9_]+$"
SEMVER = r"^\d+\.\d+\.\d+$"
TIERS = ("T0", "T1", "T2")
Tier = Literal["T0", "T1", "T2"]
RelPath = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.*/\-\[\]]+$", max_length=200)]


class FileSpec(Strict):
    """A file (or glob) a contract requires or allows, with an optional JSON Schema."""

    path: RelPath
    required: bool = True
    schema_: str | None = Field(default=None, alias="schema")
    description: str = ""

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        if value.startswith("/") or ".." in value.split("/"):
            raise ValueError("must be a relative path without '..'")
        return value


class Limits(Strict):
    """Size limits on the files of a deliverable."""

    max_file_bytes: int = Field(default=1 << 20, gt=0)
    max_files: int = Field(default=100, gt=0)
    max_total_bytes: int = Field(default=8 << 20, gt=0)


class Inputs(Strict):
    """What the client must provide under ``inputs/``."""

    files: list[FileSpec]
    limits: Limits = defaults(Limits)


class Deliverable(Strict):
    """What the agent must deliver under ``deliverable/``."""

    files: list[FileSpec]
    allowed: list[RelPath] = Field(default_factory=lambda: ["deliverable/**"])
    limits: Limits = defaults(Limits)


class Check(Strict):
    """One automatic DoD check: ``schema``, ``files`` or a sandboxed ``command``."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    kind: Literal["schema", "files", "command"]
    run: list[str] | None = None
    timeout_seconds: float = Field(default=60, gt=0, le=3600)
    memory_mb: int = Field(default=1024, gt=0)
    description: str = ""

    @model_validator(mode="after")
    def _run_only_for_command(self) -> Check:
        if self.kind == "command" and not self.run:
            raise ValueError("a command check needs 'run' (an argv list)")
        if self.kind != "command" and self.run is not None:
            raise ValueError(f"a {self.kind} check takes no 'run'")
        return self


class RubricItem(Strict):
    """A review criterion with its weight."""

    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    description: str
    weight: int = Field(default=1, gt=0)


class Review(Strict):
    """Independent review: how many distinct reviewers, what score passes, on which rubric."""

    quorum: int = Field(default=1, ge=0, le=9)
    threshold: int = Field(default=70, ge=0, le=100)
    rubric: list[RubricItem] = Field(min_length=1)


class Dod(Strict):
    """Definition of done."""

    checks: list[Check] = Field(min_length=1)
    review: Review


class Sla(Strict):
    """Deadline, rework budget and the auto-acceptance window, as ISO 8601 durations."""

    deadline: Duration = dt.timedelta(days=3)
    max_rework: int = Field(default=3, ge=0, le=20)
    acceptance_window: Duration = dt.timedelta(days=2)


class Pricing(Strict):
    """Price bounds in integer tokens."""

    model: Literal["per_task"] = "per_task"
    min: int = Field(ge=0, le=MAX_AMOUNT)
    max: int = Field(gt=0, le=MAX_AMOUNT)

    @model_validator(mode="after")
    def _ordered(self) -> Pricing:
        if self.min > self.max:
            raise ValueError("min must not exceed max")
        return self


class TierTerms(Strict):
    """The platform fee of one tier, in basis points (1000 = 10 %)."""

    fee_bp: int = Field(ge=0, le=10000)


class Disputes(Strict):
    """Who arbitrates and when a client may escalate."""

    arbiter: str | None = None
    rework_scope: str = "only what the DoD and the rubric name"
    escalate_after_reworks: int = Field(default=1, ge=0)


class Timeouts(Strict):
    """How long a step's child may wait for a claim, run one attempt, and take in all."""

    claim: Duration = dt.timedelta(hours=12)
    attempt: Duration = dt.timedelta(days=1)
    step: Duration = dt.timedelta(days=3)


class Retry(Strict):
    """A step's retry policy: attempts counting the first, fallback to the next candidate."""

    max_attempts: int = Field(default=2, ge=1, le=10)
    fallback: bool = True
    timeouts: Timeouts = defaults(Timeouts)


STEP_ID = r"^[a-z][a-z0-9_]{0,31}$"
# an input is taken from the parent's inputs (``inputs/<path>``) or from an earlier step's
# accepted deliverable (``<step>:deliverable/<path>``)
STEP_SOURCE = r"^(?:inputs/[A-Za-z0-9_.\-/]+|[a-z][a-z0-9_]{0,31}:deliverable/[A-Za-z0-9_.\-/]+)$"


class Step(Strict):
    """One step of a workflow contract: a pinned contract run as a child mission."""

    id: Annotated[str, Field(pattern=STEP_ID)]
    contract: str
    needs: list[Annotated[str, Field(pattern=STEP_ID)]] = Field(default_factory=list)
    inputs: dict[RelPath, Annotated[str, Field(pattern=STEP_SOURCE)]] = Field(
        default_factory=dict)
    retry: Retry = defaults(Retry)
    budget_share_bp: int = Field(gt=0, le=10000)
    max_price: int = Field(gt=0, le=MAX_AMOUNT)
    on_failure: Literal["fail", "continue"] = "fail"

    @field_validator("contract")
    @classmethod
    def _pinned(cls, value: str) -> str:
        if not re.fullmatch(r"contract\.[a-z0-9_]+@\d+\.\d+\.\d+", value):
            raise ValueError(f"{value!r} is not pinned; write contract.<name>@<x.y.z>")
        return value

    @field_validator("inputs")
    @classmethod
    def _input_targets(cls, value: dict[str, str]) -> dict[str, str]:
        for target in value:
            if not target.startswith("inputs/") or ".." in target.split("/"):
                raise ValueError(f"{target}: a step input is written under inputs/ of the child")
        return value


class Benchmark(Strict):
    """Thresholds an agent must meet on the benchmark suite to be listed."""

    quality: int = Field(default=70, ge=0, le=100)
    p50_seconds: float = Field(default=30, gt=0)
    max_cost: int = Field(default=1000, ge=0, le=MAX_AMOUNT)


class Contract(Strict):
    """A contract (``contract.yaml``)."""

    schema_version: Literal[1] = 1
    id: Annotated[str, Field(pattern=CONTRACT_ID)]
    version: Annotated[str, Field(pattern=SEMVER)]
    title: str = Field(min_length=1)
    description: str = Field(min_length=1)
    category: str = Field(min_length=1)
    supersedes: list[str] = Field(default_factory=list)
    inputs: Inputs
    deliverable: Deliverable
    dod: Dod
    sla: Sla = defaults(Sla)
    pricing: Pricing
    tiers: dict[Tier, TierTerms] = Field(min_length=1)
    disputes: Disputes = defaults(Disputes)
    steps: list[Step] = Field(default_factory=list)
    benchmark: Benchmark = defaults(Benchmark)

    @model_validator(mode="after")
    def _steps_form_a_dag(self) -> Contract:
        step_order(self.steps)
        return self

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"

    @property
    def name(self) -> str:
        return self.id.removeprefix("contract.")

    def schema_paths(self) -> list[str]:
        """Every schema file the contract references, relative to its folder."""
        specs = [*self.inputs.files, *self.deliverable.files]
        return sorted({s.schema_ for s in specs if s.schema_})


def step_order(steps: list[Step]) -> list[str]:
    """The step ids in a dependency order (stable by declaration); ValueError on a duplicate id,
    an unknown ``needs`` or a source step, a cycle, or shares above 100 %."""
    ids = [s.id for s in steps]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ValueError(f"steps: step id {dupes[0]} is declared twice; give each step its own id")
    known = set(ids)
    for s in steps:
        for need in s.needs:
            if need not in known:
                raise ValueError(f"steps: {s.id}: needs unknown step {need}; declare it or drop "
                                 "it from needs")
        for target, source in s.inputs.items():
            if ":" in source:
                origin = source.split(":", 1)[0]
                if origin not in s.needs:
                    raise ValueError(f"steps: {s.id}: input {target} comes from {origin}, which "
                                     f"is not in needs; add {origin} to needs")
    if sum(s.budget_share_bp for s in steps) > 10000:
        raise ValueError("steps: budget shares add up to more than 10000 bp (100 %); lower them")
    order: list[str] = []
    pending = list(steps)
    while pending:
        ready = [s for s in pending if all(n in order for n in s.needs)]
        if not ready:
            cycle = ", ".join(sorted(s.id for s in pending))
            raise ValueError(f"steps: the needs of {cycle} form a cycle; a workflow must be a "
                             "DAG")
        order += [s.id for s in ready]
        pending = [s for s in pending if s not in ready]
    return order


def parse_ref(ref: str) -> tuple[str, str | None]:
    """Split ``contract.x@1.0.0`` into id and version (version None when absent)."""
    cid, _, version = ref.partition("@")
    if not re.match(CONTRACT_ID, cid) or (version and not re.match(SEMVER, version)):
        raise ContractError(
            f"{ref}: not a contract reference; write it as contract.<name>@<x.y.z>"
        )
    return cid, version or None


def digest(files: dict[str, bytes]) -> str:
    """sha256 over ``path NUL sha256(content) LF`` of the frozen files, sorted by path."""
    lines = b"".join(
        path.encode() + b"\0" + hashlib.sha256(files[path]).hexdigest().encode() + b"\n"
        for path in sorted(files)
    )
    return hashlib.sha256(lines).hexdigest()


def parse_contract(text: bytes | str, where: str) -> Contract:
    """Parse and validate ``contract.yaml`` text; raise ContractError naming each field."""
    try:
        data = load_yaml(text, where)
    except ValueError as exc:
        raise ContractError(f"{exc}; fix the YAML syntax") from exc
    if not isinstance(data, dict):
        raise ContractError(f"{where}: expected a mapping at the top; see docs/protocol.md")
    try:
        return Contract.model_validate(data)
    except ValidationError as exc:
        lines = describe_validation(exc)
        raise ContractError(
            "\n".join(f"{where}: {line}; see `aismm schema export`" for line in lines)
        ) from exc


def load_contract_dir(folder: Path) -> Contract:
    """Load a contract folder and check that every referenced schema exists and is valid."""
    path = folder / "contract.yaml"
    if not path.is_file():
        raise ContractError(f"{folder}: no contract.yaml; a contract is a folder with "
                            "contract.yaml")
    contract = parse_contract(path.read_bytes(), str(path))
    from aismm.core import jsonschemas  # noqa: PLC0415 - jsonschema only where a schema is checked

    problems = []
    for rel in contract.schema_paths():
        try:
            first = jsonschemas.schema_problem(
                json.loads((folder / rel).read_text(encoding="utf-8")))
        except FileNotFoundError:
            problems.append(f"{folder / rel}: schema file missing; add it or fix the reference")
            continue
        except ValueError as exc:
            first = str(exc).splitlines()[0]
        if first is not None:
            problems.append(f"{folder / rel}: not a valid JSON Schema ({first}); fix the schema")
    if problems:
        raise ContractError("\n".join(problems))
    return contract


def validate_document(schema_text: bytes, data: Any, where: str) -> list[str]:
    """Validate data against a JSON Schema; return ``where: field: message`` lines."""
    return [f"{where}: {field}: {message}" for field, message in schema_errors(schema_text, data)]
