"""``registry.git`` as read: contracts, actors, agent manifests and assessments.

Every write is :mod:`aismm.services.registrar`'s."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ConfigDict, TypeAdapter, ValidationError

from aismm.core.actor import Actor, Manifest
from aismm.core.assessment import AssessmentRecord
from aismm.core.contract import Contract, digest, parse_contract, parse_ref
from aismm.core.errors import ActorError, AismmError, ConflictError, ContractError
from aismm.core.model import Strict, describe_validation, forget_documents, load_document
from aismm.core.refs import MAIN
from aismm.infra import cache
from aismm.infra.git import Identity, Repo

if TYPE_CHECKING:
    from aismm.infra.hub import Hub

__all__ = [
    "MAIN",
    "AssessmentRecord",
    "CatalogEntry",
    "Snapshot",
    "actor",
    "actors",
    "assessments",
    "catalog",
    "contracts",
    "drop_disk_cache",
    "forget",
    "identity",
    "key_holder",
    "latest_assessment",
    "load_actors",
    "manifests",
    "resolve_contract",
    "snapshot",
]



def identity(actor_id: str) -> Identity:
    """The author/committer fields written for an actor (they grant nothing)."""
    return Identity(actor_id, f"{actor_id}@aismm.invalid")


@dataclass(frozen=True)
class Snapshot:
    """The registry as of one commit: everything the gate and the hub look up."""

    commit: str | None
    actors: dict[str, Actor]
    by_key: dict[str, Actor]
    manifests: dict[str, Manifest]


def load_actors(repo: Repo, commit: str | None) -> dict[str, Actor]:
    out: dict[str, Actor] = {}
    if commit is None:
        return out
    for path, entry in repo.flatten_folder(commit, "actors").items():
        if path.endswith(".yaml"):
            actor = load_document(Actor, entry.oid, repo.blob, path)
            out[actor.id] = actor
    return out


# -- derived caches --------------------------------------------------------------------------
# Everything below is derived from one registry commit and cached by its id: in memory (a
# resident ``aismm serve`` reads the registry once per commit) and on disk inside registry.git
# (:mod:`aismm.infra.cache`: a new process reads one JSON file instead of parsing every YAML
# document). An entry is never stale because its key is the commit it was derived from. A disk
# entry is as trusted as hub.db; the snapshot is validated again on load (the same pydantic
# models as the YAML), and an entry that is damaged or does not validate is derived again.

_T = TypeVar("_T")
_DEFERRED = ConfigDict(defer_build=True)  # built on first use (a start-up cost)
_SNAPSHOTS: dict[tuple[str, str], Snapshot] = {}
_ASSESSED: dict[tuple[str, str], dict[str, list[AssessmentRecord]]] = {}
_CATALOGS: dict[tuple[str, str], list[CatalogEntry]] = {}
_ACTORS = TypeAdapter(list[Actor], config=_DEFERRED)
_MANIFESTS = TypeAdapter(list[Manifest], config=_DEFERRED)
_ASSESSMENTS = TypeAdapter(dict[str, list[AssessmentRecord]], config=_DEFERRED)


def forget() -> None:
    """Empty the in-memory caches (as a new process starts; the disk entries stay), the
    documents memoised by blob id included."""
    forget_documents()
    _SNAPSHOTS.clear()
    _ASSESSED.clear()
    _CATALOGS.clear()


def drop_disk_cache(hub: Hub) -> None:
    """Remove the registry's disk cache entries (they are derived again on demand)."""
    cache.drop(hub.registry_path / cache.FOLDER)


def _cached(memory: dict[tuple[str, str], _T], repo: Repo, kind: str, commit: str,
            decode: Callable[[bytes], _T], encode: Callable[[_T], bytes],
            derive: Callable[[], _T]) -> _T:
    """``kind`` at ``commit``: from memory, else from the disk cache, else derived and stored."""
    key = (str(repo.path), commit)
    found = memory.get(key)
    if found is not None:
        return found
    folder = repo.path / cache.FOLDER
    body = cache.read(folder, kind, commit)
    if body is not None:
        try:
            found = decode(body)
        except (ValueError, TypeError, KeyError):  # damaged or foreign: derive it again
            found = None
    if found is None:
        found = derive()
        with contextlib.suppress(TypeError, ValueError):  # not JSON-shaped: memory only
            cache.write(folder, kind, commit, encode(found))
    if len(memory) > 32:
        memory.clear()
    memory[key] = found
    return found


