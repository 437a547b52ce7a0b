"""The gate under attack, through the real ``git`` binary and the installed pre-receive hook.

Every attack is a push that must be refused with its own ``aismm: <ref>: <where>: <what>`` line,
leaving the mission repository exactly as it was: same refs, same object counts, and none of the
pushed objects kept (the push quarantine is thrown away). The legitimate paths are driven the same
way, so the suite also proves the gate is not simply refusing everything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from aismm import gate
from aismm.core.model import dump_yaml
from aismm.core.refs import SOCKET
from aismm.services import registrar
from aismm.state import registry
from tests import hubkit
from tests.hubkit import Clone, Kit, findings, request, verdict

R = "refs/heads/attempts/bob"
A = "refs/heads/accepted"
M = "refs/heads/main"
SETTLED, REFUNDED = "refs/tags/settled", "refs/tags/refunded"


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kit]:
    """A served kit: every push's hooks are answered by the hub's socket server (see
    :func:`hubkit.served`), as on a hub that runs ``aismm serve``."""
    for kit in hubkit.kit_fixture(tmp_path_factory):
        with hubkit.served(kit.hub) as handled:
            yield kit
        assert handled, "no push of this module reached the server"


@pytest.fixture(scope="module")
def unserved_kit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kit]:
    """A kit whose hooks find no server: each push's hooks judge in a process of their own."""
    yield from hubkit.kit_fixture(tmp_path_factory)


def line(ref: str, where: str, what: str) -> str:
    """The start of the rejection line the gate prints for one problem."""
    return f"aismm: {ref}: {where}: {what}"


def assert_shape(text: str) -> None:
    """``aismm: <ref>: <where>: <what>; <fix>`` with every part present."""
    head, sep, fix = text.rpartition("; ")
    assert sep and fix.strip() and not text.rstrip().endswith(";"), f"no fix in {text!r}"
    parts = head.split(": ", 3)
    assert len(parts) == 4 and parts[0] == "aismm", f"not 4 parts: {text!r}"
    assert parts[1].startswith("refs/"), f"no ref in {text!r}"
    assert parts[2].strip() and parts[3].strip(), f"empty where/what in {text!r}"
    assert not any(ord(ch) < 32 or ord(ch) == 127 for ch in text), f"raw control char: {text!r}"


class Scene:
    """A fresh mission with one working clone on its first agent's attempt branch."""

    def __init__(self, kit: Kit, agents: tuple[str, ...] = ("bob",), **options: object) -> None:
        self.kit = kit
        self.created = kit.mission(agents, **options)  # type: ignore[arg-type]
        self.id = self.created.doc.id
        self.agent = agents[0]
        self.branch = f"attempts/{self.agent}"
        self.c = kit.clone(self.created, self.branch)

    def key(self, actor: str) -> Path:
        return self.kit.key(actor)

    def verdict(self, reviewer: str, tree: str | None = None, **fields: object) -> str:
        """Commit ``verdicts/<reviewer>.yaml`` on the current branch, signed by the reviewer."""
        path = "verdicts/platform.yaml" if reviewer == "platform" else f"verdicts/{reviewer}.yaml"
        doc = verdict(self.id, reviewer, tree or self.c.tree_of(), **fields)  # type: ignore[arg-type]
        return self.c.commit(self.key(reviewer), f"Verdict of {reviewer}", {path: doc})

    def delivered(self, variant: int = 0) -> str:
        """The agent's delivery, landed; the deliverable tree id."""
        self.c.deliver(self.key(self.agent), findings(variant))
        self.c.land(self.branch)
        return self.c.tree_of()

    def ready(self, reviewers: tuple[str, ...] = ("rita",), variant: int = 0,
              platform: bool = True) -> str:
        """Delivery plus the platform's and reviewers' passing verdicts, landed in one push."""
        self.c.deliver(self.key(self.agent), findings(variant))
        tree = self.c.tree_of()
        if platform:
            self.verdict("platform")
        for reviewer in reviewers:
            self.verdict(reviewer)
        self.c.land(self.branch)
        return tree

    def merge(self, signer: str = "alice", head: str | None = None) -> str:
        """The acceptance merge on ``accepted`` (local only); its id."""
        self.c.switch("accepted")
        self.c.git(*Clone.sign_args(self.key(signer)), "merge", "-q", "--no-ff", "-S",
                   "-m", "Accept", head or f"origin/{self.branch}")
        return self.c.rev("HEAD")

    def accepted(self) -> str:
        """A complete, legitimate acceptance (landed); the merge id."""
        self.ready()
        merge = self.merge()
        self.c.land("accepted")
        return merge

    def tag(self, name: str, target: str, signer: str = "platform", force: bool = False) -> str:
        force_flag = ["-f"] if force else []
        self.c.git(*Clone.sign_args(self.key(signer)), "tag", *force_flag, "-s", name,
                   "-m", f"{name}\n", target)
        return self.c.rev(f"refs/tags/{name}")

    def attack(self, expect: str, *refspecs: str, **push: object) -> Attack:
        return Attack(self.c, refspecs or (self.branch,), expect, push)


