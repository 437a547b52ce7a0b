"""Property tests of the gate, in-process: random trees, modes, signers and ref updates.

Two properties: ``gate.judge`` never lets anything but :class:`GateRejection` escape (and never
rejects through its internal-error fallback), and whatever it accepts obeys the rules when
re-checked independently: every path obeys the path rules of docs/protocol.md, modes are
regular, no case collisions, every new commit is signed by a registered key and touches only what
its signer may write. The oracle has its own small implementation of those rules
(:func:`plain_path`, :func:`case_clashes`), written from the protocol's sentence and Unicode's
definitions, not the gate's helpers (``aismm.core.safepath``), which it also checks.

Objects with hostile names are written straight into the object database (git's porcelain and
libgit2's tree builder both refuse them), as a push with ``receive.fsckObjects`` off would.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterator

import pygit2
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pygit2.enums import ObjectType

from aismm import gate
from aismm.core.contract import match_glob
from aismm.core.errors import GateRejection
from aismm.core.safepath import case_collisions, path_problem
from aismm.core.signing import generate_key, verify
from aismm.infra.git import ZERO, Identity, Repo
from aismm.services import judged
from aismm.state import registry
from tests import hubkit
from tests.hubkit import Kit, findings, verdict

ATTEMPT = "refs/heads/attempts/bob"
WHEN = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
SETTINGS = settings(max_examples=200, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large])

SAFE = ["deliverable", "findings.json", "notes.md", "a", "b.md", "README.md", "inputs",
        "verdicts", "requests", "rita.yaml", "platform.yaml", "src"]
HOSTILE = ["..", ".", "", ".git", ".GIT", ".git.", ".git ", "git~1", "GIT~1", ".g\u200cit",
           "\u200c.git", ".gitmodules", ".GitAttributes", ".gitignore", ".mailmap", "a\\b", "\\",
           "a\x01b", "a\nb", "\x1b[2J", "\x7f", "cafe\u0301.md", "caf\u00e9.md", "x" * 300,
           "Findings.json", "NOTES.MD", "Deliverable", "\udcff.md", "\u202egnp.exe", "a:b",
           " ", "con", "nul.txt"]
MODES = [0o100644, 0o100755, 0o120000, 0o160000, 0o100664, 0o100600]


# -- the oracle's own path rules --------------------------------------------------------------
# docs/protocol.md: "Paths: UTF-8, NFC, relative, no empty, `.` or `..` component, no `.git` in
# any spelling (`.GIT`, `.git.`, `git~1`, zero-width characters), no backslash, control character
# or bidirectional-text control, no `.gitmodules`, `.gitattributes`, `.gitignore` or `.mailmap`,
# at most 255 bytes and 12 levels (hub limits), no two names that differ only by case".
#: Unicode's Bidi_Control property (PropList.txt): ALM, LRM, RLM, LRE..RLO, LRI..PDI.
BIDI_CONTROLS = frozenset(map(chr, [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F),
                                    *range(0x2066, 0x206A)]))
GIT_FILES = frozenset({".gitmodules", ".gitattributes", ".gitignore", ".mailmap"})


def _spells_dot_git(name: str) -> bool:
    """``.git`` as Windows and macOS may read it: zero-width (format) characters dropped,
    trailing dots and spaces ignored, any case, or the 8.3 short name ``GIT~<n>``."""
    seen = "".join(ch for ch in name if unicodedata.category(ch) != "Cf").rstrip(". ").lower()
    return seen == ".git" or re.fullmatch(r"git~[0-9]+", seen) is not None


def plain_path(path: str, max_bytes: int = 255, max_depth: int = 12) -> bool:
    """Whether ``path`` obeys the protocol's path rules (the oracle's reading of them)."""
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate: a name that was not UTF-8
        return False
    names = path.split("/")  # an absolute path starts with an empty name
    return (unicodedata.is_normalized("NFC", path)
            and not any(ch == "\\" or ch in BIDI_CONTROLS or unicodedata.category(ch) == "Cc"
                        for ch in path)
            and size <= max_bytes and len(names) <= max_depth
            and all(name not in ("", ".", "..") and not _spells_dot_git(name)
                    and name.lower() not in GIT_FILES for name in names))


def case_clashes(paths: list[str]) -> list[set[str]]:
    """Groups of two or more names (files and the folders above them) equal but for case."""
    names = {"/".join(p.split("/")[:i]) for p in paths for i in range(1, p.count("/") + 2)}
    groups: dict[str, set[str]] = {}
    for name in names:
        groups.setdefault(unicodedata.normalize("NFC", name).casefold(), set()).add(name)
    return [group for group in groups.values() if len(group) > 1]


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kit]:
    yield from hubkit.kit_fixture(tmp_path_factory)


class World:
    """A mission's bare repository plus the raw-object writer the properties build with."""

    def __init__(self, kit: Kit) -> None:
        self.kit = kit
        self.created = kit.mission(("bob", "dave"))
        self.repo = Repo(self.created.path)
        self.raw = pygit2.Repository(str(self.created.path))
        self.main = self.created.main
        self.base = self.repo.flatten(self.main)
        self.keys = {a: kit.hub.hosted_key(a) for a in ("alice", "bob", "dave", "rita", "rex",
                                                       "platform", "arbiter")}
        self.keys["stranger"] = generate_key()
        self.snapshot = registry.snapshot(Repo(kit.hub.registry_path))
        main_tree = self.repo.tree_of(self.main)
        tree = self.repo.build_tree(main_tree, {"deliverable/findings.json": findings()})
        self.delivered = self.commit(tree, [self.main], "bob")
        self.deliverable_tree = self.repo.subtree_id(self.delivered, "deliverable")
        self.blobs = {
            "golden": self.blob(findings()),
            "junk": self.blob(b"not json {\n"),
            "text": self.blob(b"hello\n"),
            "big": self.blob(b"x" * 600_000),
            "verdict": self.blob(verdict(self.created.doc.id, "rita", str(self.deliverable_tree))),
            "platform": self.blob(verdict(self.created.doc.id, "platform",
                                          str(self.deliverable_tree))),
        }

    def blob(self, data: bytes) -> str:
        return str(self.raw.odb.write(ObjectType.BLOB, data))

    def commit(self, tree: str, parents: list[str], signer: str | None) -> str:
        if signer is None:
            sig = pygit2.Signature("x", "x@example.invalid", 1767225600, 0)
            return str(self.raw.create_commit(None, sig, sig, "unsigned", pygit2.Oid(hex=tree),
                                              [pygit2.Oid(hex=p) for p in parents]))
        return self.repo.write_commit(tree=tree, parents=parents, message=f"by {signer}\n",
                                      key=self.keys[signer], who=Identity(signer, "x@y"),
                                      when=WHEN)

    def tree(self, entries: dict[bytes, tuple[int, str]]) -> str:
        """Write a (possibly hostile) tree from flat raw paths; sorted as git sorts entries."""
        here: dict[bytes, tuple[int, str]] = {}
        sub: dict[bytes, dict[bytes, tuple[int, str]]] = {}
        for name, (mode, oid) in entries.items():
            if b"" in name.split(b"/"):
                continue  # libgit2 cannot even parse a tree holding an empty name (nor can fsck)
            head, sep, rest = name.partition(b"/")
            if sep:
                if head not in here:
                    sub.setdefault(head, {})[rest] = (mode, oid)
            elif head not in sub and head not in here:
                here[head] = (mode, oid)
        for head, children in sub.items():
            here[head] = (0o040000, self.tree(children))
        key = lambda item: item[0] + (b"/" if item[1][0] == 0o040000 else b"")
        data = b"".join(f"{mode:o}".encode() + b" " + name + b"\0" + bytes.fromhex(oid)
                        for name, (mode, oid) in sorted(here.items(), key=key))
        return str(self.raw.odb.write(ObjectType.TREE, data))


