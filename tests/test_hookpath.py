"""The lean pre-receive (aismm.state.lean): it allows only what the full gate allows, never
refuses on its own, loads no document model when it allows, and no damaged cache entry makes
a push through that the gate refuses.

Each case is judged three ways on the same objects: ``lean.accepts``, the gate itself
(``judged.judge``) and the in-process hook (``aismm.hook.handle``) with the shortcut on and off
(``AISMM_LEAN_HOOK=0``), whose answers must be identical.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aismm import hook
from aismm.core.errors import GateRejection
from aismm.infra import cache
from aismm.infra.git import Repo
from aismm.services import judged
from aismm.state import lean, registry
from aismm.state.policy import load_policy
from tests import hubkit
from tests.hubkit import Kit, findings

R = "refs/heads/attempts/bob"
BAD_DOC = b'{"schema_version": 1, "nope": true}\n'


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kit]:
    yield from hubkit.kit_fixture(tmp_path_factory)


class Case:
    """A fresh mission, a clone on bob's attempt, and the lean caches primed as the full hook
    path primes them."""

    def __init__(self, kit: Kit, agents: tuple[str, ...] = ("bob",)) -> None:
        self.kit, self.hub = kit, kit.hub
        self.created = kit.mission(agents)
        self.repo = Repo(self.created.path)
        self.c = kit.clone(self.created, "attempts/bob")
        policy = load_policy(self.repo)
        assert policy is not None
        lean.remember(self.hub.root, self.repo.path, policy)
        registry.snapshot(Repo(self.hub.registry_path))  # the registry's entry, as the gate does

    @property
    def tip(self) -> str:
        return self.repo.refs()[R]

    def offer(self, new: str, old: str | None = None, ref: str = R) -> tuple[str, str, str]:
        """Make ``new``'s objects visible in the mission (as a push's quarantine would), without
        moving any ref; the update line."""
        hubkit.run_git("fetch", "-q", str(self.c.path), new, cwd=self.created.path)
        return (old or self.repo.refs().get(ref, "0" * 40), new, ref)

    def lean(self, update: tuple[str, str, str], pusher: str | None = None) -> bool:
        return lean.accepts(self.hub.root, self.created.path.resolve(), [update], pusher)

    def gate(self, update: tuple[str, str, str], pusher: str | None = None) -> list[str]:
        """The full gate's problems (empty: allowed)."""
        try:
            judged.judge(self.hub, Repo(self.created.path), [update], pusher=pusher)
        except GateRejection as exc:
            return [str(p) for p in exc.problems]
        return []

    def hook(self, update: tuple[str, str, str], pusher: str | None = None, *,
             shortcut: bool = True, monkeypatch: pytest.MonkeyPatch) -> tuple[int, list[str]]:
        """The in-process pre-receive's answer."""
        with monkeypatch.context() as mp:
            mp.setenv("AISMM_LEAN_HOOK", "1" if shortcut else "0")
            request = {"hook": "pre-receive", "stdin": " ".join(update) + "\n",
                       "git_dir": str(self.created.path.resolve()), "object_dir": None,
                       "pusher": pusher}
            return hook.handle(request)


def test_a_plain_delivery_is_allowed_by_both(kit: Kit, monkeypatch: pytest.MonkeyPatch) -> None:
    case = Case(kit)
    update = case.offer(case.c.deliver(kit.key("bob"), findings()))
    assert case.lean(update) is True
    assert case.lean(update, pusher="bob") is True
    assert case.gate(update) == []
    assert case.hook(update, monkeypatch=monkeypatch) == (0, [])
    assert case.hook(update, shortcut=False, monkeypatch=monkeypatch) == (0, [])


def _outside(case: Case, kit: Kit) -> str:
    return case.c.commit(kit.key("bob"), "notes", {"notes.txt": "hello\n"})


def _unsigned(case: Case, kit: Kit) -> str:
    return case.c.commit(None, "unsigned", {"deliverable/findings.json": findings()})


def _other_signer(case: Case, kit: Kit) -> str:
    return case.c.commit(kit.key("dave"), "dave", {"deliverable/findings.json": findings()})


def _stranger(case: Case, kit: Kit) -> str:
    return case.c.commit(kit.key("stranger"), "who", {"deliverable/findings.json": findings()})


def _schema(case: Case, kit: Kit) -> str:
    return case.c.commit(kit.key("bob"), "bad", {"deliverable/findings.json": BAD_DOC})


def _not_allowed(case: Case, kit: Kit) -> str:
    return case.c.commit(kit.key("bob"), "extra", {"deliverable/extra.txt": "x\n"})


def _symlink(case: Case, kit: Kit) -> str:
    return case.c.craft_commit(kit.key("bob"), {b"deliverable/notes.md": ("120000", b"x")})


def _long_path(case: Case, kit: Kit) -> str:
    return case.c.craft_commit(kit.key("bob"), {b"deliverable/" + b"n" * 300: ("100644", b"x")})


