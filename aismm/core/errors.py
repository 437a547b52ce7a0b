"""The exceptions AISMM raises, all rooted at :class:`AismmError`.

::

    AismmError                  exit 3: the hub's own fault, unless a subclass says otherwise
    ├── UsageError              exit 2: bad input (arguments, files, unknown ids)
    │   ├── ContractError       exit 2: a contract or its schemas are invalid or unknown
    │   ├── ActorError          exit 2: an actor is unknown, malformed or lacks a role
    │   ├── MissionError        exit 2: a mission is unknown or the request does not fit its state
    │   └── LedgerError         exit 2: a transfer is invalid (funds, idempotency conflict)
    ├── Rejection               exit 1: a check failed or a write was refused
    │   ├── GateRejection       exit 1: the gate refused ref updates (carries every problem)
    │   ├── CheckFailed         exit 1: a verification (ledger check, verify) found violations
    │   ├── SignatureError      exit 1: a signature is missing, malformed or does not verify
    │   └── ConflictError       exit 1: a concurrent writer won a race; retry or re-read
    ├── RepositoryError         exit 3: git failed underneath us
    └── SandboxError            exit 3: the hub cannot run agent code safely here (its fault)

Every line names a class, its parent (the line it hangs from) and its ``exit_code``.
:class:`Problem` is a record a :class:`GateRejection` carries, not an exception.

Messages read ``<where>: <what>; <how to fix>``.
"""

from __future__ import annotations

__all__ = [
    "ActorError",
    "AismmError",
    "CheckFailed",
    "ConflictError",
    "ContractError",
    "GateRejection",
    "LedgerError",
    "MissionError",
    "Problem",
    "Rejection",
    "RepositoryError",
    "SandboxError",
    "SignatureError",
    "UsageError",
]

from dataclasses import dataclass


class AismmError(Exception):
    """Root of every error AISMM raises on purpose."""

    exit_code = 3


class UsageError(AismmError):
    """The caller gave bad input; nothing was changed."""

    exit_code = 2


class ContractError(UsageError):
    """A contract, its schema or a document checked against it is invalid."""


class ActorError(UsageError):
    """An actor is unknown, malformed, or lacks the role an action needs."""


class MissionError(UsageError):
    """A mission is unknown, or the action does not fit its current state."""


class LedgerError(UsageError):
    """A ledger operation was refused (insufficient funds, conflicting replay, bad amount)."""


class Rejection(AismmError):
    """A check failed or a write was refused by policy."""

    exit_code = 1


@dataclass(frozen=True)
class Problem:
    """One reason a ref update was refused."""

    ref: str
    where: str
    what: str
    fix: str

    def __str__(self) -> str:
        return f"aismm: {self.ref}: {self.where}: {self.what}; {self.fix}"


class GateRejection(Rejection):
    """The gate refused a set of ref updates; ``problems`` lists every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class CheckFailed(Rejection):
    """A verification found violations; ``violations`` lists them one per line."""

    def __init__(self, what: str, violations: list[str]) -> None:
        self.violations = list(violations)
        super().__init__("\n".join(f"{what}: {v}" for v in violations) or what)


class SignatureError(Rejection):
    """A signature is missing, malformed, or does not verify."""


class ConflictError(Rejection):
    """Another writer changed the same thing first; re-read and retry."""


class RepositoryError(AismmError):
    """git failed underneath us (corrupt object, I/O error, locked ref)."""


class SandboxError(AismmError):
    """The sandbox could not be set up: a fault of the hub, never blamed on an agent."""
