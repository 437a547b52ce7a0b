"""The registrar: every write to ``registry.git`` (actors, keys, contracts), through the gate.

Reads are :mod:`aismm.state.registry`'s; each write here is judged by the gate, committed by
compare-and-swap and entered in the ref-state log.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import ValidationError

from aismm.core.actor import Actor, RetiredKey, signers_text
from aismm.core.clock import iso
from aismm.core.contract import load_contract_dir
from aismm.core.errors import ActorError, UsageError
from aismm.core.model import describe_validation, dump_yaml
from aismm.core.signing import PrivateKey, generate_key
from aismm.infra.git import Repo
from aismm.infra.hub import Hub, bundled
from aismm.services import events, judged
from aismm.state import provision
from aismm.state.registry import MAIN, actors, identity, key_holder

__all__ = ["add_actor", "commit_files", "create", "revoke_actor", "rotate_actor",
           "write_allowed_signers"]


def commit_files(hub: Hub, files: dict[str, bytes | None], message: str, signer: str,
                 key: PrivateKey | None = None) -> str:
    """Commit documents to the registry's main through the gate, signed by ``signer``."""

    repo = Repo(hub.registry_path)
    old = repo.ref(MAIN)
    key = key or hub.hosted_key(signer)
    base = repo.tree_of(old) if old else None
    with repo.quarantine():  # a refused write leaves no object behind
        tree = repo.build_tree(base, files)
        new = repo.write_commit(tree=tree, parents=[old] if old else [], message=message,
                                key=key, who=identity(signer), when=hub.clock.now())
        judged.judge(hub, repo, [(old, new, MAIN)])
    repo.update_ref(MAIN, new, old)
    events.record(hub, repo.path, [(old or "0" * 40, new, MAIN)], signer)  # the ref-state log
    return new


def create(hub: Hub) -> None:
    """Create ``registry.git`` with the platform and arbiter actors and the bundled catalog."""
    repo = Repo.init_bare(hub.registry_path)
    provision.configure(repo)
    provision.install(hub.registry_path)
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
    judged.judge(hub, repo, [(None, root, MAIN)], bootstrap=True)
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


