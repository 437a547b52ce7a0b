"""The registry's derived caches, keyed by commit id: never stale, damage-proof, judged state only.

A real hub (the session's reference hub, copied), real git objects, the real cache files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aismm.core.actor import Actor
from aismm.core.errors import RepositoryError
from aismm.core.model import dump_yaml, load_document
from aismm.core.refs import MAIN
from aismm.core.signing import generate_key
from aismm.infra import cache
from aismm.infra.git import Repo
from aismm.infra.hub import Hub
from aismm.services import market, registrar
from aismm.state import registry
from tests.hubkit import copy_hub


@pytest.fixture()
def hub(reference_hub: Path, tmp_path: Path) -> Hub:
    registry.forget()
    return copy_hub(reference_hub, tmp_path / "hub")


def _folder(hub: Hub) -> Path:
    return hub.registry_path / cache.FOLDER


def _uncached_listing(hub: Hub) -> list[market.ListingRow]:
    registry.drop_disk_cache(hub)
    registry.forget()
    return market.listing(hub)


def test_a_new_process_reads_the_listing_from_the_disk_cache_of_that_commit(hub: Hub) -> None:
    expected = _uncached_listing(hub)
    tip = Repo(hub.registry_path).ref(MAIN)
    assert tip is not None
    assert {p.name for p in _folder(hub).glob("*.json")} == {
        f"{kind}-{tip}.json" for kind in ("snapshot", "assessments", "catalog")}
    registry.forget()  # as a new process: memory empty, disk entries present
    assert market.listing(hub) == expected
    assert [r.agent for r in expected] == sorted(registry.manifests(hub))
    # the template assesses the specialists and reviewers; the orchestrator (assessed on
    # workflow runs by `hub init --with-reference-agents`) is left unassessed there
    assert {r.agent: r.status for r in expected}["ref-orchestrator"] == "unassessed"
    assert {r.status for r in expected if r.agent != "ref-orchestrator"} == {
        "listed", "rejected"}


def test_a_new_registry_commit_is_never_served_from_an_older_entry(hub: Hub) -> None:
    before = market.listing(hub)
    registrar.add_actor(hub, "zed-client", ["client"], None, None, True)
    assert "zed-client" in registry.actors(hub)  # memory and disk keyed by the new tip
    registry.forget()
    assert "zed-client" in registry.snapshot(Repo(hub.registry_path)).actors
    assert market.listing(hub) == before  # a client lists no agent: same rows, new key
    tip = Repo(hub.registry_path).ref(MAIN)
    assert (_folder(hub) / f"catalog-{tip}.json").is_file()


@pytest.mark.parametrize("damage", ["garbage", "truncated", "digest", "foreign", "invalid"])
def test_a_damaged_or_invalid_entry_is_derived_again(hub: Hub, damage: str) -> None:
    repo = Repo(hub.registry_path)
    tip = repo.ref(MAIN)
    assert tip is not None
    expected = registry.snapshot(repo)
    path = _folder(hub) / f"snapshot-{tip}.json"
    header, body = path.read_bytes().split(b"\n", 1)
    data = json.loads(body)
    if damage == "garbage":
        path.write_bytes(b"\x00not json")
    elif damage == "truncated":
        path.write_bytes(header + b"\n" + body[: len(body) // 2])
    elif damage == "digest":  # a key swapped in, the header left as it was
        data["actors"][0]["key"] = data["actors"][1]["key"]
        path.write_bytes(header + b"\n" + json.dumps(data).encode())
    elif damage == "foreign":  # another commit's entry renamed to this one
        meta = json.loads(header)
        meta["key"] = "0" * 40
        path.write_bytes(json.dumps(meta).encode() + b"\n" + body)
    else:  # intact header, but a body the models refuse (the key is not a public key)
        data["actors"][0]["key"] = "ssh-ed25519 not-a-key"
        cache.write(_folder(hub), "snapshot", tip, json.dumps(data).encode())
    registry.forget()
    again = registry.snapshot(repo)
    assert again.actors == expected.actors and again.by_key == expected.by_key
    assert again.manifests == expected.manifests
    assert cache.read(_folder(hub), "snapshot", tip) is not None
    assert json.loads(cache.read(_folder(hub), "snapshot", tip) or b"") == json.loads(body)


def test_listing_reports_the_judged_registry_not_a_write_that_skipped_the_gate(hub: Hub) -> None:
    before = market.listing(hub)
    repo = Repo(hub.registry_path)
    logged = repo.ref(MAIN)
    assert logged is not None
    forged_manifest = dump_yaml({
        "schema_version": 1, "id": "forged-agent", "owner": "platform",
        "roles": ["specialist"], "contracts": ["contract.code_review@1.0.0"], "price": 1,
        "capacity": 1, "runtime": {"kind": "git"}}).encode()
    tree = repo.build_tree(repo.tree_of(logged), {"agents/forged-agent.yaml": forged_manifest})
    forged = repo.write_commit(tree=tree, parents=[logged], message="forged\n",
                               key=generate_key(),  # a key the registry never held
                               who=registry.identity("platform"), when=hub.clock.now())
    repo.update_ref(MAIN, forged, logged)  # no hook, no gate
    rows = market.listing(hub)
    assert "forged-agent" not in [r.agent for r in rows]
    assert rows == before
    assert repo.ref(MAIN) == logged  # put back by the judged view before it was read


def test_a_new_registry_commit_parses_only_the_documents_it_changed(hub: Hub) -> None:
    """Documents are memoised by blob id: an unchanged actor at a new commit is the very object
    read before; a changed one is read again and shows its change."""
    registry.drop_disk_cache(hub)  # derived from the YAML documents, not read from disk
    registry.forget()
    repo = Repo(hub.registry_path)
    before = registry.snapshot(repo).actors
    registrar.add_actor(hub, "zed-client", ["client"], None, None, True)
    registrar.revoke_actor(hub, "zed-client")
    after = registry.snapshot(repo).actors
    assert after["zed-client"].revoked
    assert set(after) == set(before) | {"zed-client"}
    assert all(after[a] is before[a] for a in before)  # not parsed again
    registry.forget()  # a new process: equal documents, parsed anew
    fresh = registry.snapshot(repo, repo.ref(MAIN)).actors
    assert fresh == after and fresh["zed-client"] is not after["zed-client"]


def test_a_memoised_document_still_needs_its_blob_in_the_repository(hub: Hub,
                                                                   tmp_path: Path) -> None:
    """The memo saves the parse, never the read: a repository lacking the blob fails as it would
    with an empty memo (the gate must not accept a document it cannot read)."""
    repo = Repo(hub.registry_path)
    tip = repo.ref(MAIN)
    assert tip is not None
    path, entry = next((p, e) for p, e in repo.flatten(tip).items() if p.startswith("actors/"))
    actor = load_document(Actor, entry.oid, repo.blob, path)
    assert load_document(Actor, entry.oid, repo.blob, path) is actor
    empty = Repo.init_bare(tmp_path / "empty.git")
    with pytest.raises((KeyError, RepositoryError)):
        load_document(Actor, entry.oid, empty.blob, path)
