"""The lean pre-receive: allow an agent's plain delivery from judged, cached state, without the
document models.

A hook that no ``aismm serve`` answers starts a new interpreter for every push, and importing
the whole judging stack (pydantic models, PyYAML, the services) costs far more than the judging.
:func:`accepts` covers the commonest push — an assigned agent fast-forwarding its own
``attempts/<agent>`` with single-parent commits it signed that change only ``deliverable/`` —
with the gate's own rule functions (:mod:`aismm.core.files` for the contract's layout, limits
and schemas, :mod:`aismm.core.safepath`, :mod:`aismm.core.signing`, :mod:`aismm.infra.git`)
applied to plain JSON derived from documents the full gate already read (:func:`remember`).

It never refuses. ``True`` means :func:`aismm.gate.judge` would allow the same updates (the
hook then answers at once); ``False`` — any other push, any problem found, any missing, damaged
or foreign cache entry, any ref the ref-state log has not seen — means "judge it in full": the
hook loads the gate, which decides and words every refusal as it always has.

The entries are :mod:`aismm.infra.cache` files keyed by content: the mission's policy by its
``main`` commit (in the mission repository), the hub's limits by the sha256 of ``hub.yaml`` and
the registry's actors by the registry commit (:func:`aismm.state.registry.snapshot`'s entry).
Their bodies are checked field by field as they are read; one that does not fit is ignored.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aismm.core.errors import SignatureError
from aismm.core.files import (
    document_format,
    document_problems,
    layout_problems,
    parse_document,
    schema_targets,
)
from aismm.core.refs import ATTEMPT, MAIN
from aismm.core.safepath import path_problem
from aismm.core.schema_subset import surely_valid
from aismm.core.signing import verify
from aismm.infra import cache
from aismm.infra.loose import Entry, Loose, Unsure
from aismm.infra.store import Store

if TYPE_CHECKING:
    from aismm.state.policy import MissionPolicy

__all__ = ["LIMITS", "POLICY", "Rules", "accepts", "remember"]

POLICY = "lean-policy"  # a mission's policy, keyed by its main commit (in the mission repo)
LIMITS = "lean-limits"  # the hub's limits, keyed by sha256(hub.yaml) (in registry.git)
REGISTRY = "registry.git"
_OID = re.compile(r"[0-9a-f]{40}")
ZERO = "0" * 40
MODE_FILE, MODE_EXEC = 0o100644, 0o100755


@dataclass(frozen=True)
class Spec:
    """A file spec of the contract (:class:`aismm.core.files.SpecRule`)."""

    path: str
    required: bool
    schema_: str | None


@dataclass(frozen=True)
class Limits:
    """A part's size limits (:class:`aismm.core.files.LimitRule`)."""

    max_file_bytes: int
    max_files: int
    max_total_bytes: int


@dataclass(frozen=True)
class Part:
    """A part's rules (:class:`aismm.core.files.DeliverableRules`)."""

    files: tuple[Spec, ...]
    allowed: tuple[str, ...]
    limits: Limits


@dataclass(frozen=True)
class Rules:
    """The contract's file rules as :mod:`aismm.core.files` reads them (deliverable only: an
    attempt push is judged on its deliverable)."""

    inputs: Part
    deliverable: Part


@dataclass(frozen=True)
class _Policy:
    main: str
    agents: frozenset[str]
    workflow: bool
    rules: Rules


@dataclass(frozen=True)
class _HubLimits:
    max_path_length: int
    max_path_depth: int
    max_files: int


# -- writing (by the full path, which has the models at hand) ----------------------------------
def remember(root: Path, git_dir: Path, policy: MissionPolicy) -> None:
    """Store what :func:`accepts` needs, derived from documents the full path has validated:
    the mission's policy (keyed by its main commit) and the hub's limits (keyed by the digest
    of the very ``hub.yaml`` bytes they are parsed from here). Best effort: an unwritable
    folder caches nothing, and a ``hub.yaml`` that does not parse caches no limits."""
    try:
        _remember(root, git_dir, policy)
    except (OSError, ValueError):  # a cache is optional: without it the gate judges in full
        return


