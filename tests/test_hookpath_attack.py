"""Adversarial review of the lean pre-receive (aismm.state.lean): pushes, objects and schemas
that the lean path must never allow when the full gate (aismm.gate.judge) refuses them.

Each git-level attack is pushed for real through the installed pre-receive (the real ``git``
binary), once with the shortcut off (``AISMM_LEAN_HOOK=0``: the gate alone decides, and the
full path primes the lean caches) and once with it on: both answers must be refusals. Objects
that the hub's ``receive.fsckObjects`` already refuses are pushed with it turned off, to show
that the lean path holds on its own (defence in depth: fsck is a setting, the gate the rule).
The schema attacks compare :func:`aismm.core.schema_subset.surely_valid` with jsonschema as
:func:`aismm.core.files.schema_errors` runs it (an exception there is a refusal by the gate).
"""

from __future__ import annotations

import json
import subprocess
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aismm.core.files import schema_errors
from aismm.core.schema_subset import _scoped, surely_valid
from aismm.core.signing import load_private_key, sign
from aismm.infra import loose
from aismm.infra.git import Repo
from aismm.infra.loose import Loose, Unsure
from aismm.services import registrar
from aismm.state import lean, registry
from aismm.state.policy import load_policy
from tests import hubkit
from tests.hubkit import Clone, Kit, findings

R = "refs/heads/attempts/bob"
IDENT = b"bob <bob@example.org> 1700000000 +0000"


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kit]:
    yield from hubkit.kit_fixture(tmp_path_factory)


def _prime(kit: Kit, path: Path) -> None:
    """The lean entries, as the full hook path leaves them (mission policy, hub limits, the
    registry's snapshot at its current main)."""
    repo = Repo(path)
    policy = load_policy(repo)
    assert policy is not None
    lean.remember(kit.hub.root, repo.path, policy)
    registry.snapshot(Repo(kit.hub.registry_path))


def _mission(kit: Kit, agents: tuple[str, ...] = ("bob",)) -> tuple[Path, Clone]:
    created = kit.mission(agents)
    _prime(kit, created.path)
    return created.path, kit.clone(created, f"attempts/{agents[0]}")


def _hash(clone: Clone, kind: str, data: bytes) -> str:
    """Write any object, as ``git hash-object --literally`` (no checks) does."""
    return clone.git("hash-object", "-t", kind, "-w", "--literally", "--stdin",
                     input=data).stdout.decode().strip()


def _signed_commit(clone: Clone, key: Path, tree: str, parent: str, message: bytes,
                   author: bytes = IDENT) -> str:
    """A commit signed over exactly the payload this module means (SSHSIG, namespace git)."""
    head = b"tree %s\nparent %s\nauthor %s\ncommitter %s\n" % (
        tree.encode(), parent.encode(), author, IDENT)
    armored = sign(load_private_key(key.read_bytes()), head + b"\n" + message)
    gpgsig = b"gpgsig " + armored.strip().encode().replace(b"\n", b"\n ") + b"\n"
    return _hash(clone, "commit", head + gpgsig + b"\n" + message)


def _both_refuse(clone: Clone, new: str, fsck: bool = False, ref: str = R) -> list[str]:
    """Push ``new`` to an attempt (bob's) with the shortcut off, then on: the lines of each
    refusal (asserted equal, so the lean path let nothing through that the gate refused)."""
    answers = []
    for shortcut in ("0", "1"):
        pushed = clone.push(f"{new}:{ref}", hooks="pre-receive", fsck=fsck,
                            env={"AISMM_LEAN_HOOK": shortcut})
        answers.append((pushed.returncode, pushed.problems))
    assert answers[0][0] != 0, "the gate should refuse this push"
    assert answers[1] == answers[0], f"lean path on: {answers[1]}; off: {answers[0]}"
    return answers[0][1]


def test_a_nul_in_the_signed_message_is_left_to_the_gate(kit: Kit) -> None:
    """libgit2 hands the signature check the payload up to the NUL only: the gate finds the
    signature bad, so a reader that verifies the whole message must not allow it."""
    _path, clone = _mission(kit)
    base = clone.rev("HEAD")
    clone.write({"deliverable/findings.json": findings()})
    clone.git("add", "-A")
    tree = clone.out("write-tree")
    new = _signed_commit(clone, kit.key("bob"), tree, base, b"deliver\0hidden\n")
    problems = _both_refuse(clone, new)
    assert any("bad signature" in p for p in problems), problems


@pytest.mark.parametrize("author", [b"bob", b"bob <bob@example.org> soon +0000",
                                    b"bob <bob@example.org 1700000000 +0000"])