def snapshot(repo: Repo, commit: str | None = None) -> Snapshot:
    """Read actors and manifests at ``commit`` (default: the registry's main); cached per commit."""
    commit = commit if commit is not None else repo.ref(MAIN)
    if commit is None:
        return _read_snapshot(repo, None)
    return _cached(_SNAPSHOTS, repo, "snapshot", commit,
                   lambda body: _decode_snapshot(commit, body), _encode_snapshot,
                   lambda: _read_snapshot(repo, commit))


def _encode_snapshot(snap: Snapshot) -> bytes:
    return json.dumps({"actors": [a.model_dump(mode="json") for a in snap.actors.values()],
                       "manifests": [m.model_dump(mode="json") for m in snap.manifests.values()]},
                      sort_keys=True).encode()


def _decode_snapshot(commit: str, body: bytes) -> Snapshot:
    data = json.loads(body)
    return _snapshot(commit, {a.id: a for a in _ACTORS.validate_python(data["actors"])},
                     {m.id: m for m in _MANIFESTS.validate_python(data["manifests"])})


def _read_snapshot(repo: Repo, commit: str | None) -> Snapshot:
    acts = load_actors(repo, commit)
    mans: dict[str, Manifest] = {}
    if commit is not None:
        for path, entry in repo.flatten_folder(commit, "agents").items():
            if path.endswith(".yaml"):
                man = load_document(Manifest, entry.oid, repo.blob, path)
                mans[man.id] = man
    return _snapshot(commit, acts, mans)


def _snapshot(commit: str | None, acts: dict[str, Actor], mans: dict[str, Manifest]
              ) -> Snapshot:
    # Only what may sign from now on: current keys of active actors. Retired and revoked keys
    # are left out, so the gate refuses any new push they signed, whatever date it claims.
    by_key = {a.key: a for a in acts.values() if not a.revoked}
    return Snapshot(commit, acts, by_key, mans)


def key_holder(actors: Mapping[str, Actor], key: str, besides: str | None = None
               ) -> Actor | None:
    """The actor (revoked or not, other than ``besides``) that holds or held ``key``, if any.

    One key, one actor, for good: a key shared by two actors makes signatures ambiguous (the
    platform's own writes failed hub-wide once its key was registered for another actor), and a
    revoked or rotated-out key must not come back, under a new id or the same one. Retired keys
    count as held.
    """
    blob = key.split()[1] if len(key.split()) > 1 else key
    # One pass and no sort (the gate asks once per actor it judges; registries are large);
    # several holders: the first by id, as before.
    held = [other for other in actors.values()
            if other.id != besides and any(k.split()[1] == blob for k in other.all_keys())]
    return min(held, key=lambda a: a.id) if held else None


def actors(hub: Hub) -> dict[str, Actor]:
    return snapshot(Repo(hub.registry_path)).actors


def actor(hub: Hub, actor_id: str, role: str | None = None) -> Actor:
    """A registered actor, optionally required to hold ``role``."""
    found = actors(hub).get(actor_id)
    if found is None:
        raise ActorError(f"{actor_id}: unknown actor; register it with `aismm actor add`")
    if found.revoked:
        raise ActorError(f"{actor_id}: actor is revoked; use another actor")
    if role and role not in found.roles:
        raise ActorError(f"{actor_id}: lacks the {role} role (has {', '.join(found.roles)}); "
                         f"use an actor with the {role} role")
    return found


def contracts(hub: Hub) -> dict[str, Contract]:
    """Every published contract by ``id@version``."""
    repo = Repo(hub.registry_path)
    tip = repo.ref(MAIN)
    out: dict[str, Contract] = {}
    if tip is None:
        return out
    for path, entry in repo.flatten_folder(tip, "contracts").items():
        parts = path.split("/")
        if len(parts) == 4 and parts[3] == "contract.yaml":
            contract = load_document(Contract, entry.oid, repo.blob, f"registry.git:{path}",
                                     parse_contract)
            out[contract.ref] = contract
    return out


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.split("."))