def _remember(root: Path, git_dir: Path, policy: MissionPolicy) -> None:
    folder = git_dir / cache.FOLDER
    if cache.read(folder, POLICY, policy.main) is None:
        deliverable = policy.contract.deliverable
        body = {"main": policy.main, "agents": sorted(policy.doc.assignment.agents),
                "workflow": bool(policy.contract.steps),
                "deliverable": {
                    "files": [{"path": s.path, "required": s.required, "schema": s.schema_}
                              for s in deliverable.files],
                    "allowed": list(deliverable.allowed),
                    "limits": {"max_file_bytes": deliverable.limits.max_file_bytes,
                               "max_files": deliverable.limits.max_files,
                               "max_total_bytes": deliverable.limits.max_total_bytes}}}
        cache.write(folder, POLICY, policy.main, json.dumps(body, sort_keys=True).encode())
    try:
        text = (root / "hub.yaml").read_bytes()
    except OSError:
        return
    key = hashlib.sha256(text).hexdigest()
    folder = root / REGISTRY / cache.FOLDER
    if cache.read(folder, LIMITS, key) is None:
        # read as aismm.infra.hub.Hub reads it, with the full path's models (loaded by then;
        # never on the lean path: module doc)
        from aismm.core.model import load_yaml  # noqa: PLC0415
        from aismm.infra.hub import HubConfig  # noqa: PLC0415

        limits = HubConfig.model_validate(load_yaml(text.decode(), "hub.yaml") or {}).limits
        body = {"max_path_length": limits.max_path_length,
                "max_path_depth": limits.max_path_depth, "max_files": limits.max_files}
        cache.write(folder, LIMITS, key, json.dumps(body, sort_keys=True).encode())


def _hub_key(root: Path) -> str | None:
    try:
        return hashlib.sha256((root / "hub.yaml").read_bytes()).hexdigest()
    except OSError:
        return None


# -- reading: every field checked, anything unexpected is "not cached" -----------------------
def _int(data: Mapping[str, Any], key: str) -> int:
    value = data[key]
    if type(value) is not int or value <= 0:
        raise ValueError(f"{key}: not a positive integer")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("not a string")
    return value


def _load(folder: Path, kind: str, key: str) -> dict[str, Any] | None:
    body = cache.read(folder, kind, key)
    if body is None:
        return None
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError(f"{kind}: not an object")
    return data


_DAMAGE = (KeyError, TypeError, ValueError, AttributeError)  # an entry that does not fit


def _hub_limits(root: Path) -> _HubLimits | None:
    key = _hub_key(root)
    data = _load(root / REGISTRY / cache.FOLDER, LIMITS, key) if key else None
    if data is None:
        return None
    return _HubLimits(_int(data, "max_path_length"), _int(data, "max_path_depth"),
                      _int(data, "max_files"))


def _policy(repo: Loose, main: str) -> _Policy | None:
    data = _load(repo.path / cache.FOLDER, POLICY, main)
    if data is None:
        return None
    if data["main"] != main or type(data["workflow"]) is not bool:
        raise ValueError("policy: not this mission's")
    part = data["deliverable"]
    specs = []
    for spec in part["files"]:
        schema = spec["schema"]
        if type(spec["required"]) is not bool or not (schema is None or isinstance(schema, str)):
            raise ValueError("policy: bad file spec")
        specs.append(Spec(_str(spec["path"]), spec["required"], schema))
    limits = part["limits"]
    deliverable = Part(tuple(specs), tuple(_str(a) for a in part["allowed"]),
                       Limits(_int(limits, "max_file_bytes"), _int(limits, "max_files"),
                              _int(limits, "max_total_bytes")))
    return _Policy(main, frozenset(_str(a) for a in data["agents"]), data["workflow"],
                   Rules(Part((), (), deliverable.limits), deliverable))


