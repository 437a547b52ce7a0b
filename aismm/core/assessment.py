"""An agent's assessment record, ``assessments/<agent>/<n>.yaml`` in ``registry.git``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from aismm.core.clock import Instant

__all__ = ["AssessmentRecord"]


class AssessmentRecord(BaseModel):
    """The platform-signed outcome of assessing an agent, validated once when it is read.

    Fields are declared in the order they are written, so :meth:`to_json` gives back the
    document's own keys in its own order.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)  # as core.model

    schema_version: Literal[1]
    agent: str
    n: int
    status: Literal["listed", "rejected"]
    badge: str | None
    # int | float (not float): a value written as an int stays one in --json and the API
    quality: int | float
    p50_seconds: int | float
    cost: int
    reasons: list[str]
    # Free-form by nature: each benchmark (contract tasks, reviewer cases, workflow runs)
    # records its own result fields; readers look at them per kind.
    tasks: list[dict[str, Any]]
    at: Instant

    @property
    def listed(self) -> bool:
        """The agent passed: it may be listed and hired."""
        return self.status == "listed"

    def to_json(self) -> dict[str, Any]:
        """The record as written: JSON types, ``at`` as ``...Z`` (what --json and the API show)."""
        return self.model_dump(mode="json")
