"""Test helpers shared by the gate, plain-git and benchmark code: a hub with a cast of actors,
fresh missions, and working clones driven by the real ``git`` binary.

The cast (``make_kit``): ``alice`` (client), ``bob`` (specialist, owner acme), ``dave``
(specialist, second agent for contests), ``rita`` (reviewer, owner qa-guild), ``sam``
(specialist *and* reviewer), ``rex`` (reviewer owned by acme, like bob), ``cal`` (reviewer owned
by alice, the client), and two external actors whose keys come from ``ssh-keygen``: ``ext``
(specialist) and ``vera`` (reviewer). ``stranger`` is a key nobody registered.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from aismm.core.clock import FixedClock
from aismm.core.model import dump_yaml
from aismm.infra.git import Repo
from aismm.infra import warm
from aismm.infra.hub import Hub
from aismm.infra.ledger import Ledger
from aismm.services import events, judged, market, mission, registrar
from aismm.services.hubs import init_hub
from aismm.services.mission import Created
from tests import conftest

__all__ = [
    "CONTRACT",
    "GIT_ENV",
    "GOLDEN",
    "INPUTS",
    "ROOT",
    "Clone",
    "Kit",
    "Push",
    "RepoState",
    "build_reference_hub",
    "copy_hub",
    "copy_tree",
    "findings",
    "build_kit",
    "kit_fixture",
    "make_kit",
    "repo_state",
    "request",
    "run_git",
    "ssh_keygen",
    "verdict",
]

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = "contract.code_review"
TASK = ROOT / "contracts" / "code_review" / "benchmark" / "http_helpers"
INPUTS = TASK / "inputs"
GOLDEN = TASK / "golden" / "findings.json"
START = "2026-01-01T00:00:00Z"

# The session's git isolation (tests/conftest.py), for scripts given an explicit environment.
GIT_ENV = dict(conftest.GIT_ENV)


def build_reference_hub(root: Path) -> Path:
    """A hub at ``root`` with the reference agents registered and every specialist assessed
    (``sloppy-coder`` rejected, the others listed with a gold badge); built once per session
    by the ``reference_hub`` fixture and copied by :func:`copy_hub`."""
    hub = init_hub(root, clock=FixedClock(START))
    with warm.pool(size=4):  # as `hub init --with-reference-agents` assesses them (aismm.cli.hub)
        market.register_reference_agents(hub)
    _assert_relocatable(root)
    return root


def _rewritable(root: Path) -> list[Path]:
    """The files of the hub at ``root`` that may name the hub's folder, which a copy rewrites:
    the repositories' configs (``gpg.ssh.allowedSignersFile`` is the hub's allowed_signers
    file, so ``git log --show-signature`` works in place) and their hooks."""
    repos = [root / "registry.git", *sorted((root / "missions").glob("*.git"))]
    return [path for repo in repos
            for path in [repo / "config", *sorted((repo / "hooks").glob("*"))]
            if path.is_file()]


def _assert_relocatable(root: Path) -> None:
    """Only the files :func:`_rewritable` lists name the hub's folder, so a copy made by
    :func:`copy_hub` points at itself alone (never back at the hub it was copied from)."""
    needle = str(root).encode()
    fixed = set(_rewritable(root))
    named = [p for p in sorted(root.rglob("*"))
             if p.is_file() and p not in fixed and needle in p.read_bytes()]
    assert named == [], f"hub files name the hub folder, so copies would not work: {named}"


def copy_tree(template: Path, dest: Path) -> Path:
    """Copy the hub folder ``template`` to ``dest``; the copy's repository configs and hooks
    name ``dest`` wherever they named ``template``. The ledger, the outbox and the registry
    name repositories relative to the hub, and the hooks find the hub from their repository,
    so the copy is a hub of its own (:func:`_assert_relocatable` checks the template)."""
    if dest.exists():
        raise FileExistsError(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # coreutils' cp copies a hub (~1,700 files and folders) in two thirds of copytree's CPU
    subprocess.run(["cp", "-a", "--", str(template), str(dest)], check=True)
    names = sorted({str(template), str(template.resolve())}, key=len, reverse=True)
    old = re.compile(b"(?:" + b"|".join(re.escape(n.encode()) for n in names) + b")"
                     rb"(?=/|\s|\"|$)", re.MULTILINE)
    for path in _rewritable(dest):
        data = path.read_bytes()
        new = old.sub(str(dest).encode().replace(b"\\", b"\\\\"), data)
        if new != data:
            path.write_bytes(new)
    return dest


def copy_hub(template: Path, dest: Path, clock: FixedClock | None = None) -> Hub:
    """A private copy (:func:`copy_tree`) of the hub folder ``template`` at ``dest``, on its
    own clock."""
    return Hub(copy_tree(template, dest), clock=clock or FixedClock(START))


def run_git(*args: str | bytes, cwd: Path | None = None, check: bool = True,
            env: Mapping[str, str] | None = None, input: bytes | None = None
            ) -> subprocess.CompletedProcess[bytes]:
    """Run the real git binary (bytes in and out, so raw path names survive)."""
    full = {**os.environ, **(env or {})}
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, env=full, input=input,
                          check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(map(str, args))} failed ({proc.returncode}):\n"
                             f"{proc.stderr.decode(errors='replace')}")
    return proc


def ssh_keygen(path: Path, comment: str = "test") -> Path:
    """A fresh Ed25519 key pair made by OpenSSH (path, path.pub); returns the private key path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True)
    return path


