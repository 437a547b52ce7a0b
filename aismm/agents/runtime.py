"""The hosted ``command`` runtime as an agent sees it: the checkout and the environment.

The hub runs ``python -m aismm.agents.<module>`` with the current directory set to a checkout of
the attempt branch and these variables::

    AISMM_ACTOR      the agent's id
    AISMM_MISSION    the mission id
    AISMM_CONTRACT   the contract ref, e.g. contract.code_review@1.0.0
    AISMM_ROLE       specialist | reviewer
    AISMM_REQUEST    relative path of the open rework request (specialists, on rework only)
    AISMM_OUTPUT     where a reviewer writes its verdict YAML (reviewers only)

Specialists write under ``deliverable/`` only; reviewers write the one file at AISMM_OUTPUT.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from aismm.core.errors import AismmError, UsageError

__all__ = [
    "ContractInfo",
    "Invocation",
    "deliverable_tree",
    "fresh_deliverable",
    "invocation",
    "load_yaml",
    "read_contract",
    "rework_notes",
    "run",
    "write_json",
    "write_text",
]


# libyaml's parser when PyYAML has it (the type checker is shown SafeLoader's API)
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: bytes, where: str) -> Any:
    """Parse YAML safely (libyaml's safe loader); ValueError('<where>: malformed YAML (...)')."""
    try:
        return yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        raise ValueError(f"{where}: malformed YAML ({str(exc).splitlines()[0]})") from exc


def dump_yaml(data: Any) -> str:
    """Reproducible YAML: keys in the given order, block style, trailing newline."""
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)


@dataclass(frozen=True)
class ContractInfo:
    """What an agent needs of ``contract.yaml``: read without pydantic or jsonschema (the hub
    validated the contract before it froze it into the mission; these are its few fields)."""

    id: str
    version: str
    checks: tuple[tuple[str, tuple[str, ...]], ...]  # (name, run argv) of each DoD check
    rubric: tuple[tuple[str, int], ...]  # (criterion id, weight)
    threshold: int

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"


def read_contract(text: bytes, where: str = "contract.yaml") -> ContractInfo:
    """The fields agents use, type-checked (UsageError names the first field that is wrong)."""
    try:
        doc = load_yaml(text, where)
    except ValueError as exc:
        raise UsageError(f"{exc}; run the agent in the attempt's checkout") from exc

    def field(value: Any, name: str, kind: type) -> Any:
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise UsageError(f"{where}: {name}: expected {kind.__name__}; run the agent in the "
                             "attempt's checkout")
        return value

    doc = field(doc, "(document)", dict)
    dod = field(doc.get("dod"), "dod", dict)
    review = field(dod.get("review"), "dod.review", dict)
    checks = []
    for i, check in enumerate(field(dod.get("checks"), "dod.checks", list)):
        check = field(check, f"dod.checks.{i}", dict)
        run = field(check.get("run") or [], f"dod.checks.{i}.run", list)
        checks.append((str(field(check.get("name"), f"dod.checks.{i}.name", str)),
                       tuple(str(a) for a in run)))
    rubric = []
    for i, item in enumerate(field(review.get("rubric"), "dod.review.rubric", list)):
        item = field(item, f"dod.review.rubric.{i}", dict)
        rubric.append((str(field(item.get("id"), f"dod.review.rubric.{i}.id", str)),
                       int(field(item.get("weight", 1), f"dod.review.rubric.{i}.weight", int))))
    return ContractInfo(
        id=field(doc.get("id"), "id", str),
        version=str(field(doc.get("version"), "version", str)),
        checks=tuple(checks),
        rubric=tuple(rubric),
        threshold=int(field(review.get("threshold", 70), "dod.review.threshold", int)),
    )


@dataclass(frozen=True)
class Invocation:
    """One run of an agent: where it runs, for whom, and what it was asked."""

    root: Path
    actor: str
    mission: str
    role: str
    contract: ContractInfo
    request_path: str | None
    request: dict[str, Any] | None
    output: Path | None

    @property
    def deliverable(self) -> Path:
        return self.root / "deliverable"