def _merge(case: Case, kit: Kit) -> str:
    base = case.c.rev("HEAD")
    one = case.c.craft_commit(kit.key("bob"), {b"deliverable/findings.json":
                                               ("100644", findings())}, parent=base)
    two = case.c.craft_commit(kit.key("bob"), {b"deliverable/notes.md": ("100644", b"n\n")},
                              parent=base)
    tree = case.c.out("rev-parse", f"{one}^{{tree}}")
    return case.c.commit_tree(tree, [one, two], kit.key("bob"))


REFUSED = {"outside deliverable/": _outside, "unsigned": _unsigned,
           "signed by another agent": _other_signer, "signed by an unregistered key": _stranger,
           "fails the contract schema": _schema, "not an allowed path": _not_allowed,
           "a symbolic link": _symlink, "a path too long": _long_path, "a merge": _merge}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_what_the_gate_refuses_the_lean_path_leaves_to_it(
        kit: Kit, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    case = Case(kit)
    update = case.offer(REFUSED[name](case, kit))
    problems = case.gate(update)
    assert problems, f"{name}: the gate should refuse this"
    assert case.lean(update) is False
    on = case.hook(update, monkeypatch=monkeypatch)
    assert on == case.hook(update, shortcut=False, monkeypatch=monkeypatch)
    assert on[0] == 1 and on[1][0] == problems[0]


def test_a_push_by_someone_else_is_left_to_the_gate(kit: Kit) -> None:
    case = Case(kit)
    update = case.offer(case.c.deliver(kit.key("bob"), findings()))
    assert case.gate(update, pusher="dave")
    assert case.lean(update, pusher="dave") is False


def test_a_rewrite_and_a_foreign_ref_are_left_to_the_gate(kit: Kit) -> None:
    case = Case(kit)
    case.c.deliver(kit.key("bob"), findings())
    case.c.land("attempts/bob")
    landed = case.tip
    sibling = case.c.craft_commit(kit.key("bob"), {b"deliverable/findings.json": (
        "100644", findings(1))}, parent=f"{landed}^")
    rewrite = case.offer(sibling, old=landed)
    assert case.gate(rewrite) and case.lean(rewrite) is False
    onto_main = case.offer(case.c.deliver(kit.key("bob"), findings(2)), ref="refs/heads/main")
    assert case.gate(onto_main) and case.lean(onto_main) is False


def test_a_copied_deliverable_is_left_to_the_gate(kit: Kit) -> None:
    case = Case(kit, agents=("bob", "dave"))
    dave = kit.clone(case.created, "attempts/dave")
    dave.deliver(kit.key("dave"), findings(3))
    dave.land("attempts/dave")
    update = case.offer(case.c.deliver(kit.key("bob"), findings(3)))
    assert any("identical" in p for p in case.gate(update))
    assert case.lean(update) is False


def test_a_ref_moved_without_the_gate_is_left_to_the_gate(kit: Kit) -> None:
    case = Case(kit)
    first = case.offer(case.c.deliver(kit.key("bob"), findings()))
    assert case.lean(first) is True
    hubkit.run_git("update-ref", R, first[1], cwd=case.created.path)  # skips every hook
    # a delivery on top is fine in itself, but the ref-state log still names the old value:
    # that move must be judged first (aismm.services.judged.ensure), which the gate path does
    second = case.offer(case.c.deliver(kit.key("bob"), findings(1)))
    assert case.lean(second) is False


def _entry(folder: Path, kind: str) -> Path:
    return next(folder.glob(f"{kind}-*.json"))


def _body(path: Path) -> dict[str, object]:
    return json.loads(path.read_bytes().split(b"\n", 1)[1])


def _rewrite(path: Path, body: dict[str, object], *, fix_digest: bool) -> None:
    """Put a new body under the old header, or (fix_digest) under a header that matches it."""
    header = json.loads(path.read_bytes().split(b"\n", 1)[0])
    data = json.dumps(body, sort_keys=True).encode()
    if fix_digest:
        import hashlib

        header["sha256"] = hashlib.sha256(data).hexdigest()
    path.write_bytes(json.dumps(header, sort_keys=True).encode() + b"\n" + data)


def _loosened(body: dict[str, object]) -> dict[str, object]:
    """The policy entry with every file rule lifted: anything under deliverable/, no schema."""
    part = dict(body["deliverable"])  # type: ignore[call-overload]
    part["allowed"] = ["deliverable/**"]
    part["files"] = [{"path": "deliverable/findings.json", "required": True, "schema": None}]
    return {**body, "deliverable": part}


DAMAGE = ["truncated", "loosened under the old header", "emptied", "a foreign entry renamed",
          "loosened, digest fixed, a field dropped", "snapshot loosened under the old header"]


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_cache_entry_cannot_let_a_refused_push_through(
        kit: Kit, damage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    case = Case(kit)
    update = case.offer(case.c.commit(kit.key("bob"), "bad", {
        "deliverable/findings.json": BAD_DOC, "deliverable/extra.txt": "x\n"}))
    refused = case.hook(update, shortcut=False, monkeypatch=monkeypatch)
    assert refused[0] == 1
    entry = _entry(case.repo.path / cache.FOLDER, lean.POLICY)
    if damage == "truncated":
        entry.write_bytes(entry.read_bytes()[:-7])
    elif damage == "loosened under the old header":
        _rewrite(entry, _loosened(_body(entry)), fix_digest=False)
    elif damage == "emptied":
        entry.write_bytes(b"")
    elif damage == "a foreign entry renamed":
        other = Case(kit)  # a policy of another mission, loosened, as this mission's entry
        foreign = _entry(other.repo.path / cache.FOLDER, lean.POLICY)
        _rewrite(foreign, _loosened(_body(foreign)), fix_digest=True)
        os.replace(foreign, entry)
    elif damage == "loosened, digest fixed, a field dropped":
        body = _loosened(_body(entry))
        del body["workflow"]
        _rewrite(entry, body, fix_digest=True)
    else:  # dave's key counted as bob's would let dave sign bob's delivery
        snap = _entry(Repo(kit.hub.registry_path).path / cache.FOLDER, "snapshot")
        for candidate in (Repo(kit.hub.registry_path).path / cache.FOLDER).glob("snapshot-*"):
            if candidate.stem.endswith(Repo(kit.hub.registry_path).refs()["refs/heads/main"]):
                snap = candidate
        body = _body(snap)
        keys = {a["id"]: a["key"] for a in body["actors"]}  # type: ignore[attr-defined]
        for actor in body["actors"]:  # type: ignore[attr-defined]
            if actor["id"] == "bob":
                actor["key"] = keys["dave"]
        _rewrite(snap, body, fix_digest=False)
        update = case.offer(case.c.commit(kit.key("dave"), "dave", {
            "deliverable/findings.json": findings()}))
        refused = case.hook(update, shortcut=False, monkeypatch=monkeypatch)
        assert refused[0] == 1
    assert case.lean(update) is False
    assert case.hook(update, monkeypatch=monkeypatch) == refused


def test_an_allowed_push_loads_no_model_and_a_real_push_primes_the_caches(kit: Kit) -> None:
    """Through git: `mission create` leaves the mission's entry behind; without it the first
    push is judged in full and writes it again; then a hook run that allows a delivery imports
    neither pydantic, PyYAML, jsonschema, pygit2 nor the gate, and one that refuses loads them
    and says why."""
    created = kit.mission()
    clone = kit.clone(created, "attempts/bob")
    folder = created.path / cache.FOLDER
    entries = list(folder.glob(f"{lean.POLICY}-*"))
    assert [e.name for e in entries] == [f"{lean.POLICY}-{created.main}.json"]
    entries[0].unlink()
    clone.deliver(kit.key("bob"), findings())
    pushed = clone.push("attempts/bob")
    assert pushed.returncode == 0, pushed.text
    assert len(list(folder.glob(f"{lean.POLICY}-*"))) == 1
    clone.fetch()  # the hub may have written its verdict on top (inline processing)
    clone.git("reset", "-q", "--hard", "origin/attempts/bob")
    probe = ("import sys, aismm.hook as h; "
             "code, lines = h.handle(h.request_from_env('pre-receive', sys.stdin.buffer.read())); "
             "print(code, [m for m in ('pydantic', 'yaml', 'jsonschema', 'pygit2', "
             "'aismm.gate') "
             "if m in sys.modules], "
             "lines)")
    env = {**os.environ, "GIT_DIR": str(created.path), "AISMM_LEAN_HOOK": "1"}
    repo = Repo(created.path)
    for data, expect in ((findings(1), "0 [] []"), (BAD_DOC, "1 ['pydantic', 'yaml', "
                                                              "'jsonschema', 'pygit2', "
                                                              "'aismm.gate']")):
        new = clone.deliver(kit.key("bob"), data)
        hubkit.run_git("fetch", "-q", str(clone.path), new, cwd=created.path)
        line = f"{repo.refs()[R]} {new} {R}\n"
        done = subprocess.run([sys.executable, "-c", probe], input=line.encode(), env=env,
                              capture_output=True, check=True)
        assert done.stdout.decode().startswith(expect), done.stdout
    assert "fails the contract schema" in done.stdout.decode()


def test_new_hub_limits_are_judged_in_full_until_cached(kit: Kit,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The limits entry is keyed by hub.yaml's bytes: an edited hub.yaml is never judged under
    the old limits, and its own entry holds the new ones."""
    case = Case(kit)
    update = case.offer(case.c.deliver(kit.key("bob"), findings()))
    assert case.lean(update) is True
    config = kit.hub.root / "hub.yaml"
    before = config.read_bytes()
    assert b"  max_files: 10000\n" in before
    try:
        config.write_bytes(before.replace(b"  max_files: 10000\n", b"  max_files: 3\n"))
        assert case.lean(update) is False  # no entry for these bytes yet
        refused = case.hook(update, monkeypatch=monkeypatch)  # judged in full, entry written
        assert refused[0] == 1 and "more than 3 files" in refused[1][0]
        assert case.lean(update) is False  # the new entry holds max_files 3
        assert case.hook(update, monkeypatch=monkeypatch) == refused
    finally:
        config.write_bytes(before)
    assert case.lean(update) is True