def findings(variant: int = 0) -> bytes:
    """The golden code-review deliverable; each ``variant`` is a different blob (and tree)."""
    return GOLDEN.read_bytes().rstrip() + b"\n" * (variant + 1)


def verdict(mission_id: str, reviewer: str, tree: str, result: str = "pass", score: int = 90,
            **extra: object) -> bytes:
    """A verdict document as a reviewer (or the platform) writes it."""
    doc: dict[str, object] = {
        "schema_version": 1, "mission": mission_id, "reviewer": reviewer,
        "deliverable_tree": tree, "verdict": result, "score": score,
        "rubric": {"correctness": score, "coverage": score, "actionability": score},
        "checks": [], "comments": "",
    }
    doc.update(extra)
    return dump_yaml(doc).encode()


def request(mission_id: str, kind: str, tree: str, reason: str = "please fix it") -> bytes:
    """A client request (rework or escalation) bound to a deliverable tree."""
    return dump_yaml({"schema_version": 1, "mission": mission_id, "kind": kind,
                      "deliverable_tree": tree, "reason": reason}).encode()


@dataclass(frozen=True)
class RepoState:
    """Every ref of a bare repository and its object counts (loose, packed, garbage)."""

    refs: dict[str, str]
    objects: dict[str, str]


@dataclass(frozen=True)
class Push:
    """What a push returned: exit status, every stderr line, and the gate's ``aismm:`` lines."""

    returncode: int
    lines: list[str]

    @property
    def problems(self) -> list[str]:
        return [line for line in self.lines if line.startswith("aismm: ")]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _strip_remote(line: str) -> str:
    line = line.rstrip().replace("\x1b[K", "").rstrip()
    return line.removeprefix("remote: ")