def test_an_author_libgit2_cannot_parse_is_left_to_the_gate(kit: Kit, author: bytes) -> None:
    _path, clone = _mission(kit)
    base = clone.rev("HEAD")
    clone.write({"deliverable/findings.json": findings()})
    clone.git("add", "-A")
    new = _signed_commit(clone, kit.key("bob"), clone.out("write-tree"), base, b"deliver\n",
                         author=author)
    problems = _both_refuse(clone, new)
    assert problems  # libgit2 cannot read the commit: the gate refuses it


def _tree(clone: Clone, entries: list[tuple[bytes, bytes, str]]) -> str:
    return _hash(clone, "tree", b"".join(mode + b" " + name + b"\0" + bytes.fromhex(oid)
                                         for mode, name, oid in entries))


def _top(clone: Clone, commit: str) -> list[tuple[bytes, bytes, str]]:
    listing = clone.git("ls-tree", "-z", commit).stdout
    out = []
    for record in listing.split(b"\0"):
        if record:
            meta, name = record.split(b"\t", 1)
            mode, _kind, oid = meta.split()
            out.append((mode.lstrip(b"0"), name, oid.decode()))
    return out


def test_a_second_deliverable_entry_hiding_a_rivals_tree_is_left_to_the_gate(kit: Kit) -> None:
    """A top tree naming ``deliverable`` twice: the lean reader took the first for the rival
    check and the last for the diff, libgit2 looks up the second: dave's delivered tree."""
    path, clone = _mission(kit, agents=("bob", "dave"))
    dave = Clone(path, clone.path.parent / (clone.path.name + "-dave"), kit.hub, kit.hook_dirs)
    dave.switch("attempts/dave")
    dave.deliver(kit.key("dave"), findings(3))
    dave.land("attempts/dave")
    rival = dave.tree_of()
    clone.deliver(kit.key("bob"), findings(4))
    own = clone.tree_of()
    base = clone.rev("HEAD^")
    entries = [e for e in _top(clone, "HEAD") if e[1] != b"deliverable"]
    entries += [(b"40000", b"deliverable", own), (b"40000", b"deliverable", rival)]
    entries.sort(key=lambda e: e[1] + (b"/" if e[0] == b"40000" else b""))
    clone.fetch()  # the rival's objects, as anyone who clones the mission gets them
    new = _signed_commit(clone, kit.key("bob"), _tree(clone, entries), base, b"mine\n")
    problems = _both_refuse(clone, new)
    assert any("identical" in p for p in problems), problems


def test_the_hubs_fsck_refuses_these_objects_first(kit: Kit) -> None:
    """With the hub's settings (receive.fsckObjects) git refuses the object before any hook."""
    _path, clone = _mission(kit)
    base = clone.rev("HEAD")
    clone.write({"deliverable/findings.json": findings()})
    clone.git("add", "-A")
    new = _signed_commit(clone, kit.key("bob"), clone.out("write-tree"), base, b"a\0b\n")
    pushed = clone.push(f"{new}:{R}", hooks="pre-receive", env={"AISMM_LEAN_HOOK": "1"})
    assert pushed.returncode != 0 and "nulInCommit" in pushed.text, pushed.text


# -- schemas: what jsonschema refuses (or fails on) is never "surely valid" ---------------------
D3 = "http://json-schema.org/draft-03/schema#"
SCHEMA_ATTACKS: dict[str, tuple[Any, Any]] = {
    # a subschema's $schema switches jsonschema to that dialect (draft 3: required inside
    # a property's schema makes the property required)
    "a draft-03 subschema": ({"properties": {"x": {"$schema": D3, "properties": {
        "a": {"required": ["b"]}}}}}, {"x": {}}),
    "a draft-03 subschema behind a $ref": ({"$ref": "#/$defs/x", "$defs": {"x": {
        "$schema": D3, "properties": {"a": {"required": ["b"]}}}}}, {}),
    "a $schema that is not a string": ({"properties": {"a": {"$schema": {},
                                                             "type": "string"}}}, {"a": "x"}),
    "a root $id that is not a string": ({"$id": 5, "type": "object"}, {}),
    "a $ref through an array": ({"$ref": "#/items/0", "items": [{"type": "string"}]}, "s"),
    # property names are not keywords (a property may be called $schema), but a $ref to the
    # mapping of them makes jsonschema read it as a schema, in the dialect it names
    "a $ref to a mapping of property names": ({"$ref": "#/properties", "properties": {
        "$schema": D3, "properties": {"a": {"required": ["b"]}}}}, {}),
}


def _gate_refuses(schema: Any, instance: Any) -> bool:
    try:
        return bool(schema_errors(json.dumps(schema).encode(), instance))
    except Exception:  # the gate reports an internal error: a refusal
        return True


