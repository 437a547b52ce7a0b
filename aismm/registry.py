"""``registry.git``: contracts, actors, agent manifests and assessments as signed documents."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from aismm.actor import Actor, Manifest
from aismm.contract import Contract, digest, load_contract_dir, parse_contract
from aismm.errors import ActorError, ContractError, UsageError
from aismm.git import Identity, Repo
from aismm.model import describe_validation, dump_yaml, load_yaml
from aismm.signing import PrivateKey, allowed_signers

if TYPE_CHECKING:
    from aismm.hub import Hub

__all__ = [
    "create", "actors", "actor", "add_actor", "contracts", "resolve_contract", "commit_files",
    "write_allowed_signers", "manifests", "identity", "Snapshot", "snapshot", "key_holder",
]

MAIN = "refs/heads/main"


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
    by_key = {a.key: a for a in acts.values() if not a.revoked}
    return Snapshot(commit, acts, by_key, mans)


def key_holder(actors: Mapping[str, Actor], key: str, besides: str | None = None
               ) -> Actor | None:
    """The actor (revoked or not, other than ``besides``) registered with ``key``, if any.

    One key, one actor: a key shared by two actors makes signatures ambiguous (the platform's
    own writes failed hub-wide once its key was registered for another actor), and a revoked
    actor's key must not come back under a new id.
    """
    blob = key.split()[1] if len(key.split()) > 1 else key
    for other in sorted(actors.values(), key=lambda a: a.id):
        if other.id != besides and other.key.split()[1] == blob:
            return other
    return None


def commit_files(hub: "Hub", files: dict[str, bytes | None], message: str, signer: str,
                 key: PrivateKey | None = None) -> str:
    """Commit documents to the registry's main through the gate, signed by ``signer``."""
    from aismm import gate

    repo = Repo(hub.registry_path)
    old = repo.ref(MAIN)
    key = key or hub.hosted_key(signer)
    base = repo.tree_of(old) if old else None
    tree = repo.build_tree(base, files)
    new = repo.write_commit(tree=tree, parents=[old] if old else [], message=message, key=key,
                            who=identity(signer), when=hub.clock.now())
    gate.judge(hub, repo, [(old, new, MAIN)])
    repo.update_ref(MAIN, new, old)
    return new


def create(hub: "Hub") -> None:
    """Create ``registry.git`` with the platform and arbiter actors and the bundled catalog."""
    from aismm import gate
    from aismm.hook import install
    from aismm.hub import bundled

    repo = Repo.init_bare(hub.registry_path)
    gate.configure(repo)
    install(hub.registry_path)
    platform, arbiter = hub.config.platform, hub.config.arbiter
    pkey = hub.new_hosted_key(platform)
    akey = hub.new_hosted_key(arbiter)
    files: dict[str, bytes | None] = {
        f"actors/{platform}.yaml": _actor_doc(
            Actor(id=platform, roles=["platform"], owner=platform, key=pkey.public_line,
                  hosted=True)),
        f"actors/{arbiter}.yaml": _actor_doc(
            Actor(id=arbiter, roles=["arbiter"], owner=platform, key=akey.public_line,
                  hosted=True)),
    }
    tree = repo.build_tree(None, files)
    root = repo.write_commit(tree=tree, parents=[], message="Create the hub registry\n",
                             key=pkey, who=identity(platform), when=hub.clock.now())
    gate.judge(hub, repo, [(None, root, MAIN)], bootstrap=True)
    repo.update_ref(MAIN, root, None)
    catalog = bundled("contracts")
    publish: dict[str, bytes | None] = {}
    for folder in sorted(p for p in catalog.iterdir() if (p / "contract.yaml").is_file()):
        contract = load_contract_dir(folder)
        base = f"contracts/{contract.id}/{contract.version}"
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                publish[f"{base}/{path.relative_to(folder).as_posix()}"] = path.read_bytes()
    if publish:
        commit_files(hub, publish, "Publish the contract catalog\n", platform, pkey)


def _actor_doc(actor: Actor) -> bytes:
    return dump_yaml(actor.model_dump(mode="json")).encode()


def actors(hub: "Hub") -> dict[str, Actor]:
    return snapshot(Repo(hub.registry_path)).actors


def actor(hub: "Hub", actor_id: str, role: str | None = None) -> Actor:
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


def add_actor(hub: "Hub", actor_id: str, roles: list[str], owner: str | None,
              pubkey: str | None, hosted: bool) -> Actor:
    """Register an actor (platform-signed); with ``hosted`` the hub makes and keeps its key."""
    if actor_id in actors(hub):
        raise ActorError(f"{actor_id}: already registered; pick another id")
    if (pubkey is None) == (not hosted):
        raise UsageError("actor add: give exactly one of --pubkey FILE or --hosted")
    if "platform" in roles:
        raise ActorError(f"{actor_id}: the platform role belongs to the hub alone; drop it")
    from aismm.signing import generate_key

    key = generate_key() if hosted else None
    try:
        candidate = Actor(id=actor_id, roles=roles, owner=owner or actor_id,  # type: ignore[arg-type]
                          key=key.public_line if key else pubkey, hosted=hosted)
    except ValidationError as exc:
        raise ActorError(f"{actor_id}: {describe_validation(exc)[0]}; see `aismm actor add --help`"
                         ) from exc
    holder = key_holder(actors(hub), candidate.key, besides=actor_id)
    if holder is not None:
        raise ActorError(f"actor add: key already belongs to {holder.id}; generate a new key for "
                         f"{actor_id}")
    key_path = hub.key_path(actor_id)
    if key is not None:
        if key_path.exists():
            raise ActorError(f"{actor_id}: a key file already exists at {key_path}; remove it")
        key.write(key_path)
    try:
        commit_files(hub, {f"actors/{actor_id}.yaml": _actor_doc(candidate)},
                     f"Register actor {actor_id}\n", hub.config.platform)
    except BaseException:
        if hosted:
            key_path.unlink(missing_ok=True)
            key_path.with_suffix(".pub").unlink(missing_ok=True)
        raise
    write_allowed_signers(hub)
    return candidate


def write_allowed_signers(hub: "Hub") -> Path:
    """Rewrite ``<hub>/allowed_signers`` so plain git can verify every actor's signatures."""
    entries = [(f"{a.id}@aismm.invalid", a.key) for a in actors(hub).values() if not a.revoked]
    path = hub.allowed_signers_path
    tmp = path.with_suffix(".tmp")
    tmp.write_text(allowed_signers(entries))
    tmp.replace(path)
    return path


def contracts(hub: "Hub") -> dict[str, Contract]:
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


def resolve_contract(hub: "Hub", ref: str) -> tuple[Contract, dict[str, bytes], str]:
    """A published contract by ref (latest version if none): model, frozen files, sha256."""
    from aismm.contract import parse_ref

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
    assert tip is not None
    base = f"contracts/{contract.id}/{contract.version}/"
    files = {p[len(base):]: repo.blob(e.oid) for p, e in repo.flatten(tip).items()
             if p.startswith(base)}
    frozen = {p: d for p, d in files.items() if p == "contract.yaml" or p in
              contract.schema_paths()}
    return contract, files, digest(frozen)


def manifests(hub: "Hub") -> dict[str, Manifest]:
    return snapshot(Repo(hub.registry_path)).manifests