@dataclass
class Attack:
    """One push to make, and the start of the rejection line it must produce."""

    clone: Clone
    refspecs: tuple[str, ...]
    expect: str
    push: Mapping[str, object] = field(default_factory=dict)


ATTACKS: dict[str, Callable[[Kit], Attack]] = {}


def attack(name: str) -> Callable[[Callable[[Kit], Attack]], Callable[[Kit], Attack]]:
    def register(build: Callable[[Kit], Attack]) -> Callable[[Kit], Attack]:
        assert name not in ATTACKS, name
        ATTACKS[name] = build
        return build
    return register


def _sources(clone: Clone, refspecs: tuple[str, ...]) -> list[str]:
    """The objects a push would send (to check none of them is kept after the rejection)."""
    out = []
    for spec in refspecs:
        src = spec.lstrip("+").split(":", 1)[0]
        if src:
            found = clone.git("rev-parse", "--verify", "-q", src, check=False)
            if found.returncode == 0:
                out.append(found.stdout.decode().strip())
    return out


# -- signatures --------------------------------------------------------------------------------
@attack("unsigned commit")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    oid = s.c.commit(None, "deliver", {"deliverable/findings.json": findings()})
    return s.attack(line(R, f"commit {oid[:12]}", "unsigned"))


@attack("signed by an unregistered key")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    oid = s.c.deliver(s.key("stranger"))
    return s.attack(line(R, f"commit {oid[:12]}", "signed by an unregistered or revoked key"))


@attack("signed by a revoked key")
def _(kit: Kit) -> Attack:
    kit.add_actor("mallory", ["specialist"], "mallory-co")
    s = Scene(kit, ("mallory",))
    actor = registry.actor(kit.hub, "mallory").model_copy(update={"revoked": True})
    registrar.commit_files(kit.hub, {"actors/mallory.yaml": dump_yaml(
        actor.model_dump(mode="json")).encode()}, "Revoke mallory\n", "platform")
    registrar.write_allowed_signers(kit.hub)
    oid = s.c.deliver(s.key("mallory"))
    return s.attack(line("refs/heads/attempts/mallory", f"commit {oid[:12]}",
                         "signed by an unregistered or revoked key"))


@attack("signature does not match the content")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    signed = s.c.deliver(s.key("bob"), message="deliver")
    raw = s.c.git("cat-file", "commit", signed).stdout.replace(b"\ndeliver\n", b"\nforged\n")
    forged = s.c.git("hash-object", "-t", "commit", "-w", "--stdin", input=raw).stdout
    oid = forged.decode().strip()
    return s.attack(line(R, f"commit {oid[:12]}", "bad signature ("), f"{oid}:{R}")


@attack("signed by someone else than the pusher")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    oid = s.c.deliver(s.key("bob"))
    return s.attack(line(R, f"commit {oid[:12]}", "signed by bob but pushed by alice"),
                    env={"AISMM_PUSHER": "alice"})


# -- who writes where --------------------------------------------------------------------------
@attack("hidden commit: agent edits inputs, then reverts it")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    original = (s.c.path / "inputs" / "request.json").read_bytes()
    s.c.commit(s.key("bob"), "tweak the task", {"inputs/request.json": b'{"evil": true}\n'})
    s.c.commit(s.key("bob"), "deliver", {"inputs/request.json": original,
                                         "deliverable/findings.json": findings()})
    return s.attack(line(R, "inputs/request.json", "agent bob may write only under deliverable/"))


@attack("hidden commit: reviewer-signed delivery under a legitimate agent commit")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    s.c.commit(s.key("rita"), "slip in a delivery", {"deliverable/findings.json": findings()})
    s.c.commit(s.key("bob"), "notes", {"deliverable/notes.md": "all mine\n"})
    return s.attack(line(R, "deliverable/findings.json",
                         "reviewer rita may write only verdicts/rita.yaml"))


@attack("agent writes outside deliverable/")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    s.c.commit(s.key("bob"), "readme", {"README.md": "changed\n"})
    return s.attack(line(R, "README.md", "agent bob may write only under deliverable/"))


@attack("agent writes a reviewer's verdict")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    tree = s.delivered()
    s.c.commit(s.key("bob"), "self-review", {"verdicts/rita.yaml": verdict(s.id, "rita", tree)})
    return s.attack(line(R, "verdicts/rita.yaml", "agent bob may write only under deliverable/"))


@attack("agent forges verdicts/platform.yaml")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    tree = s.delivered()
    s.c.commit(s.key("bob"), "dod", {"verdicts/platform.yaml": verdict(s.id, "platform", tree)})
    return s.attack(line(R, "verdicts/platform.yaml",
                         "agent bob may write only under deliverable/"))


@attack("reviewer forges verdicts/platform.yaml")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    tree = s.delivered()
    s.c.commit(s.key("rita"), "dod", {"verdicts/platform.yaml": verdict(s.id, "platform", tree)})
    return s.attack(line(R, "verdicts/platform.yaml",
                         "reviewer rita may write only verdicts/rita.yaml"))