@pytest.fixture(scope="module")
def world(kit: Kit) -> World:
    return World(kit)


components = st.one_of(st.sampled_from(SAFE), st.sampled_from(HOSTILE),
                       st.text(st.characters(codec="utf-8", exclude_characters="/\0"),
                               min_size=1, max_size=6))


@st.composite
def paths(draw: st.DrawFn) -> str:
    head = draw(st.sampled_from(["deliverable", "deliverable", "deliverable", "verdicts",
                                 "requests", "inputs"]) | components)
    rest = draw(st.lists(components, min_size=0, max_size=draw(st.sampled_from([1, 2, 13]))))
    return "/".join([head, *rest]) if rest else f"{head}/findings.json"


@st.composite
def changes(draw: st.DrawFn) -> list[tuple[str, int, str]]:
    """A few (path, mode, content kind) edits; often the legitimate golden delivery."""
    if draw(st.booleans()):
        out = [("deliverable/findings.json", 0o100644, "golden")]
    else:
        out = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["golden", "junk", "text", "big", "verdict", "platform",
                                     "gitlink"]))
        mode = draw(st.sampled_from(MODES)) if draw(st.booleans()) else 0o100644
        if kind == "gitlink":
            mode = 0o160000
        out.append((draw(paths()), mode, kind))
    return out