def _signers(registry: Loose, tip: str) -> dict[str, str] | None:
    """Who may sign now, by key (current keys of active actors), from the registry snapshot's
    entry for ``tip`` (:func:`aismm.state.registry.snapshot`)."""
    data = _load(registry.path / cache.FOLDER, "snapshot", tip)
    if data is None:
        return None
    out: dict[str, str] = {}
    for actor in data["actors"]:
        if type(actor["revoked"]) is not bool:
            raise ValueError("snapshot: bad actor")
        if not actor["revoked"]:
            out[_str(actor["key"])] = _str(actor["id"])
    return out


def _judged_refs(store: Store, name: str, repo: Loose) -> dict[str, str] | None:
    """The repository's refs, read once, when every one is at the value the ref-state log last
    recorded (what :func:`aismm.services.judged.ensure` would find nothing to judge in); None
    when some ref moved without the log. Everything after reads these values, never the refs
    again, so a write that skips the gate meanwhile is not taken for a judged one."""
    current = repo.refs()
    logged = store.last_values(name)
    if not logged:
        return current  # never logged: taken as it is
    same = all((None if logged.get(ref) in (None, ZERO) else logged.get(ref)) == current.get(ref)
               for ref in set(current) | set(logged))
    return current if same else None


# -- the proof ---------------------------------------------------------------------------------
def accepts(root: Path, git_dir: Path, updates: list[tuple[str, str, str]],
            pusher: str | None, object_dir: str | None = None) -> bool:
    """Whether the full gate would allow these pre-receive updates, decided without the models;
    False whenever that is not certain (see the module doc). A cache entry that does not fit
    counts as absent; a caller still treats any exception as False."""
    name = git_dir.relative_to(root).as_posix()
    if not name.startswith("missions/") or not updates or \
            not all(ref.startswith(ATTEMPT) for _old, _new, ref in updates):
        return False  # only an agent's own delivery is covered (_attempt): no read spent
    try:
        limits = _hub_limits(root)
    except _DAMAGE:
        return False
    if limits is None:
        return False
    try:
        return _accepts(root, name, git_dir, updates, pusher, object_dir, limits)
    except Unsure:  # an object or a history the lean reader does not read: pygit2 will
        return False


def _accepts(root: Path, name: str, git_dir: Path, updates: list[tuple[str, str, str]],
             pusher: str | None, object_dir: str | None, limits: _HubLimits) -> bool:
    registry, repo = Loose(root / REGISTRY), Loose(git_dir, object_dir)
    with Store(root / "hub.db") as store:
        registry_refs = _judged_refs(store, REGISTRY, registry)
        refs = _judged_refs(store, name, repo)
    tip, main = (registry_refs or {}).get(MAIN), (refs or {}).get(MAIN)
    if tip is None or refs is None or main is None:
        return False
    if any(refs.get(ref) != old for old, _new, ref in updates):
        return False  # an update from another value than the judged one: the gate decides
    try:
        signers = _signers(registry, tip)
        policy = _policy(repo, main) if signers is not None else None
    except _DAMAGE:
        return False
    if policy is None or policy.workflow or signers is None:
        return False
    memo: dict[tuple[str, int], int] = {}
    return all(_attempt(repo, policy, limits, signers, pusher, old, new, ref, memo, refs)
               for old, new, ref in updates)