class Clone:
    """A working clone of a mission repository, acting as whichever actor signs its commits."""

    def __init__(self, origin: Path, path: Path, hub: Hub, hook_dirs: Mapping[str, Path]
                 ) -> None:
        self.origin = origin
        self.path = path
        self.hub = hub
        self._hook_dirs = hook_dirs
        if not path.exists():
            run_git("clone", "-q", str(origin), str(path))

    def git(self, *args: str | bytes, check: bool = True, env: Mapping[str, str] | None = None,
            input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return run_git(*args, cwd=self.path, check=check, env=env, input=input)

    def out(self, *args: str) -> str:
        return self.git(*args).stdout.decode().strip()

    def rev(self, expr: str) -> str:
        return self.out("rev-parse", expr)

    def switch(self, branch: str) -> None:
        """Check out a branch that tracks origin's (creating the local one when needed)."""
        self.fetch()
        self.git("switch", "-q", "-C", branch, f"origin/{branch}")

    def fetch(self) -> None:
        self.git("fetch", "-q", "--prune", "origin", "+refs/heads/*:refs/remotes/origin/*",
                 "+refs/tags/*:refs/tags/*")

    def write(self, files: Mapping[str, bytes | str | None]) -> None:
        """Write (bytes/str) or delete (None) files in the work tree."""
        for rel, data in files.items():
            target = self.path / rel
            if data is None:
                if target.is_symlink() or target.is_file():
                    target.unlink()
                elif target.is_dir():
                    shutil.rmtree(target)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data.encode() if isinstance(data, str) else data)

    @staticmethod
    def sign_args(key: Path | None) -> list[str]:
        return ["-c", "gpg.format=ssh", "-c", f"user.signingkey={key}"] if key else []

    def commit(self, key: Path | None, message: str = "change",
               files: Mapping[str, bytes | str | None] | None = None, *,
               allow_empty: bool = False) -> str:
        """Stage everything, commit signed with ``key`` (unsigned when None); the new id."""
        if files:
            self.write(files)
        self.git("add", "-A")
        args = [*self.sign_args(key), "commit", "-q", "-m", message]
        if key is not None:
            args.append("-S")
        if allow_empty:
            args.append("--allow-empty")
        self.git(*args)
        return self.rev("HEAD")

    def deliver(self, key: Path, data: bytes | None = None, message: str = "deliver") -> str:
        """Commit ``deliverable/findings.json`` (the golden one by default) signed by ``key``."""
        return self.commit(key, message, {"deliverable/findings.json": data or findings()})

    def tree_of(self, commit: str = "HEAD", path: str = "deliverable") -> str:
        return self.rev(f"{commit}:{path}")

    def push(self, *refspecs: str, env: Mapping[str, str] | None = None, fsck: bool = True,
             hooks: str = "installed", force: bool = False) -> Push:
        """``git push origin <refspecs>``; the exit status and the remote's lines.

        ``hooks``: ``installed`` (the repository's own hooks), ``pre-receive`` (only the real
        gate; no post-receive, so what the hub does after a push cannot interfere) or ``none``.
        ``fsck=False`` turns off the receiving side's object checks to show the gate alone.
        """
        receive = ["git"]
        if hooks != "installed":
            receive += ["-c", f"core.hooksPath={self._hook_dirs[hooks]}"]
        if not fsck:
            receive += ["-c", "receive.fsckObjects=false"]
        args = ["push", "--porcelain"]
        if len(receive) > 1:
            args.append(f"--receive-pack={' '.join(receive)} receive-pack")
        if force:
            args.append("--force")
        before = self.remote_state().refs if hooks == "pre-receive" else {}
        proc = self.git(*args, "origin", *refspecs, check=False, env=env)
        if hooks == "pre-receive":  # record what landed, as post-receive would (no processing)
            after = self.remote_state().refs
            moved = [(before.get(ref) or "0" * 40, new, ref) for ref, new in after.items()
                     if before.get(ref) != new]
            if moved:
                events.record(self.hub, self.origin, moved, None)
        lines = [_strip_remote(x) for x in
                 (proc.stderr + proc.stdout).decode("utf-8", "replace").splitlines()]
        return Push(proc.returncode, [x for x in lines if x])

    def land(self, *refspecs: str) -> None:
        """Set-up state: judged in-process by the gate exactly as pre-receive would judge it
        (the clone's objects seen through an alternate, like git's push quarantine), then
        pushed without hooks. Much faster than a hook run; attacks use :meth:`push`."""
        remote = self.remote_state().refs
        updates: list[tuple[str | None, str, str]] = []
        for spec in refspecs:
            src, _, dst = spec.lstrip("+").partition(":")
            dst = dst or src
            ref = dst if dst.startswith("refs/") else f"refs/heads/{dst}"
            updates.append((remote.get(ref), self.rev(src), ref))
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("GIT_DIR", str(self.origin))
            mp.setenv("GIT_ALTERNATE_OBJECT_DIRECTORIES", str(self.path / ".git" / "objects"))
            repo = Repo(self.origin, from_env=True)
            judged.judge(self.hub, repo, updates)
        result = self.push(*refspecs, hooks="none")
        assert result.returncode == 0 and not result.problems, result.text
        assert all(self.remote_state().refs.get(ref) == new for _o, new, ref in updates)
        # judged, so in the ref-state log as post-receive would record it (not processed)
        events.record(self.hub, self.origin, [(old or "0" * 40, new, ref)
                                              for old, new, ref in updates], None)

    # -- hand-made objects ------------------------------------------------------------------
    def blob(self, data: bytes) -> str:
        return self.git("hash-object", "-w", "--stdin", input=data).stdout.decode().strip()

    def craft(self, base: str, entries: Mapping[bytes, tuple[str, bytes | str] | None]) -> str:
        """A tree: ``base``'s files with ``entries`` set or removed, built with ``git mktree``.

        Keys are raw path bytes (any name git's porcelain would refuse); values are
        ``(mode, content bytes or an object id)`` or None to remove the path.
        """
        flat: dict[bytes, tuple[str, str]] = {}
        listing = self.git("ls-tree", "-r", "-z", "--full-tree", base).stdout
        for record in listing.split(b"\0"):
            if record:
                meta, name = record.split(b"\t", 1)
                mode, _type, oid = meta.decode().split()
                flat[name] = (mode, oid)
        for name, spec in entries.items():
            if spec is None:
                flat.pop(name, None)
                continue
            mode, content = spec
            flat[name] = (mode, content if isinstance(content, str) else self.blob(content))
        return self._mktree(flat)

    def _mktree(self, flat: Mapping[bytes, tuple[str, str]]) -> str:
        here: list[tuple[bytes, str, str]] = []
        sub: dict[bytes, dict[bytes, tuple[str, str]]] = {}
        for name, (mode, oid) in flat.items():
            head, sep, rest = name.partition(b"/")
            if sep:
                sub.setdefault(head, {})[rest] = (mode, oid)
            else:
                here.append((name, mode, oid))
        for head, children in sub.items():
            here.append((head, "040000", self._mktree(children)))
        kinds = {"040000": "tree", "160000": "commit"}
        data = b"".join(f"{mode} {kinds.get(mode, 'blob')} {oid}\t".encode() + name + b"\0"
                        for name, mode, oid in here)
        return self.git("mktree", "-z", "--missing", input=data).stdout.decode().strip()

    def commit_tree(self, tree: str, parents: list[str], key: Path | None,
                    message: str = "crafted") -> str:
        """``git commit-tree`` (signed with ``key`` unless None); the new commit id."""
        args: list[str] = [*self.sign_args(key), "commit-tree", tree, "-m", message]
        for parent in parents:
            args += ["-p", parent]
        if key is not None:
            args.append("-S")
        return self.git(*args).stdout.decode().strip()

    def craft_commit(self, key: Path | None, entries: Mapping[bytes, tuple[str, bytes | str] | None],
                     parent: str = "HEAD", message: str = "crafted") -> str:
        """A signed commit on ``parent`` whose tree is ``parent``'s with ``entries`` applied."""
        parent_id = self.rev(parent)
        return self.commit_tree(self.craft(parent_id, entries), [parent_id], key, message)

    # -- the bare repository ----------------------------------------------------------------
    def remote_state(self) -> RepoState:
        return repo_state(self.origin)

    def remote_has(self, oid: str) -> bool:
        return run_git("cat-file", "-e", oid, cwd=self.origin, check=False).returncode == 0