def _raw(path: str) -> bytes:
    return path.encode("utf-8", "surrogateescape")


@st.composite
def near_legit(draw: st.DrawFn) -> dict[str, object]:
    """A push by someone allowed on the attempt, with one or two edits that may be hostile."""
    signer = draw(st.sampled_from(["bob", "bob", "rita", "platform"]))
    folder = {"bob": "deliverable", "rita": "verdicts", "platform": "verdicts"}[signer]
    legit = st.sampled_from({"bob": ["findings.json", "notes.md"], "rita": ["rita.yaml"],
                             "platform": ["platform.yaml"]}[signer])
    name = draw(st.one_of(legit, legit, components))
    kind = {"bob": "golden", "rita": "verdict", "platform": "platform"}[signer]
    edits = [(f"{folder}/{name}", draw(st.sampled_from([0o100644, 0o100644, 0o100644,
                                                         0o100755, 0o120000])), kind)]
    if draw(st.integers(0, 3)) == 0:
        edits.append((draw(paths()), 0o100644, draw(st.sampled_from(["golden", "text"]))))
    on_delivery = signer != "bob" or draw(st.booleans())
    return {"kind": "near-legit", "changes": edits, "on_delivery": on_delivery, "signer": signer, "ref": ATTEMPT,
            "old": draw(st.sampled_from(["delivered", "delivered", "current"]))
            if on_delivery else "current", "new": "commit",
            "pusher": draw(st.sampled_from([None, signer])), "extra": False}


@st.composite
def wild(draw: st.DrawFn) -> dict[str, object]:
    """Anything: random edits, signers, refs and old/new values."""
    return {
        "kind": "wild",
        "changes": draw(changes()),
        "on_delivery": draw(st.booleans()),
        "signer": draw(st.sampled_from(["bob", "bob", "bob", "dave", "rita", "rex", "alice",
                                        "platform", "arbiter", "stranger", None])),
        "ref": draw(st.sampled_from([ATTEMPT, ATTEMPT, ATTEMPT, "refs/heads/attempts/dave",
                                     "refs/heads/attempts/mallory", "refs/heads/main",
                                     "refs/heads/accepted", "refs/tags/settled",
                                     "refs/tags/refunded", "refs/heads/other", "refs/notes/x",
                                     "HEAD", "refs/heads/attempts/", ""])),
        "old": draw(st.sampled_from(["current", "current", "zero", "delivered", "garbage"])),
        "new": draw(st.sampled_from(["commit", "commit", "commit", "zero", "main", "tree",
                                     "blob", "missing", "short"])),
        "pusher": draw(st.sampled_from([None, None, "bob", "alice"])),
        "extra": draw(st.booleans()),
    }


pushes = st.integers(0, 2).flatmap(lambda i: wild() if i == 0 else near_legit())


def _build(world: World, push: dict[str, object]) -> tuple[list[gate.Update], str]:
    parent = world.delivered if push["on_delivery"] else world.main
    entries = {_raw(p): (e.mode, e.oid) for p, e in world.repo.flatten(parent).items()}
    for path, mode, kind in push["changes"]:  # type: ignore[attr-defined]
        oid = world.main if kind == "gitlink" else world.blobs[kind]
        entries[_raw(path)] = (mode, oid)
    tree = world.tree(entries)
    commit = world.commit(tree, [parent], push["signer"])  # type: ignore[arg-type]
    ref = str(push["ref"])
    current = world.repo.ref(ref) if ref else None
    old = {"current": current, "zero": ZERO, "delivered": world.delivered,
           "garbage": "1" * 40}[str(push["old"])]
    new = {"commit": commit, "zero": ZERO, "main": world.main, "tree": tree,
           "blob": world.blobs["text"], "missing": "2" * 40, "short": "abc"}[str(push["new"])]
    updates: list[gate.Update] = [(old, str(new), ref)]
    if push["extra"]:
        updates.append((world.main, commit, "refs/heads/attempts/dave"))
    return updates, commit


def _signer(world: World, oid: str) -> str | None:
    info = world.repo.commit(oid)
    if not info.signature or info.payload is None:
        return None
    actor = world.snapshot.by_key.get(verify(info.signature, info.payload))
    return actor.id if actor else None