@attack("reviewer writes deliverable/")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    s.delivered()
    s.c.commit(s.key("rita"), "improve", {"deliverable/notes.md": "fixed it for you\n"})
    return s.attack(line(R, "deliverable/notes.md",
                         "reviewer rita may write only verdicts/rita.yaml"))


@attack("reviewer reviews its own delivery")
def _(kit: Kit) -> Attack:
    s = Scene(kit, ("sam",))
    s.delivered()
    s.verdict("sam")
    return s.attack(line("refs/heads/attempts/sam", "verdicts/sam.yaml",
                         "agent sam may write only under deliverable/"))


@attack("reviewer shares its owner with the agent")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    s.delivered()
    s.verdict("rex")
    return s.attack(line(R, "verdicts/rex.yaml",
                         "reviewer rex is not independent (same owner acme as the agent)"))


@attack("reviewer shares its owner with the client")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    s.delivered()
    s.verdict("cal")
    return s.attack(line(R, "verdicts/cal.yaml",
                         "reviewer cal is not independent (same owner alice as the client)"))


@attack("reviewer not named by the mission")
def _(kit: Kit) -> Attack:
    s = Scene(kit, reviewers=("vera",))
    s.delivered()
    s.verdict("rita")
    return s.attack(line(R, "verdicts/rita.yaml", "rita is not a reviewer of this mission"))


@attack("unassigned specialist writes on an attempt")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    s.c.deliver(s.key("dave"))
    return s.attack(line(R, "deliverable/findings.json", f"dave has no write access on {R}"))


@attack("agent takes over a competitor's commits")
def _(kit: Kit) -> Attack:
    s = Scene(kit, ("bob", "dave"), mode="contest")
    s.c.switch("attempts/dave")
    s.c.deliver(s.key("dave"))
    s.verdict("platform")
    s.verdict("rita")
    s.c.land("attempts/dave")
    return s.attack(line(R, "deliverable/findings.json", f"dave has no write access on {R}"),
                    f"refs/remotes/origin/attempts/dave:{R}")


@attack("rival re-delivers a competitor's deliverable under its own signature")
def _(kit: Kit) -> Attack:
    s = Scene(kit, ("bob", "dave"), mode="contest")
    s.c.switch("attempts/dave")
    s.c.deliver(s.key("dave"))
    s.c.land("attempts/dave")
    s.c.switch("attempts/bob")
    oid = s.c.deliver(s.key("bob"))  # the same bytes, so the same deliverable tree
    return s.attack(line(R, f"commit {oid[:12]}", "its deliverable is identical to one dave "
                         "delivered earlier in this mission"))


@attack("client escalates before any rework")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    tree = s.ready()
    s.c.commit(s.key("alice"), "escalate", {"requests/001-escalation.yaml":
                                            request(s.id, "escalation", tree)})
    return s.attack(line(R, "requests/001-escalation.yaml", "escalation after 0 rework "
                         "request(s); the contract allows it after 1"))


@attack("client writes deliverable/")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    s.delivered()
    s.c.commit(s.key("alice"), "my way", {"deliverable/notes.md": "client edit\n"})
    return s.attack(line(R, "deliverable/notes.md",
                         "the client alice may only add files under requests/"))


@attack("client skips a request number")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    tree = s.delivered()
    s.c.commit(s.key("alice"), "rework", {"requests/002-rework.yaml":
                                          request(s.id, "rework", tree)})
    return s.attack(line(R, "requests/002-rework.yaml", "request number must be 001"))


@attack("arbiter rules without an escalation")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    tree = s.delivered()
    s.c.commit(s.key("arbiter"), "ruling", {"verdicts/arbiter.yaml":
                                            verdict(s.id, "arbiter", tree, "release")})
    return s.attack(line(R, "verdicts/arbiter.yaml", "no escalation is open on this attempt"))


@attack("merge commit on an attempt branch")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    s.c.git("switch", "-q", "-c", "side", "origin/main")
    s.c.commit(s.key("bob"), "side work", {"deliverable/notes.md": "side\n"})
    s.c.git("switch", "-q", "attempts/bob")
    s.c.deliver(s.key("bob"))
    s.c.git(*Clone.sign_args(s.key("bob")), "merge", "-q", "--no-ff", "-S", "-m", "merge", "side")
    merge = s.c.rev("HEAD")
    return s.attack(line(R, f"commit {merge[:12]}", "merge commits are not allowed on attempts"))


@attack("history spliced in from another mission")
def _(kit: Kit) -> Attack:
    other = Scene(kit)
    other.delivered()
    s = Scene(kit)
    s.c.git("fetch", "-q", str(other.created.path), f"{R}:refs/spliced")
    return s.attack(line(R, "ref", "non-fast-forward update (history rewrite)"),
                    f"refs/spliced:{R}", force=True)