def repo_state(bare: Path) -> RepoState:
    """Refs and object counts of a bare repository (to prove a rejection kept nothing)."""
    listing = run_git("for-each-ref", "--format=%(refname) %(objectname)", cwd=bare).stdout
    refs = dict(line.split(" ", 1) for line in listing.decode().splitlines() if line)
    counts = run_git("count-objects", "-v", cwd=bare).stdout.decode()
    objects = dict(line.split(": ", 1) for line in counts.splitlines() if ": " in line)
    return RepoState(refs, objects)


@dataclass
class Kit:
    """A hub with the cast of actors, and the factory for missions and clones."""

    hub: Hub
    root: Path
    external: dict[str, Path] = field(default_factory=dict)
    _serial: int = 0

    def key(self, actor: str) -> Path:
        """The private key file an actor signs with (hosted: the hub's; external: its own)."""
        return self.external.get(actor) or self.hub.key_path(actor)

    def add_actor(self, actor_id: str, roles: list[str], owner: str | None = None,
                  external: bool = False) -> Path:
        """Register an actor (hosted, or with a fresh ssh-keygen key); its key file."""
        if external:
            key = ssh_keygen(self.root / "keys" / actor_id / "id_ed25519", actor_id)
            self.external[actor_id] = key
            registrar.add_actor(self.hub, actor_id, roles, owner,
                               key.with_suffix(".pub").read_text().strip(), False)
        else:
            registrar.add_actor(self.hub, actor_id, roles, owner, None, True)
        if "specialist" in roles:
            self.list_agent(actor_id)
        return self.key(actor_id)

    def list_agent(self, agent: str) -> None:
        """Record a passing, platform-signed assessment so the agent can be hired at T1/T2."""
        record = {"schema_version": 1, "agent": agent, "n": 1, "status": "listed",
                  "badge": "silver", "quality": 85.0, "p50_seconds": 1.0, "cost": 100,
                  "reasons": [], "tasks": [], "at": START}
        registrar.commit_files(self.hub, {f"assessments/{agent}/0001.yaml":
                                         dump_yaml(record).encode()},
                              f"Assess {agent}: listed (test fixture)\n", self.hub.config.platform)

    def mission(self, agents: tuple[str, ...] = ("bob",), tier: str = "T1",
                reviewers: tuple[str, ...] = (), mode: str = "direct",
                client: str = "alice") -> Created:
        """A fresh, funded code-review mission on the golden task."""
        return mission.create(self.hub, contract_ref=CONTRACT, client=client, inputs=INPUTS,
                              price=100, tier=tier, agents=list(agents),
                              reviewers=list(reviewers), mode=mode)

    def clone(self, created: Created, branch: str | None = None) -> Clone:
        """A fresh working clone of a mission (switched to ``branch`` when given)."""
        self._serial += 1
        clone = Clone(created.path, self.root / "clones" / f"{created.doc.id}-{self._serial}",
                      self.hub, self.hook_dirs)
        if branch:
            clone.switch(branch)
        return clone

    @property
    def hook_dirs(self) -> dict[str, Path]:
        """Hook folders for :meth:`Clone.push`: the installed pre-receive alone, or nothing."""
        only_pre, none = self.root / "hooks-pre-receive", self.root / "hooks-none"
        if not only_pre.is_dir():
            installed = [self.hub.registry_path / "hooks" / "pre-receive",
                         *self.hub.missions_dir.glob("*.git/hooks/pre-receive")]
            source = next(p for p in installed if p.is_file())
            none.mkdir()
            only_pre.mkdir()
            shutil.copy2(source, only_pre / "pre-receive")
        return {"pre-receive": only_pre, "none": none}