def _assert_obeys_the_rules(world: World, updates: list[gate.Update], pusher: str | None) -> None:
    """What an accepted update must satisfy, re-derived without the gate's code paths."""
    contract = gate.load_policy(world.repo)
    assert contract is not None
    spec = contract.contract.deliverable
    limits = world.kit.hub.config.limits
    for old, new, ref in updates:
        assert ref.startswith("refs/heads/attempts/"), f"accepted an update of {ref}"
        agent = ref.rsplit("/", 1)[1]
        assert agent in ("bob", "dave")
        # ``old`` need not be the ref's current value: moving the ref is a compare-and-swap
        # from ``old`` after the gate said yes (git's receive-pack or Repo.update_ref).
        assert old is not None and world.repo.is_ancestor(world.main, old)
        assert new not in (None, "", ZERO) and world.repo.object_type(new) == "commit"
        assert world.repo.is_ancestor(old, new)
        for oid in world.repo.new_commits(new, [old]):
            info = world.repo.commit(oid)
            assert len(info.parents) == 1
            signer = _signer(world, oid)
            assert signer is not None and (pusher is None or signer == pusher)
            changed = world.repo.diff_trees(world.repo.tree_of(info.parents[0]), info.tree)
            for path in changed:
                if signer == agent:
                    assert path.startswith("deliverable/"), (signer, path)
                elif signer == "platform":
                    assert path == "verdicts/platform.yaml"
                elif signer == "rita":
                    assert path == "verdicts/rita.yaml"
                else:
                    raise AssertionError(f"{signer} wrote {path} on {ref}")
        files = world.repo.flatten(new)
        for path, entry in files.items():
            assert plain_path(path, limits.max_path_length, limits.max_path_depth), path
            assert entry.mode in (0o100644, 0o100755), (path, oct(entry.mode))
            parts = path.split("/")
            assert unicodedata.normalize("NFC", path) == path
            assert not any(p.casefold().rstrip(". ") in (".git", ".gitmodules", "..", "")
                           for p in parts), path
        assert case_clashes(list(files)) == []
        delivered = [p for p in files if p.startswith("deliverable/")]
        assert len(delivered) <= spec.limits.max_files
        assert all(any(match_glob(p, g) for g in spec.allowed) for p in delivered)


@SETTINGS
@given(push=pushes)
def test_gate_rejects_cleanly_or_accepts_only_what_obeys_the_rules(
        world: World, push: dict[str, object]) -> None:
    updates, _commit = _build(world, push)
    pusher = push["pusher"]
    try:
        judged.judge(world.kit.hub, world.repo, updates, pusher=pusher)
    except GateRejection as exc:
        event(f"rejected ({push['kind']})")
        assert exc.problems
        for problem in exc.problems:
            assert problem.where != "gate", f"internal error: {problem}"
            assert all(part.strip() for part in (problem.ref or "-", problem.where,
                                                   problem.what, problem.fix)), problem
            assert "\n" not in str(problem) and "\x1b" not in str(problem), problem
        return
    event(f"accepted ({push['kind']})")
    _assert_obeys_the_rules(world, updates, pusher)  # type: ignore[arg-type]


def test_the_legitimate_delivery_is_accepted_in_process(world: World) -> None:
    """The properties above are not vacuous: the golden delivery does pass."""
    judged.judge(world.kit.hub, world.repo, [(world.main, world.delivered, ATTEMPT)])
    _assert_obeys_the_rules(world, [(world.main, world.delivered, ATTEMPT)], None)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.lists(components, min_size=1, max_size=14).map("/".join))
def test_path_problem_never_raises_and_accepts_only_plain_paths(path: str) -> None:
    problem = path_problem(path)
    if problem is not None:
        what, sep, fix = problem.partition("; ")
        assert sep and what and fix
        return
    assert plain_path(path), f"the gate's helper accepts {path!r}; the protocol does not"
    raw = path.encode("utf-8")  # would raise on a surrogate (non-UTF-8 name)
    assert len(raw) <= 255 and len(path.split("/")) <= 12
    assert unicodedata.normalize("NFC", path) == path
    assert not any(unicodedata.category(ch) == "Cc" for ch in path) and "\\" not in path
    for part in path.split("/"):
        assert part not in ("", ".", "..")
        folded = "".join(ch for ch in part if unicodedata.category(ch) != "Cf")
        assert folded.rstrip(". ").casefold() != ".git"
        assert part.casefold() not in (".gitmodules", ".gitattributes")


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.lists(st.sampled_from(["a", "A", "b", "B", "\u00e9", "E\u0301"]),
                         min_size=1, max_size=3).map("/".join), min_size=1, max_size=6,
                unique=True))
def test_case_collisions_find_every_clash(paths_: list[str]) -> None:
    clashes = case_collisions(paths_)
    expected = sum(len(group) - 1 for group in case_clashes(paths_))
    assert len(clashes) == expected
    for a, b in clashes:
        assert a != b and unicodedata.normalize("NFC", a).casefold() == \
            unicodedata.normalize("NFC", b).casefold()