# -- refs --------------------------------------------------------------------------------------
@attack("force-push rewriting an attempt")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    s.delivered()
    s.c.git(*Clone.sign_args(s.key("bob")), "commit", "-q", "--amend", "-S", "-m", "rewritten")
    return s.attack(line(R, "ref", "non-fast-forward update (history rewrite)"), force=True)


@attack("branch deletion")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    return s.attack(line(R, "ref", "deleting refs is not allowed"), f":{R}")


@attack("any change to main")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    s.c.switch("main")
    s.c.commit(s.key("alice"), "sharpen the task", {"README.md": "new terms\n"})
    return s.attack(line(M, "ref", "main never changes after the mission is created"), "main")


@attack("unknown ref namespace")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    s.c.deliver(s.key("bob"))
    return s.attack(line("refs/heads/feature", "ref", "unknown ref namespace"),
                    "HEAD:refs/heads/feature")


@attack("attempt branch for an unassigned agent")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    s.c.deliver(s.key("dave"))
    return s.attack(line("refs/heads/attempts/dave", "ref", "dave is not assigned to this mission"),
                    "HEAD:refs/heads/attempts/dave")


@attack("tag by a non-platform actor")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    s.tag("refunded", "origin/main", signer="alice")
    return s.attack(line(REFUNDED, "tag", "signed by alice; only the platform tags"), REFUNDED)


@attack("lightweight settlement tag")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    s.c.git("tag", "refunded", "origin/main")
    return s.attack(line(REFUNDED, "ref", "must be an annotated, signed tag"), REFUNDED)


@attack("other tag names")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    s.tag("v1.0", "origin/main")
    return s.attack(line("refs/tags/v1.0", "ref", "unknown ref namespace"), "refs/tags/v1.0")


@attack("settled before anything was accepted")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    s.tag("settled", "origin/main")
    return s.attack(line(SETTLED, "tag", "nothing has been accepted"), SETTLED)


@attack("moving settled")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    merge = s.accepted()
    s.tag("settled", merge)
    s.c.land(SETTLED)
    s.tag("settled", f"{merge}^1", force=True)
    return s.attack(line(SETTLED, "ref", "settlement tags are create-once"),
                    f"+{SETTLED}:{SETTLED}")


@attack("refunded after settled")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    merge = s.accepted()
    s.tag("settled", merge)
    s.c.land(SETTLED)
    s.tag("refunded", "origin/main")
    return s.attack(line(REFUNDED, "tag", "settled already exists"), REFUNDED)


# -- content -----------------------------------------------------------------------------------
@attack("symbolic link")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    (s.c.path / "deliverable").mkdir()
    os.symlink("../inputs/request.json", s.c.path / "deliverable" / "findings.json")
    s.c.commit(s.key("bob"), "link")
    return s.attack(line(R, "deliverable/findings.json", "symbolic links are not allowed"))


@attack("submodule gitlink")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    s.c.git("update-index", "--add", "--cacheinfo", f"160000,{s.c.rev('HEAD')},deliverable/sub")
    s.c.git(*Clone.sign_args(s.key("bob")), "commit", "-q", "-S", "-m", "submodule")
    return s.attack(line(R, "deliverable/sub", "submodules (gitlinks) are not allowed"))


def _hostile_file(name: str, data: bytes = b"x\n") -> Callable[[Kit], Attack]:
    def build(kit: Kit) -> Attack:
        s = Scene(kit)
        s.c.deliver(s.key("bob"))
        oid = s.c.craft_commit(s.key("bob"), {name.encode(): ("100644", data)})
        return s.attack(line(R, name, ""), f"{oid}:{R}")
    return build


@attack(".gitmodules")
def _(kit: Kit) -> Attack:
    a = _hostile_file("deliverable/.gitmodules",
                      b'[submodule "x"]\n\tpath = x\n\turl = https://example.invalid/x\n')(kit)
    a.expect += ".gitmodules is not allowed"
    return a


@attack(".gitattributes")
def _(kit: Kit) -> Attack:
    a = _hostile_file("deliverable/.gitattributes", b"* filter=evil\n")(kit)
    a.expect += ".gitattributes is not allowed"
    return a


@attack("oversize file")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    s.c.commit(s.key("bob"), "big", {"deliverable/findings.json": findings(),
                                     "deliverable/notes.md": b"x" * 600_000})
    return s.attack(line(R, "deliverable/notes.md",
                         "600000 bytes exceed the per-file limit of 524288"))


@attack("too many files")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    s.c.commit(s.key("bob"), "many", {"deliverable/findings.json": findings(),
                                      "deliverable/notes.md": "n\n", "deliverable/more.md": "m\n"})
    return s.attack(line(R, "deliverable/", "3 files exceed the contract's limit of 2"))


@attack("file the contract does not allow")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    s.c.commit(s.key("bob"), "script", {"deliverable/run.sh": "rm -rf /\n"})
    return s.attack(line(R, "deliverable/run.sh", "not an allowed deliverable path"))


