"""``registry.git`` as read: contracts, actors, agent manifests and assessments.

Every write is :mod:`aismm.services.registrar`'s."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aismm.core.actor import Actor, Manifest
from aismm.core.contract import Contract, digest, parse_contract, parse_ref
from aismm.core.errors import ActorError, ConflictError, ContractError
from aismm.core.model import load_yaml
from aismm.core.refs import MAIN
from aismm.infra.git import Identity, Repo

if TYPE_CHECKING:
    from aismm.infra.hub import Hub

__all__ = [
    "MAIN",
    "Snapshot",
    "actor",
    "actors",
    "assessments",
    "contracts",
    "identity",
    "key_holder",
    "load_actors",
    "manifests",
    "resolve_contract",
    "snapshot",
    "status_of",
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
    for path, entry in repo.flatten(commit).items():
        if path.startswith("actors/") and path.endswith(".yaml"):
            actor = Actor.model_validate(load_yaml(repo.blob(entry.oid), path))
            out[actor.id] = actor
    return out


_SNAPSHOTS: dict[tuple[str, str], Snapshot] = {}


def snapshot(repo: Repo, commit: str | None = None) -> Snapshot:
    """Read actors and manifests at ``commit`` (default: the registry's main); cached per commit."""
    commit = commit if commit is not None else repo.ref(MAIN)
    key = (str(repo.path), commit or "")
    cached = _SNAPSHOTS.get(key)
    if cached is not None:
        return cached
    if len(_SNAPSHOTS) > 32:
        _SNAPSHOTS.clear()
    _SNAPSHOTS[key] = found = _read_snapshot(repo, commit)
    return found


def _read_snapshot(repo: Repo, commit: str | None) -> Snapshot:
    acts = load_actors(repo, commit)
    mans: dict[str, Manifest] = {}
    if commit is not None:
        for path, entry in repo.flatten(commit).items():
            if path.startswith("agents/") and path.endswith(".yaml"):
                man = Manifest.model_validate(load_yaml(repo.blob(entry.oid), path))
                mans[man.id] = man
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
    for other in sorted(actors.values(), key=lambda a: a.id):
        if other.id != besides and any(k.split()[1] == blob for k in other.all_keys()):
            return other
    return None


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
    for path, entry in repo.flatten(tip).items():
        parts = path.split("/")
        if len(parts) == 4 and parts[0] == "contracts" and parts[3] == "contract.yaml":
            contract = parse_contract(repo.blob(entry.oid), f"registry.git:{path}")
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
    base = f"contracts/{contract.id}/{contract.version}/"
    files = {p[len(base):]: repo.blob(e.oid) for p, e in repo.flatten(tip).items()
             if p.startswith(base)}
    frozen = {p: d for p, d in files.items() if p == "contract.yaml" or p in
              contract.schema_paths()}
    return contract, files, digest(frozen)


def manifests(hub: Hub) -> dict[str, Manifest]:
    return snapshot(Repo(hub.registry_path)).manifests


_ASSESSED: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {}


def assessments(hub: Hub) -> dict[str, list[dict[str, Any]]]:
    """Every assessment record by agent, oldest first; cached per registry commit."""
    repo = Repo(hub.registry_path)
    tip = repo.ref(MAIN)
    if tip is None:
        return {}
    key = (str(repo.path), tip)
    if key not in _ASSESSED:
        if len(_ASSESSED) > 16:
            _ASSESSED.clear()
        _ASSESSED[key] = _read_assessments(repo, tip)
    return _ASSESSED[key]


def _read_assessments(repo: Repo, tip: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for path, entry in sorted(repo.flatten(tip).items()):
        parts = path.split("/")
        if parts[0] == "assessments" and len(parts) == 3:
            out.setdefault(parts[1], []).append(load_yaml(repo.blob(entry.oid), path))
    for records in out.values():
        records.sort(key=lambda r: int(r.get("n", 0)))
    return out


def status_of(hub: Hub, agent: str) -> dict[str, Any] | None:
    """The latest assessment record of an agent, or None."""
    records = assessments(hub).get(agent)
    return records[-1] if records else None