def resolve_contract(hub: Hub, ref: str) -> tuple[Contract, dict[str, bytes], str]:
    """A published contract by ref (latest version if none): model, frozen files, sha256."""
    cid, version = parse_ref(ref)
    known = contracts(hub)
    matching = [c for c in known.values() if c.id == cid and (version is None or
                                                              c.version == version)]
    if not matching:
        have = ", ".join(sorted(known)) or "none"
        raise ContractError(f"{ref}: no such contract in the registry (published: {have}); "
                            "see `aismm contract list`")
    contract = max(matching, key=lambda c: _version_key(c.version))
    repo = Repo(hub.registry_path)
    tip = repo.ref(MAIN)
    if tip is None:  # it held the contract a moment ago
        raise ConflictError(f"registry.git: {MAIN} vanished while {ref} was read; retry")
    base = f"contracts/{contract.id}/{contract.version}"
    files = {p[len(base) + 1:]: repo.blob(e.oid)
             for p, e in repo.flatten_folder(tip, base).items()}
    frozen = {p: d for p, d in files.items() if p == "contract.yaml" or p in
              contract.schema_paths()}
    return contract, files, digest(frozen)


def manifests(hub: Hub) -> dict[str, Manifest]:
    return snapshot(Repo(hub.registry_path)).manifests


def assessments(hub: Hub) -> dict[str, list[AssessmentRecord]]:
    """Every assessment record by agent, oldest first; cached per registry commit."""
    repo = Repo(hub.registry_path)
    tip = repo.ref(MAIN)
    if tip is None:
        return {}
    return _assessments(repo, tip)


def _assessments(repo: Repo, tip: str) -> dict[str, list[AssessmentRecord]]:
    return _cached(_ASSESSED, repo, "assessments", tip, _decode_assessments,
                   lambda found: json.dumps({a: [r.to_json() for r in records]
                                             for a, records in found.items()},
                                            sort_keys=True).encode(),
                   lambda: _read_assessments(repo, tip))


def _decode_assessments(body: bytes) -> dict[str, list[AssessmentRecord]]:
    return _ASSESSMENTS.validate_json(body)


class CatalogEntry(Strict):
    """One agent of the listing's registry part: its manifest's figures and its latest
    assessment's status, badge and quality (``unassessed`` and None without one)."""

    agent: str
    owner: str
    roles: tuple[str, ...]
    contracts: tuple[str, ...]
    price: int
    capacity: int
    status: str
    badge: str | None
    assessed_quality: int | float | None

    def to_json(self) -> dict[str, Any]:
        """The entry as JSON (what the disk cache holds)."""
        return self.model_dump(mode="json")


_CATALOG = TypeAdapter(list[CatalogEntry], config=_DEFERRED)


def catalog(hub: Hub) -> list[CatalogEntry]:
    """The listing's registry part, per registry commit: every manifest (by agent id) with its
    latest assessment's status, badge and quality. Cached per commit (memory and disk)."""
    repo = Repo(hub.registry_path)
    tip = repo.ref(MAIN)
    if tip is None:
        return []
    return _cached(_CATALOGS, repo, "catalog", tip, _decode_catalog,
                   lambda rows: json.dumps([r.to_json() for r in rows],
                                           sort_keys=True).encode(),
                   lambda: _read_catalog(repo, tip))


def _decode_catalog(body: bytes) -> list[CatalogEntry]:
    return _CATALOG.validate_json(body)


def _read_catalog(repo: Repo, tip: str) -> list[CatalogEntry]:
    assessed = _assessments(repo, tip)  # once: reading it per agent would be quadratic
    rows = []
    for agent, man in sorted(snapshot(repo, tip).manifests.items()):
        history = assessed.get(agent)
        st = history[-1] if history else None
        rows.append(CatalogEntry(
            agent=agent, owner=man.owner, roles=tuple(man.roles),
            contracts=tuple(man.contracts), price=man.price, capacity=man.capacity,
            status=st.status if st else "unassessed", badge=st.badge if st else None,
            assessed_quality=st.quality if st else None))
    return rows


def _read_assessments(repo: Repo, tip: str) -> dict[str, list[AssessmentRecord]]:
    out: dict[str, list[AssessmentRecord]] = {}
    for path, entry in sorted(repo.flatten_folder(tip, "assessments").items()):
        parts = path.split("/")
        if len(parts) == 3:
            where = f"registry.git:{path}"
            try:
                record = load_document(AssessmentRecord, entry.oid, repo.blob, where)
            except ValidationError as exc:  # only the platform writes these: the hub's fault
                raise AismmError(f"{where}: not an assessment record "
                                 f"({'; '.join(describe_validation(exc))}); "
                                 "restore it from the platform's commit") from exc
            out.setdefault(parts[1], []).append(record)
    for records in out.values():
        records.sort(key=lambda r: r.n)
    return out


def latest_assessment(hub: Hub, agent: str) -> AssessmentRecord | None:
    """The latest assessment record of an agent, or None."""
    records = assessments(hub).get(agent)
    return records[-1] if records else None