@attack("case-colliding names")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    s.c.commit(s.key("bob"), "twins", {"deliverable/findings.json": findings(),
                                       "deliverable/Findings.json": findings()})
    return s.attack(line(R, "deliverable/findings.json", "collides with deliverable/Findings.json "
                         "on case-insensitive file systems"))


@attack("case collision between a file and a folder")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    s.c.commit(s.key("bob"), "twins", {"deliverable/notes.md": "n\n",
                                       "deliverable/NOTES.md/part.md": "m\n"})
    return s.attack(line(R, "deliverable/notes.md", "collides with deliverable/NOTES.md "
                         "on case-insensitive file systems"))


@attack("deliverable fails its schema")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    s.c.deliver(s.key("bob"), b'{"schema_version": 1, "findings": []}\n')
    return s.attack(line(R, "deliverable/findings.json", "fails the contract schema ((document): "
                         "'summary' is a required property)"))


@attack("deliverable is not JSON")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    s.c.deliver(s.key("bob"), b"{not json\n")
    return s.attack(line(R, "deliverable/findings.json", "cannot be parsed ("))


# -- verdicts ----------------------------------------------------------------------------------
@attack("malformed verdict")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    s.delivered()
    s.verdict("rita", score=150)
    return s.attack(line(R, "verdicts/rita.yaml", "invalid document (score: "))


@attack("verdict that is not YAML")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    s.delivered()
    s.c.commit(s.key("rita"), "verdict", {"verdicts/rita.yaml": "verdict: [pass\n"})
    return s.attack(line(R, "verdicts/rita.yaml", "invalid document ("))


@attack("verdict bound to another tree")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    tree = s.delivered()
    other = s.c.rev("HEAD:inputs")
    s.verdict("rita", tree=other)
    return s.attack(line(R, "verdicts/rita.yaml: deliverable_tree", f"{other[:12]} is not the "
                         f"current deliverable tree {tree[:12]}"))


@attack("verdict naming another reviewer")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    tree = s.delivered()
    s.c.commit(s.key("rita"), "verdict", {"verdicts/rita.yaml": verdict(s.id, "vera", tree)})
    return s.attack(line(R, "verdicts/rita.yaml: reviewer", "names vera but is signed by rita"))


@attack("reviewer rules like an arbiter")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    s.delivered()
    s.verdict("rita", result="release")
    return s.attack(line(R, "verdicts/rita.yaml: verdict", "'release' is not allowed here"))


@attack("verdict replayed from another mission")
def _(kit: Kit) -> Attack:
    other = Scene(kit)
    other.delivered()
    other.verdict("rita")
    other.c.land(R)
    replay = (other.c.path / "verdicts" / "rita.yaml").read_bytes()
    s = Scene(kit)
    s.delivered()  # the same golden deliverable: the same tree id as in the other mission
    s.c.commit(s.key("rita"), "verdict", {"verdicts/rita.yaml": replay})
    return s.attack(line(R, "verdicts/rita.yaml: mission",
                         f"names mission {other.id}, not {s.id}"))


# -- acceptance --------------------------------------------------------------------------------
@attack("stale verdict counted for acceptance")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    s.ready()  # rita passes the first deliverable ...
    s.c.deliver(s.key("bob"), findings(1))  # ... then bob re-delivers
    s.verdict("platform")
    s.c.land(s.branch)
    s.merge()
    return s.attack(line(A, R, "review quorum not met (0 of 1 independent passing verdicts"),
                    "accepted")


@attack("stale platform verdict counted for acceptance")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    s.ready(reviewers=())
    s.c.deliver(s.key("bob"), findings(1))
    s.verdict("rita")
    s.c.land(s.branch)
    s.merge()
    return s.attack(line(A, R, "the platform DoD verdict does not pass on the current "
                         "deliverable (T1)"), "accepted")


@attack("acceptance without quorum")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    s.ready(reviewers=())
    s.merge()
    return s.attack(line(A, R, "review quorum not met (0 of 1"), "accepted")


@attack("acceptance on a failing review score")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    s.c.deliver(s.key("bob"))
    s.verdict("platform")
    s.verdict("rita", score=40)
    s.c.land(s.branch)
    s.merge()
    return s.attack(line(A, R, "review quorum not met (0 of 1"), "accepted")


@attack("acceptance merge with a different tree")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    s.ready()
    s.c.switch("accepted")
    s.c.git("merge", "-q", "--no-ff", "--no-commit", f"origin/{s.branch}")
    s.c.write({"deliverable/notes.md": "and one more thing\n"})
    s.c.git("add", "-A")
    s.c.git(*Clone.sign_args(s.key("alice")), "commit", "-q", "-S", "-m", "Accept (edited)")
    merge = s.c.rev("HEAD")
    return s.attack(line(A, f"commit {merge[:12]}", "merge tree differs from the attempt head's "
                         "tree"), "accepted")


@attack("acceptance signed by the agent")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    s.ready()
    merge = s.merge(signer="bob")
    return s.attack(line(A, f"commit {merge[:12]}", "signed by bob, not the client alice"),
                    "accepted")