def add_actor(hub: Hub, actor_id: str, roles: list[str], owner: str | None,
              pubkey: str | None, hosted: bool) -> Actor:
    """Register an actor (platform-signed); with ``hosted`` the hub makes and keeps its key."""
    if actor_id in actors(hub):
        raise ActorError(f"{actor_id}: already registered; pick another id")
    if (pubkey is None) == (not hosted):
        raise UsageError("actor add: give exactly one of --pubkey FILE or --hosted")
    if "platform" in roles:
        raise ActorError(f"{actor_id}: the platform role belongs to the hub alone; drop it")
    key = generate_key() if hosted else None
    try:
        candidate = Actor(id=actor_id, roles=roles, owner=owner or actor_id,
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


def write_allowed_signers(hub: Hub) -> Path:
    """Rewrite ``<hub>/allowed_signers`` so plain git can verify every actor's signatures.

    Current keys of active actors verify without limit; a rotated-out key verifies only
    commits dated up to its ``valid_before`` and a revoked actor's key only those dated up to
    ``revoked_at`` (OpenSSH ``valid-before``; git passes the commit's date as the verify time),
    so history made before a rotation or revocation keeps verifying. A key revoked without a
    recorded instant is left out.
    """
    path = hub.allowed_signers_path
    tmp = path.with_suffix(".tmp")
    tmp.write_text(signers_text(actors(hub).values()))
    tmp.replace(path)
    return path


def _changeable(hub: Hub, actor_id: str, verb: str) -> Actor:
    """The actor a rotation or revocation may change; refusals name the actor and the fix."""
    found = actors(hub).get(actor_id)
    if found is None:
        raise ActorError(f"{actor_id}: unknown actor; see `aismm actor list`")
    if actor_id == hub.config.platform or "platform" in found.roles:
        raise ActorError(f"{actor_id}: the platform signs every registry write and cannot be "
                         f"{verb}; set up a new hub to replace its key")
    if found.revoked:
        raise ActorError(f"{actor_id}: already revoked at {found.revoked_at or 'an unknown time'}"
                         "; register a new actor with `aismm actor add`")
    return found


def rotate_actor(hub: Hub, actor_id: str, pubkey: str | None, hosted: bool) -> Actor:
    """Give an actor a new key (platform-signed); the old key is kept in ``retired_keys``.

    The old key stops signing anything the gate accepts the moment the registry commit lands
    (the gate only knows current keys), while ``allowed_signers`` keeps it valid for commits
    dated up to the rotation. ``hosted``: the hub makes the new key and replaces
    ``keys/<id>.key`` and ``.pub``, destroying the old private key.
    """
    if (pubkey is None) == (not hosted):
        raise UsageError("actor rotate: give exactly one of --pubkey FILE or --hosted")
    old = _changeable(hub, actor_id, "rotated")
    if hosted and not old.hosted:
        raise ActorError(f"{actor_id}: an external actor rotates to a key it made itself; pass "
                         "--pubkey FILE")
    if not hosted and old.hosted:
        raise ActorError(f"{actor_id}: the hub keeps this actor's key; rotate it with --hosted")
    key: PrivateKey | None = None
    if pubkey is None:  # hosted (exactly one of the two, checked above): the hub makes the key
        made = generate_key()
        key, new_key = made, made.public_line
    else:
        new_key = pubkey
    holder = key_holder(actors(hub), new_key)
    if holder is not None:
        whose = (f"{actor_id} already holds or held this key" if holder.id == actor_id
                 else f"key already belongs to {holder.id}")
        raise ActorError(f"actor rotate: {whose}; generate a new key for {actor_id}")
    retired = RetiredKey(key=old.key, valid_before=iso(hub.clock.now()))
    try:
        doc = old.model_dump(mode="json")
        candidate = Actor.model_validate({**doc, "key": new_key, "retired_keys": [
            *doc["retired_keys"], retired.model_dump(mode="json")]})
    except ValidationError as exc:
        raise ActorError(f"{actor_id}: {describe_validation(exc)[0]}; see "
                         "`aismm actor rotate --help`") from exc
    staged = _stage_key(hub, actor_id, key) if key is not None else None
    try:
        commit_files(hub, {f"actors/{actor_id}.yaml": _actor_doc(candidate)},
                     f"Rotate the key of actor {actor_id}\n", hub.config.platform)
    except BaseException:
        if staged is not None:
            for path in staged:
                path.unlink(missing_ok=True)
        raise
    if staged is not None:
        key_path = hub.key_path(actor_id)
        _replace_destroying(staged[0], key_path)
        staged[1].replace(key_path.with_suffix(".pub"))
    write_allowed_signers(hub)
    return candidate


def revoke_actor(hub: Hub, actor_id: str) -> Actor:
    """Revoke an actor for good (platform-signed): ``revoked: true`` and ``revoked_at`` now.

    Its key signs nothing the gate accepts from then on; ``allowed_signers`` keeps it valid for
    commits dated up to ``revoked_at``. A hosted actor's private key is destroyed.
    """
    old = _changeable(hub, actor_id, "revoked")
    candidate = Actor.model_validate({**old.model_dump(mode="json"), "revoked": True,
                                      "revoked_at": iso(hub.clock.now())})
    commit_files(hub, {f"actors/{actor_id}.yaml": _actor_doc(candidate)},
                 f"Revoke actor {actor_id}\n", hub.config.platform)
    if old.hosted:
        key_path = hub.key_path(actor_id)
        _destroy(key_path)
        key_path.with_suffix(".pub").unlink(missing_ok=True)
    write_allowed_signers(hub)
    return candidate


def _staged_paths(hub: Hub, actor_id: str) -> tuple[Path, Path]:
    return (hub.keys_dir / f".{actor_id}.key.rotating", hub.keys_dir / f".{actor_id}.pub.rotating")


def _stage_key(hub: Hub, actor_id: str, key: PrivateKey) -> tuple[Path, Path]:
    """Write a hosted actor's next key beside its current one (0600), ready to be swapped in."""
    private, public = _staged_paths(hub, actor_id)
    for path in (private, public):
        if path.exists():
            raise ActorError(f"{actor_id}: a half-finished rotation left {path}; if its key is "
                             f"the one `aismm actor show {actor_id}` lists, move it to "
                             f"{hub.key_path(actor_id)}, else remove it")
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.pem())
        handle.flush()
        os.fsync(handle.fileno())
    public.write_text(key.public_line + "\n")
    return private, public


def _replace_destroying(new: Path, target: Path) -> None:
    """Atomically put ``new`` at ``target``, then overwrite the replaced file's bytes."""
    try:
        fd = os.open(target, os.O_RDWR)
    except FileNotFoundError:
        fd = -1
    try:
        new.replace(target)
        if fd >= 0:
            _scrub(fd)
    finally:
        if fd >= 0:
            os.close(fd)


def _destroy(path: Path) -> None:
    """Overwrite a private key file's bytes, then remove it."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return
    try:
        path.unlink()
        _scrub(fd)
    finally:
        os.close(fd)


def _scrub(fd: int) -> None:
    size = os.fstat(fd).st_size
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, b"\0" * size)
    os.fsync(fd)
    os.ftruncate(fd, 0)