@pytest.mark.parametrize("name", sorted(SCHEMA_ATTACKS))
def test_a_schema_jsonschema_reads_otherwise_is_not_surely_valid(name: str) -> None:
    schema, instance = SCHEMA_ATTACKS[name]
    assert _gate_refuses(schema, instance), name
    assert surely_valid(schema, instance) is False


def test_property_names_that_look_like_keywords_keep_the_shortcut() -> None:
    """A property called $schema or $id (schema_design's deliverable schema has one) is a
    name, not a dialect or a base: the shipped schema is still judged without jsonschema."""
    shipped = json.loads((Path(__file__).resolve().parent.parent / "contracts" / "schema_design"
                          / "schemas" / "deliverable.schema.json").read_text())
    schema = {"properties": {"$schema": {"const": "x"}, "$id": {"type": "string"}},
              "required": ["$schema"]}
    assert surely_valid(schema, {"$schema": "x", "$id": "y"}) is True
    assert surely_valid(schema, {"$schema": "y"}) is False
    assert _scoped(shipped, root=True) is False


def test_the_2020_12_dialect_keeps_its_shortcut() -> None:
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "urn:x",
              "$ref": "#/$defs/a", "$defs": {"a": {"type": "object", "required": ["b"]}}}
    assert surely_valid(schema, {"b": 1}) is True
    assert surely_valid(schema, {}) is False


def test_git_order_and_unique_names_are_what_the_reader_accepts(kit: Kit) -> None:
    """An out-of-order tree (which libgit2 searches by bisection) is not read here at all."""
    _path, clone = _mission(kit)
    blob, sub = clone.blob(b"x\n"), clone.rev("HEAD^{tree}")
    loose = Loose(clone.path / ".git")
    for entries in ([(b"100644", b"b", blob), (b"100644", b"a", blob)],
                    [(b"100644", b"a", blob), (b"100644", b"a", blob)],
                    [(b"100644", b"a", blob), (b"40000", b"a", sub)],
                    [(b"100644", b"a/b", blob)]):
        with pytest.raises(Unsure):
            loose.tree(_tree(clone, entries))
    ordered = [(b"100644", b"a-b", blob), (b"40000", b"a", sub),
               (b"100644", b"a0", blob)]
    assert [e[0] for e in loose.tree(_tree(clone, ordered))] == [b"a-b", b"a", b"a0"]
    assert subprocess.run(["git", "fsck", "--strict"], cwd=clone.path, capture_output=True
                          ).returncode != 0  # the out-of-order ones: git itself refuses them


def test_an_oversized_blob_is_measured_not_inflated(kit: Kit) -> None:
    """A 40 MB blob of zeros compresses to ~40 KB: the gate measures it from its header and
    refuses it; the lean path must not inflate (and hold) it to find out the same."""
    path, clone = _mission(kit)
    new = clone.commit(kit.key("bob"), "big", {"deliverable/findings.json": findings(),
                                              "deliverable/big.bin": b"\0" * (40 << 20)})
    hubkit.run_git("fetch", "-q", str(clone.path), new, cwd=path)  # loose, as a push's are
    update = (Repo(path).refs()[R], new, R)
    tracemalloc.start()
    try:
        allowed = lean.accepts(kit.hub.root, path.resolve(), [update], "bob")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert allowed is False
    assert peak < 8 << 20, f"{peak} bytes held to judge a {40 << 20}-byte blob"
    big = clone.rev(f"{new}:deliverable/big.bin")
    assert Loose(path).size(big) == 40 << 20
    with pytest.raises(Unsure):
        Loose(path).size(clone.rev(f"{new}:deliverable"))  # a tree has no blob size


def _offer(path: Path, clone: Clone, new: str, ref: str) -> tuple[str, str, str]:
    hubkit.run_git("fetch", "-q", str(clone.path), new, cwd=path)  # loose, as a push's are
    return (Repo(path).refs()[ref], new, ref)