@attack("acceptance signed by the platform without a release")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    s.ready()
    merge = s.merge(signer="platform")
    return s.attack(line(A, f"commit {merge[:12]}", "the platform may accept only after an "
                         "arbiter's release"), "accepted")


@attack("acceptance by fast-forward instead of a merge")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    s.ready()
    head = s.c.rev("HEAD")
    return s.attack(line(A, f"commit {head[:12]}", "acceptance must be a merge with parents "
                         "[accepted, attempt head]"), f"{head}:{A}")


@attack("acceptance of an old attempt head")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    s.ready()
    s.c.commit(s.key("bob"), "notes", {"deliverable/notes.md": "later\n"})
    s.c.land(s.branch)
    merge = s.merge(head=f"origin/{s.branch}~1")
    return s.attack(line(A, f"commit {merge[:12]}", f"merges an old head of {R}"), "accepted")


@attack("acceptance with an escalation open")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    tree = s.ready()
    s.c.commit(s.key("alice"), "rework", {"requests/001-rework.yaml":
                                          request(s.id, "rework", tree)})
    s.c.commit(s.key("alice"), "escalate", {"requests/002-escalation.yaml":
                                            request(s.id, "escalation", tree)})
    s.c.land(s.branch)
    s.merge()
    return s.attack(line(A, R, "an escalation is open"), "accepted")


@attack("second acceptance")
def _(kit: Kit) -> Attack:
    s = Scene(kit)
    s.accepted()
    s.c.switch(s.branch)
    s.ready(variant=1)
    s.merge()
    return s.attack(line(A, "ref", "this mission is already accepted"), "accepted")


def _names() -> dict[str, tuple[bytes, str, str, str | None]]:
    """Hostile names: raw path, the gate's rendering and complaint, and git fsck's complaint."""
    deep = "deliverable/" + "d/" * 12 + "x.md"
    long = "deliverable/" + ("a" * 60 + "/") * 4 + "x.md"
    return {
        "dot-dot": (b"deliverable/../x", "deliverable/../x",
                    "path has an empty, '.' or '..' component", "hasDotdot"),
        ".git": (b"deliverable/.git/config", "deliverable/.git/config",
                 "path names .git (in some spelling)", "hasDotgit"),
        ".GIT": (b"deliverable/.GIT/config", "deliverable/.GIT/config",
                 "path names .git (in some spelling)", "hasDotgit"),
        ".git.": (b"deliverable/.git./config", "deliverable/.git./config",
                  "path names .git (in some spelling)", "hasDotgit"),
        "git~1": (b"deliverable/git~1/config", "deliverable/git~1/config",
                  "path names .git (in some spelling)", "hasDotgit"),
        ".g(ZWNJ)it": ("deliverable/.g\u200cit/config".encode(), r"deliverable/.g\u200cit/config",
                       "path names .git (in some spelling)", "hasDotgit"),
        "backslash": (b"deliverable\\findings.json", r"deliverable\\findings.json",
                      "name contains a backslash", None),
        "control character": (b"deliverable/a\x1b[2Jb.md", r"deliverable/a\x1b[2Jb.md",
                              "name contains a control character", None),
        "newline": (b"deliverable/a\nb.md", r"deliverable/a\nb.md",
                    "name contains a control character", None),
        "non-UTF-8": (b"deliverable/\xff.md", r"deliverable/\ufffd.md",
                      "name is not valid UTF-8", None),
        "NFD": ("deliverable/cafe\u0301.md".encode(), r"deliverable/cafe\u0301.md",
                "name is not in Unicode NFC form", None),
        "too deep": (deep.encode(), deep, "path is deeper than 12 levels", None),
        "too long": (long.encode(), long, "path is longer than 255 bytes", None),
    }


for _label, (_raw, _shown_as, _what, _fsck) in _names().items():
    def _build(kit: Kit, raw: bytes = _raw, shown: str = _shown_as, what: str = _what,
               fsck: bool = _fsck is None) -> Attack:
        s = Scene(kit)
        s.c.deliver(s.key("bob"))
        oid = s.c.craft_commit(s.key("bob"), {raw: ("100644", b"x\n")})
        # The receiving side's fsck stops the .git and '..' names before any hook runs (see
        # test_fsck_stops_...); the gate is the second line of defence there (and the only one
        # for writes that skip hooks), so those pushes switch fsck off to show the gate alone.
        return s.attack(line(R, shown, what), f"{oid}:{R}", fsck=fsck)

    attack(f"hostile name: {_label}")(_build)


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_is_rejected_and_leaves_no_trace(kit: Kit, name: str) -> None:
    a = ATTACKS[name](kit)
    before = a.clone.remote_state()
    sent = [oid for oid in _sources(a.clone, a.refspecs) if not a.clone.remote_has(oid)]
    result = a.clone.push(*a.refspecs, **a.push)  # type: ignore[arg-type]
    assert result.returncode != 0, result.text
    assert any(p.startswith(a.expect) for p in result.problems), \
        f"expected a line starting {a.expect!r}, got:\n{result.text}"
    for problem in result.problems:
        assert_shape(problem)
    assert a.clone.remote_state() == before
    assert not [oid for oid in sent if a.clone.remote_has(oid)], "quarantined objects were kept"