#: The external actors' key files, under ``<kit root>/keys/<actor>/``.
EXTERNAL = ("ext", "vera", "stranger")
_kit_template: list[Path] = []  # built once per process (each xdist worker), then copied


def make_kit(root: Path) -> Kit:
    """A hub at ``root/hub`` with the cast of actors and a funded client: a copy
    (:func:`copy_tree`, keys and all) of a kit built once per process by :func:`build_kit`."""
    if not _kit_template:
        top = Path(tempfile.mkdtemp(prefix="aismm-kit-"))
        atexit.register(shutil.rmtree, top, True)
        build_kit(top / "kit")
        _assert_relocatable(top / "kit" / "hub")
        _kit_template.append(top / "kit")
    template = _kit_template[0]
    copy_tree(template / "hub", root / "hub")
    shutil.copytree(template / "keys", root / "keys", symlinks=True)
    kit = Kit(Hub(root / "hub", clock=FixedClock(START)), root)
    kit.external = {actor: root / "keys" / actor / "id_ed25519" for actor in EXTERNAL}
    return kit


def build_kit(root: Path) -> Kit:
    """The kit itself: a new hub at ``root/hub`` with the cast (see the module's docstring)."""
    hub = init_hub(root / "hub", clock=FixedClock(START))
    kit = Kit(hub, root)
    kit.add_actor("alice", ["client"])
    kit.add_actor("bob", ["specialist"], "acme")
    kit.add_actor("dave", ["specialist"], "dave-co")
    kit.add_actor("rita", ["reviewer"], "qa-guild")
    kit.add_actor("sam", ["specialist", "reviewer"], "sam-co")
    kit.add_actor("rex", ["reviewer"], "acme")
    kit.add_actor("cal", ["reviewer"], "alice")
    kit.add_actor("ext", ["specialist"], external=True)
    kit.add_actor("vera", ["reviewer"], "vera-labs", external=True)
    kit.external["stranger"] = ssh_keygen(root / "keys" / "stranger" / "id_ed25519", "stranger")
    with Ledger(hub.db_path, hub.clock) as ledger:
        ledger.deposit("alice", 1_000_000, cause="seed")
    return kit