def invocation(root: Path, environ: Mapping[str, str]) -> Invocation:
    """Read the checkout's contract and the AISMM_* variables."""
    contract = read_contract((root / "contract.yaml").read_bytes())
    wanted = environ.get("AISMM_CONTRACT")
    if wanted and wanted.partition("@")[0] != contract.id:
        raise UsageError(f"AISMM_CONTRACT: {wanted} does not match contract.yaml ({contract.ref});"
                         " run the agent in the attempt's checkout")
    request_path = environ.get("AISMM_REQUEST") or None
    request = None
    if request_path:
        loaded = load_yaml((root / request_path).read_bytes(), request_path)
        request = loaded if isinstance(loaded, dict) else {"reason": str(loaded)}
    output = environ.get("AISMM_OUTPUT")
    return Invocation(
        root=root,
        actor=environ.get("AISMM_ACTOR", ""),
        mission=environ.get("AISMM_MISSION", ""),
        role=environ.get("AISMM_ROLE", "specialist"),
        contract=contract,
        request_path=request_path,
        request=request,
        output=(root / output) if output else None,
    )


def _git_object(kind: str, data: bytes) -> bytes:
    return hashlib.sha1(f"{kind} {len(data)}\0".encode() + data).digest()  # git ids


def _tree(folder: Path) -> bytes | None:
    """The git (SHA-1) id of a folder as a tree, or None when it holds no file (git skips it)."""
    entries: list[tuple[bytes, bytes, bytes]] = []
    for entry in os.scandir(folder):
        name = os.fsencode(entry.name)
        mode = entry.stat(follow_symlinks=False).st_mode
        if stat.S_ISLNK(mode):
            oid, kind = _git_object("blob", os.fsencode(os.readlink(entry.path))), b"120000"
        elif stat.S_ISDIR(mode):
            sub = _tree(Path(entry.path))
            if sub is None:
                continue
            oid, kind = sub, b"40000"
        elif stat.S_ISREG(mode):
            kind = b"100755" if mode & stat.S_IXUSR else b"100644"
            oid = _git_object("blob", Path(entry.path).read_bytes())
        else:
            continue
        entries.append((name + b"/" if kind == b"40000" else name, kind + b" " + name, oid))
    if not entries:
        return None
    body = b"".join(head + b"\0" + oid for _, head, oid in sorted(entries))
    return _git_object("tree", body)


def deliverable_tree(root: Path) -> str | None:
    """The git tree id ``deliverable/`` has in the checkout, as a verdict's ``deliverable_tree``."""
    folder = root / "deliverable"
    oid = _tree(folder) if folder.is_dir() else None
    return oid.hex() if oid is not None else None


def fresh_deliverable(inv: Invocation) -> None:
    """Remove an earlier delivery's files so the new one is complete and nothing is stale."""
    if inv.deliverable.is_dir():
        for path in sorted(inv.deliverable.rglob("*"), reverse=True):
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            else:
                path.unlink()


def write_text(path: Path, text: str) -> None:
    """Write UTF-8 text with exactly one trailing newline, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip("\n") + "\n", encoding="utf-8")


def write_json(path: Path, data: Any) -> None:
    """Write reproducible JSON: keys in the given order, two-space indent, trailing newline."""
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False))


def rework_notes(inv: Invocation, answer: list[str]) -> str:
    """``deliverable/notes.md`` text answering the open rework request."""
    reason = str((inv.request or {}).get("reason", "")).strip() or "(no reason given)"
    lines = [
        "# Rework",
        "",
        f"Request: `{inv.request_path}`",
        "",
        "Reason given:",
        "",
        *[f"> {line}" for line in reason.splitlines()],
        "",
        "What changed:",
        "",
        *[f"- {line}" for line in answer],
    ]
    return "\n".join(lines)


def run(serve: Callable[[Invocation], None], contracts: tuple[str, ...]) -> int:
    """Entry point shared by the agents: 0 on success, 2 on a contract it does not serve."""
    sys.dont_write_bytecode = True  # importing client code must not write outside deliverable/
    try:
        inv = invocation(Path.cwd(), os.environ)
        if inv.contract.id not in contracts:
            raise UsageError(f"contract.yaml: {inv.contract.id} is not served by this agent"
                             f" (serves {', '.join(contracts)}); route the mission elsewhere")
        serve(inv)
    except AismmError as exc:
        print(f"aismm: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0