# The same attacks with no server: the hook judges in-process (a sample: each kind of rule).
WITHOUT_A_SERVER = ("unsigned commit", "signed by someone else than the pusher",
                    "agent forges verdicts/platform.yaml", "force-push rewriting an attempt",
                    "symbolic link", "deliverable fails its schema", "settled before anything "
                    "was accepted", "history spliced in from another mission")


@pytest.mark.parametrize("name", WITHOUT_A_SERVER)
def test_attack_is_rejected_without_a_server(unserved_kit: Kit, name: str) -> None:
    assert not (unserved_kit.hub.root / SOCKET).exists()
    test_attack_is_rejected_and_leaves_no_trace(unserved_kit, name)


@pytest.mark.parametrize("label", [k for k, v in _names().items() if v[3]])
def test_fsck_stops_dotgit_and_dotdot_names_before_the_gate(kit: Kit, label: str) -> None:
    raw, _shown, _what, fsck = _names()[label]
    s = Scene(kit)
    oid = s.c.craft_commit(s.key("bob"), {raw: ("100644", b"x\n")})
    before = s.c.remote_state()
    result = s.c.push(f"{oid}:{R}")
    assert result.returncode != 0
    assert fsck is not None and fsck in result.text
    assert s.c.remote_state() == before and not s.c.remote_has(oid)


def test_the_attack_list_is_long_enough() -> None:
    assert len(ATTACKS) >= 30


def test_every_problem_of_a_many_problem_push_is_one_well_formed_line(kit: Kit) -> None:
    s = Scene(kit)
    s.c.commit(None, "bad", {"README.md": "x\n", "deliverable/run.sh": "y\n",
                             "deliverable/findings.json": b"{}"})
    s.c.commit(s.key("stranger"), "worse", {"verdicts/platform.yaml": "nope\n"})
    s.c.commit(s.key("rita"), "worst", {"deliverable/notes.md": b"z" * 600_000})
    result = s.c.push(s.branch)
    assert result.returncode == 1
    assert len(result.problems) >= 5, result.text
    for problem in result.problems:
        assert_shape(problem)


# -- the legitimate paths ----------------------------------------------------------------------
def test_delivery_verdicts_acceptance_and_settlement_are_accepted(kit: Kit) -> None:
    s = Scene(kit)
    s.c.deliver(s.key("bob"))
    delivered = s.c.push(s.branch, hooks="pre-receive")
    assert delivered.returncode == 0 and not delivered.problems, delivered.text
    tree = s.c.tree_of()
    for reviewer in ("platform", "rita", "vera"):
        s.verdict(reviewer)
        pushed = s.c.push(s.branch, hooks="pre-receive")
        assert pushed.returncode == 0 and not pushed.problems, pushed.text
    s.c.commit(s.key("bob"), "notes", {"deliverable/notes.md": "answers to the review\n"})
    s.c.land(s.branch)  # a re-delivery makes every verdict stale ...
    tree = s.c.tree_of()
    for reviewer in ("platform", "rita"):  # ... and the reviewers judge the new tree
        s.verdict(reviewer, tree=tree)
    s.c.land(s.branch)
    head = s.c.rev("HEAD")
    merge = s.merge()
    accepted = s.c.push("accepted", hooks="pre-receive")
    assert accepted.returncode == 0 and not accepted.problems, accepted.text
    tag = s.tag("settled", merge)
    settled = s.c.push(SETTLED, hooks="pre-receive")
    assert settled.returncode == 0 and not settled.problems, settled.text
    refs = s.c.remote_state().refs
    assert refs[R] == head and refs[A] == merge and refs[SETTLED] == tag
    assert refs[M] == s.created.main
    assert s.c.git("rev-parse", f"{merge}^1", f"{merge}^2").stdout.decode().split() == \
        [s.created.main, head]


def test_client_requests_rework_and_arbiter_rules_after_escalation(kit: Kit) -> None:
    s = Scene(kit)
    tree = s.delivered()
    s.c.commit(s.key("alice"), "rework", {"requests/001-rework.yaml":
                                          request(s.id, "rework", tree)})
    s.c.land(s.branch)
    tree = s.delivered(variant=1)
    s.c.commit(s.key("alice"), "escalate", {"requests/002-escalation.yaml":
                                            request(s.id, "escalation", tree)})
    s.c.commit(s.key("arbiter"), "ruling", {"verdicts/arbiter.yaml":
                                            verdict(s.id, "arbiter", tree, "release")})
    result = s.c.push(s.branch, hooks="pre-receive")
    assert result.returncode == 0 and not result.problems, result.text