@contextmanager
def served(hub: Hub) -> Iterator[list[int]]:
    """The hub's hook socket answered from this process, by ``aismm serve``'s own socket
    server (:class:`aismm.serve.Server`'s listener alone: no loop, watcher or warm workers).

    The installed hooks then hand each push to it, as on a served hub: the real ``git``, the
    real hook client and socket, the gate judging in this (already warm) process instead of a
    fresh interpreter per push. Yields the list that grows by one per request answered."""
    from aismm.serve import Server  # noqa: PLC0415 - only the served kits need it

    server = Server(hub, lambda _line: None)
    listener = server._listen()
    handled: list[int] = []  # one entry per hook request answered (the caller may check)
    answer = listener.RequestHandlerClass

    class Counted(answer):  # type: ignore[valid-type,misc]  # a class made at runtime
        def handle(self) -> None:
            handled.append(1)
            super().handle()

    listener.RequestHandlerClass = Counted
    thread = threading.Thread(target=listener.serve_forever, daemon=True)
    thread.start()
    try:
        yield handled
    finally:
        listener.shutdown()
        listener.server_close()
        server.socket_path.unlink(missing_ok=True)
        thread.join()


def kit_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kit]:
    """Body of a module-scoped ``kit`` fixture: one hub per test module (the session's
    isolation from $HOME and the user's git config applies, see tests/conftest.py)."""
    yield make_kit(tmp_path_factory.mktemp("kit"))


def assessment_json(hub: Hub, agent: str) -> dict[str, object] | None:
    """The agent's latest assessment record as its JSON (what `agent show --json` prints)."""
    from aismm.state import registry  # noqa: PLC0415 - only the assessment tests need it

    record = registry.latest_assessment(hub, agent)
    return record.to_json() if record else None