@pytest.mark.parametrize("change", ["revoked", "rotated"])
def test_a_key_the_registry_dropped_after_the_cache_was_written_signs_nothing(
        kit: Kit, change: str) -> None:
    """The agent's key signs a delivery the lean path allows; then the registry revokes the
    actor (or rotates its key): the lean path, before and after the new registry commit's
    entry exists, leaves the push to the gate, which refuses it."""
    agent = f"{change[:3]}-agent"
    key = kit.add_actor(agent, ["specialist"], f"{agent}-co", external=True)
    created = kit.mission((agent,))
    _prime(kit, created.path)
    clone = kit.clone(created, f"attempts/{agent}")
    ref = f"refs/heads/attempts/{agent}"
    update = _offer(created.path, clone, clone.deliver(key, findings()), ref)
    assert lean.accepts(kit.hub.root, created.path.resolve(), [update], agent) is True
    if change == "revoked":
        registrar.revoke_actor(kit.hub, agent)
    else:
        fresh = hubkit.ssh_keygen(kit.root / "keys" / f"{agent}-2" / "id_ed25519", agent)
        registrar.rotate_actor(kit.hub, agent, fresh.with_suffix(".pub").read_text().strip(),
                               False)
    assert lean.accepts(kit.hub.root, created.path.resolve(), [update], agent) is False
    registry.snapshot(Repo(kit.hub.registry_path))  # the new registry commit's entry
    assert lean.accepts(kit.hub.root, created.path.resolve(), [update], agent) is False
    problems = _both_refuse(clone, update[1], fsck=True, ref=ref)
    assert any("unregistered or revoked key" in p for p in problems), problems


# -- held: documents whose JSON text is odd, judged as bytes the way both paths parse them ----
ODD_DOCUMENTS = [
    (b'{"n": "not a number", "n": 3}', {"properties": {"n": {"type": "integer"}}}),
    (b'{"n": 3, "n": "not a number"}', {"properties": {"n": {"type": "integer"}}}),
    (b'{"n": NaN}', {"properties": {"n": {"minimum": 0}}}),
    (b'{"n": NaN}', {"properties": {"n": {"type": "number", "maximum": 5}}}),
    (b'{"n": Infinity}', {"properties": {"n": {"maximum": 1e308}}}),
    (b'{"n": 1e400}', {"properties": {"n": {"type": "number", "maximum": 1e308}}}),
    (b'{"n": -0.0}', {"properties": {"n": {"enum": [0]}}}),
    (b'{"n": 1.0}', {"properties": {"n": {"type": "integer", "const": 1}}}),
    (b'{"n": ' + b"9" * 4000 + b'}', {"properties": {"n": {"maximum": 1e308}}}),
    (b'{"n": ' + b"9" * 5000 + b'}', {"properties": {"n": {"type": "integer"}}}),
    (b'{"s": "\\ud800"}', {"properties": {"s": {"maxLength": 1, "pattern": "^.$"}}}),
    (b'{"s": "\\ud83d\\ude00"}', {"properties": {"s": {"maxLength": 1}}}),
    (b'\xef\xbb\xbf{"s": "x"}', {"properties": {"s": {"type": "string"}}}),
    ('{"s": "x"}'.encode("utf-16"), {"properties": {"s": {"type": "string"}}}),
    (b'{"s": "x"} {}', {}),
    (b'[' * 100_000 + b']' * 100_000, {"items": True}),
]


@pytest.mark.parametrize("index", range(len(ODD_DOCUMENTS)))
def test_odd_json_text_is_surely_valid_only_where_the_gate_passes_it(index: int) -> None:
    data, schema = ODD_DOCUMENTS[index]
    text = json.dumps(schema).encode()
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        refused = True  # aismm.core.files.document_problems: "cannot be parsed"
    else:
        refused = _gate_refuses(schema, document)
    assert not (lean._surely_fits("deliverable/x.json", data, text) and refused)


def test_a_rival_rewound_while_the_lean_path_reads_still_counts(
        kit: Kit, monkeypatch: pytest.MonkeyPatch) -> None:
    """The refs are read once, checked against the ref-state log, and only those values are
    used: a write that skips the gate and rewinds dave's attempt while the lean path judges
    (injected here at its next read of the mission's refs) cannot hide dave's delivery from
    the copy check (the gate would put the ref back first, then refuse the copy)."""
    path, clone = _mission(kit, agents=("bob", "dave"))
    dave = Clone(path, clone.path.parent / (clone.path.name + "-dave"), kit.hub, kit.hook_dirs)
    dave.switch("attempts/dave")
    dave.deliver(kit.key("dave"), findings(5))
    dave.land("attempts/dave")
    update = _offer(path, clone, clone.deliver(kit.key("bob"), findings(5)), R)
    main = Repo(path).refs()["refs/heads/main"]
    real, reads = loose.read_refs, []

    def racing(where: Path | str) -> dict[str, str] | None:
        if Path(where).resolve() == path.resolve():
            reads.append(where)
            if len(reads) == 2:  # a concurrent write that skips every hook
                hubkit.run_git("update-ref", "refs/heads/attempts/dave", main, cwd=path)
        return real(where)

    monkeypatch.setattr(loose, "read_refs", racing)
    assert lean.accepts(kit.hub.root, path.resolve(), [update], "bob") is False