def test_platform_may_accept_after_an_arbiters_release(kit: Kit) -> None:
    s = Scene(kit)
    tree = s.delivered()
    s.c.commit(s.key("alice"), "rework", {"requests/001-rework.yaml":
                                          request(s.id, "rework", tree)})
    s.c.commit(s.key("alice"), "escalate", {"requests/002-escalation.yaml":
                                            request(s.id, "escalation", tree)})
    s.c.commit(s.key("arbiter"), "ruling", {"verdicts/arbiter.yaml":
                                            verdict(s.id, "arbiter", tree, "release")})
    s.c.land(s.branch)
    merge = s.merge(signer="platform")
    result = s.c.push("accepted", hooks="pre-receive")
    assert result.returncode == 0 and not result.problems, result.text
    assert s.c.remote_state().refs[A] == merge


def test_a_push_to_the_registry_is_judged_by_the_gate(kit: Kit) -> None:
    """An unregistered key must not be able to register itself (here: as an arbiter)."""
    reg = Clone(kit.hub.registry_path, kit.root / "clones" / "registry-attack", kit.hub,
                kit.hook_dirs)
    public = kit.key("stranger").with_suffix(".pub").read_text().strip()
    oid = reg.commit(kit.key("stranger"), "register me", {"actors/evil.yaml": dump_yaml({
        "schema_version": 1, "id": "evil", "roles": ["arbiter"], "owner": "platform",
        "key": public, "hosted": False, "revoked": False})})
    before = reg.remote_state()
    result = reg.push("main")
    try:
        assert result.returncode != 0
        assert any(p.startswith(line(M, f"commit {oid[:12]}", "signed by an unregistered"))
                   for p in result.problems), result.text
        assert reg.remote_state() == before
    finally:
        if result.returncode == 0:  # put the registry back for the other tests of this module
            reg.git("push", "-q", "--force", "origin", f"{before.refs[M]}:{M}")
            registrar.write_allowed_signers(kit.hub)


# -- tree bombs: bounded work and bounded output ------------------------------------------------
_PUSH_AND_MEASURE = """
import json, resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, timeout=600)  # a hang guard only
usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # git push and every process under it
print(json.dumps({"code": done.returncode, "stderr": done.stderr.decode("utf-8", "replace"),
                  "peak_kb": usage.ru_maxrss}))
"""


def _bomb(c: Clone, width: int, depth: int) -> str:
    """A tree naming ``width ** depth`` paths with only ``depth + 1`` objects: every level has
    ``width`` entries, all pointing at the same subtree (built by the real ``git mktree``)."""
    oid, mode, kind = c.blob(b"x\n"), "100644", "blob"
    for _ in range(depth):
        listing = b"".join(f"{mode} {kind} {oid}\te{i:03d}".encode() + b"\0"
                           for i in range(width))
        oid = c.git("mktree", "-z", input=listing).stdout.decode().strip()
        mode, kind = "040000", "tree"
    return oid


@pytest.mark.parametrize(("width", "depth", "where"), [
    (100, 7, "deliverable"),  # 10^14 paths: walking them never ends
    (10, 5, "bomb"),  # 10^5 paths, each one a problem: 100,000 lines before the bound
    (9, 4, "bomb"),  # 6,561 paths: within the hub's limit, walked; the problem lines are capped
])
def test_a_tree_bomb_is_refused_without_walking_it(unserved_kit: Kit, width: int, depth: int,
                                                   where: str) -> None:
    kit = unserved_kit  # the peak memory measured is the hook's own: it judges in-process
    s = Scene(kit)
    bomb = _bomb(s.c, width, depth)
    tree = s.c.craft(s.c.rev("HEAD"), {where.encode(): ("040000", bomb)})
    oid = s.c.commit_tree(tree, [s.c.rev("HEAD")], s.key("bob"), "bomb")
    before = s.c.remote_state()
    measured = subprocess.run([sys.executable, "-c", _PUSH_AND_MEASURE, "git", "push",
                               "origin", f"{oid}:{R}"], cwd=s.c.path, capture_output=True,
                              text=True, check=True)
    result = json.loads(measured.stdout)
    problems = [x.removeprefix("remote: ").rstrip() for x in result["stderr"].splitlines()
                if x.startswith("remote: aismm: ")]
    assert result["code"] != 0
    shown = gate.SHOWN_PROBLEMS
    if width ** depth > kit.hub.config.limits.max_files:  # refused by counting, before walking
        assert problems == [line(R, f"commit {oid[:12]}", "its tree holds more than 10000 "
                                 "files (the hub's limit); commit fewer files")], problems
    else:  # walked (it is small enough), but the pusher sees a bounded number of lines
        assert len(problems) == shown + 1, len(problems)
        assert problems[0].startswith(line(R, f"{where}/e000/e000/e000/e000",
                                           "agent bob may write only under deliverable/"))
        assert problems[-1] == (f"aismm: {R}: … and {width ** depth - shown} more problems: "
                                "not shown; fix the ones above and push again to see the rest")
    for problem in problems:
        assert_shape(problem)
    # Peak memory of the push and its hook (Python with pygit2 is ~60 MB; a walk of 10^6
    # paths took 1.4 GB before the bound).
    assert result["peak_kb"] < 150_000, result["peak_kb"]
    assert s.c.remote_state() == before