def _attempt(repo: Loose, policy: _Policy, limits: _HubLimits, signers: dict[str, str],
             pusher: str | None, old: str, new: str, ref: str,
             memo: dict[tuple[str, int], int], refs: Mapping[str, str]) -> bool:
    """One update, under the rules of aismm.gate's ``_judge_attempt`` for the agent's own
    commits; False at the first rule that does not plainly pass. Histories are read along
    single parents (:meth:`Loose.chain`): every commit an attempt holds has one parent, and a
    history that is not such a chain is left to the gate (Unsure)."""
    agent = ref[len(ATTEMPT):] if ref.startswith(ATTEMPT) else None
    if agent is None or agent not in policy.agents:
        return False
    if not (_OID.fullmatch(old) and _OID.fullmatch(new) and old != ZERO and new != ZERO):
        return False
    if not (repo.exists(old) and repo.exists(new) and repo.object_type(new) == "commit"):
        return False
    commits = repo.chain(new, old)  # new descends from old, old from main (next line)
    repo.chain(old, policy.main)
    nesting = 2 * limits.max_path_depth
    if any(not 0 <= repo.count_paths(repo.tree_of(c), limits.max_files, nesting, memo)
           <= limits.max_files for c in commits):
        return False
    # the judged values (_judged_refs), not the refs read again: a rival's delivery that a
    # write skipping the gate rewinds meanwhile still counts, as the gate puts it back first
    rivals = {tree for other, tip in refs.items() if other.startswith(ATTEMPT) and other != ref
              for c in repo.chain(tip, policy.main)
              if (tree := repo.subtree_id(c, "deliverable")) is not None}
    for oid in commits:
        info = repo.commit(oid)
        if not info.signature:
            return False
        try:
            signer = signers.get(verify(info.signature, info.payload))
        except SignatureError:
            return False
        if signer != agent or (pusher is not None and pusher != signer):
            return False
        tree = repo.subtree_id(oid, "deliverable")
        if tree is not None and tree in rivals:
            return False
        changes = repo.diff_trees(repo.tree_of(info.parent), info.tree)
        for path, (_before, after) in changes.items():
            if not path.startswith("deliverable/"):
                return False
            if after is not None and not _plain_file(after, limits):
                return False
    return _deliverable_fits(repo, policy, new)


def _plain_file(entry: Entry, limits: _HubLimits) -> bool:
    """The gate's path and mode rules for an added or changed entry (``Judge.content``)."""
    return not path_problem(entry.path, limits.max_path_length, limits.max_path_depth) and \
        entry.mode in (MODE_FILE, MODE_EXEC)


def _deliverable_fits(repo: Loose, policy: _Policy, tip: str) -> bool:
    """The contract's layout, limits and schemas hold for the tip's deliverable (the gate's
    ``_deliverable_limits``, through the same functions)."""
    files = repo.flatten(repo.tree_of(tip))
    rules = policy.rules
    deliverable = {p: e for p, e in files.items() if p.startswith("deliverable/")}
    regular = {p for p, e in deliverable.items() if e.mode in (MODE_FILE, MODE_EXEC)}
    sizes = {p: repo.size(e.oid) if p in regular else 0 for p, e in deliverable.items()}
    limits = rules.deliverable.limits
    if any(size > limits.max_file_bytes for size in sizes.values()) or \
            sum(sizes.values()) > limits.max_total_bytes:
        return False  # the gate refuses it: never inflate (nor hold) what it would not read
    if any(len(repo.blob(deliverable[p].oid)) != sizes[p] for p in regular):
        return False  # each blob checked against its id (and its header)
    if layout_problems(rules, "deliverable", sizes, required=False,
                       around=[p for p in files if p not in deliverable]):
        return False
    targets = schema_targets(rules, "deliverable", deliverable)
    if not targets:
        return True
    documents = {p: repo.blob(deliverable[p].oid) if p in regular else None
                 for p, _schema in targets}
    schemas = {s: repo.read(policy.main, s) or b"{}" for _p, s in targets}
    if all(_surely_fits(path, documents[path], schemas[schema]) for path, schema in targets):
        return True  # without importing jsonschema (aismm.core.schema_subset)
    return not document_problems(rules, "deliverable", documents, schemas, per_file=1)


def _surely_fits(path: str, data: bytes | None, schema: bytes) -> bool:
    """A JSON document that :func:`aismm.core.files.document_problems` would surely pass (False:
    not sure; jsonschema then decides)."""
    if data is None or document_format(path) != "JSON":
        return False
    try:
        return surely_valid(json.loads(schema), parse_document(path, data))
    except ValueError:
        return False
