"""The served end-to-end path and what was cut from it for speed.

- A mission through `aismm serve` on a ``processing: daemon`` hub, as a hub runs in
  production: create → clone → deliver → push (answered at once) → the platform's verdict
  arrives on the attempt → merge into ``accepted`` → push → ``settled`` tag and paid escrow.
  The verdict and the tag are awaited by polling the mission's refs (what benchmarks/bench_flow.py
  measures).
- ``Repo.set_configs`` (a new mission's config in one write) reads back, through the git binary,
  exactly as ``Repo.set_config`` one key at a time.
- The contracts a resident process remembers per registry commit are never stale: a newly
  published version is what the next mission gets.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aismm.core.clock import FixedClock
from aismm.core.errors import RepositoryError
from aismm.core.refs import ACCEPTED, ATTEMPT, MAIN, SETTLED
from aismm.infra.git import Repo, read_refs
from aismm.infra.hub import HubConfig
from aismm.infra.ledger import Ledger
from aismm.services import mission, registrar
from aismm.services.hubs import init_hub
from aismm.state.provision import settings
from tests.conftest import git

ROOT = Path(__file__).resolve().parent.parent
TASK = ROOT / "contracts" / "code_review" / "benchmark" / "http_helpers"
NOW = "2026-01-01T00:00:00Z"


def _poll(ready, every: float = 0.005, bound: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    """Look every ``every`` seconds until ``ready()`` (True at once); ``bound`` only ends a
    hung run (False), it is never the wait a result relies on."""
    deadline = time.monotonic() + bound
    while not ready():
        if time.monotonic() >= deadline:
            return False
        time.sleep(every)
    return True


def _config(repo: Path, key: str) -> str:
    done = subprocess.run(["git", "--git-dir", str(repo), "config", "--get", key],
                          capture_output=True, text=True, check=False)
    return done.stdout.rstrip("\n") if done.returncode == 0 else f"<exit {done.returncode}>"


VALUES: dict[str, str | int | bool] = {
    "receive.fsckObjects": True, "receive.denyDeletes": False, "receive.maxInputSize": 67108864,
    "core.logAllRefUpdates": "always", "gc.auto": 0, "gpg.format": "ssh",
    "gpg.ssh.allowedSignersFile": '/a path/with "quotes" and \\back\\slashes;#=x',
}


def test_set_configs_reads_back_like_set_config(tmp_path: Path) -> None:
    one_by_one = Repo.init_bare(tmp_path / "a.git")
    for key, value in VALUES.items():
        one_by_one.set_config(key, value)
    at_once = Repo.init_bare(tmp_path / "b.git")
    at_once.set_configs(VALUES)
    for key in [*VALUES, "core.bare", "core.repositoryformatversion"]:
        assert _config(at_once.path, key) == _config(one_by_one.path, key), key
    assert _config(at_once.path, "gpg.ssh.allowedSignersFile") == VALUES[
        "gpg.ssh.allowedSignersFile"]
    assert _config(at_once.path, "receive.fsckObjects") == "true"
    # the repository still opens, and git accepts a push under those settings
    assert Repo(at_once.path).refs() == {}
    assert not (at_once.path / "config.lock").exists()


@pytest.mark.parametrize(("key", "value"), [
    ("gpg.ssh.allowedSignersFile", "two\nlines"),
    ("receive.fsck Objects", True),
    ('gpg.s"sh.allowedSignersFile', "x"),
    ("nosection", "x"),
])
def test_set_configs_refuses_what_it_cannot_write(tmp_path: Path, key: str,
                                                  value: str | bool) -> None:
    repo = Repo.init_bare(tmp_path / "r.git")
    before = (repo.path / "config").read_bytes()
    with pytest.raises(RepositoryError, match="config"):
        repo.set_configs({"gc.auto": 0, key: value})
    assert (repo.path / "config").read_bytes() == before  # nothing half written
    assert not (repo.path / "config.lock").exists()


@pytest.fixture(scope="module")
def daemon_hub(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A ``processing: daemon`` hub with an external specialist ``me`` and a client."""
    root = tmp_path_factory.mktemp("e2e")
    hub = init_hub(root / "hub", clock=FixedClock(NOW), config=HubConfig(processing="daemon"))
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / "me")],
                   check=True)
    registrar.add_actor(hub, "me", ["specialist"], "me-corp",
                        (root / "me.pub").read_text(), False)
    registrar.add_actor(hub, "alice", ["client"], None, None, True)
    with Ledger(hub.db_path, hub.clock) as ledger:
        ledger.deposit("alice", 100_000, cause="seed")  # every mission of this module
    return hub.root, root / "me"


def test_a_created_mission_has_the_receive_settings_in_its_config(
        daemon_hub: tuple[Path, Path]) -> None:
    from aismm.infra.hub import Hub

    hub = Hub(daemon_hub[0], FixedClock(NOW))
    created = mission.create(hub, contract_ref="contract.code_review", client="alice",
                             inputs=TASK / "inputs", price=100, tier="T0", agents=["me"])
    expect = {k: ("true" if v is True else str(v)) for k, v in
              settings(hub.config.limits.max_push_bytes).items()}
    expect |= {"gpg.format": "ssh", "gpg.ssh.allowedSignersFile": str(hub.allowed_signers_path)}
    assert {k: _config(created.path, k) for k in expect} == expect
    refs = read_refs(created.path)
    assert refs is not None and refs[MAIN] == refs[ACCEPTED] == refs[f"{ATTEMPT}me"]


def test_a_mission_end_to_end_through_serve_in_daemon_mode(
        daemon_hub: tuple[Path, Path], tmp_path: Path) -> None:
    from aismm.infra.hub import Hub

    hub = Hub(daemon_hub[0], FixedClock(NOW))
    key = daemon_hub[1]
    created = mission.create(hub, contract_ref="contract.code_review", client="alice",
                             inputs=TASK / "inputs", price=100, tier="T0", agents=["me"])
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "aismm", "--hub", str(hub.root), "serve", "--interval", "60"],
            stdout=out, stderr=out, env={**os.environ, "AISMM_NOW": NOW,
                                         "AISMM_WARM_WORKERS": "1"})
    try:
        assert _poll(lambda: proc.poll() is not None or "serving " in log.read_text()), \
            log.read_text()
        assert proc.poll() is None, log.read_text()
        clone = tmp_path / "clone"
        git("clone", "-q", "-b", "attempts/me", "-c", "gpg.format=ssh", "-c",
            f"user.signingkey={key}", "-c", "commit.gpgsign=true", str(created.path),
            str(clone))
        (clone / "deliverable").mkdir()
        for f in (TASK / "golden").iterdir():
            (clone / "deliverable" / f.name).write_bytes(f.read_bytes())
        git("add", "deliverable", cwd=clone)
        git("commit", "-q", "-m", "Deliver", cwd=clone)
        pushed = git("push", "origin", "attempts/me", cwd=clone)
        assert "queued for the hub" in pushed.stderr, pushed.stderr  # answered at once
        delivered = git("rev-parse", "HEAD:deliverable", cwd=clone).stdout.strip()
        repo = Repo(created.path)

        def verdict() -> bytes | None:
            tip = (read_refs(created.path) or {}).get(f"{ATTEMPT}me")
            return repo.read(tip, "verdicts/platform.yaml") if tip else None

        assert _poll(lambda: verdict() is not None), log.read_text()
        text = verdict() or b""
        assert f"deliverable_tree: {delivered}".encode() in text
        assert b"verdict: pass" in text

        git("fetch", "-q", cwd=clone)
        git("switch", "-q", "accepted", cwd=clone)
        git("-c", f"user.signingkey={hub.key_path('alice')}", "merge", "-q", "--no-ff", "-S",
            "-m", "Accept", "origin/attempts/me", cwd=clone)
        accepted = git("push", "origin", "accepted", cwd=clone)
        assert "queued for the hub" in accepted.stderr, accepted.stderr
        assert _poll(lambda: SETTLED in (read_refs(created.path) or {})), log.read_text()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    with Ledger(hub.db_path, hub.clock) as ledger:
        assert ledger.balance(f"escrow:{created.doc.id}") == 0
        assert ledger.balance("provider:me-corp") == created.doc.price
        assert ledger.closure(created.doc.id) is not None
    tag = Repo(created.path).tag(read_refs(created.path)[SETTLED])  # type: ignore[index]
    assert tag.target == git("rev-parse", "HEAD", cwd=clone).stdout.strip()
    assert "warm sandbox workers ran" in log.read_text()


def test_contracts_remembered_per_registry_commit_follow_a_new_version(
        daemon_hub: tuple[Path, Path]) -> None:
    from aismm.infra.hub import Hub

    hub = Hub(daemon_hub[0], FixedClock(NOW))
    first = mission.create(hub, contract_ref="contract.code_review", client="alice",
                           inputs=TASK / "inputs", price=100, tier="T0", agents=["me"])
    assert first.doc.contract.ref == "contract.code_review@1.0.0"
    registry = Repo(hub.registry_path)
    tip = registry.ref(MAIN)
    assert tip is not None
    base = "contracts/contract.code_review/1.0.0/"
    files = {p.replace("/1.0.0/", "/1.1.0/", 1): registry.blob(e.oid)
             for p, e in registry.flatten(tip).items() if p.startswith(base)}
    doc = f"{base.replace('1.0.0', '1.1.0')}contract.yaml"
    files[doc] = files[doc].replace(b"version: 1.0.0", b"version: 1.1.0")
    assert b"version: 1.1.0" in files[doc]
    registrar.commit_files(hub, dict(files), "Publish code_review 1.1.0\n",
                           hub.config.platform)
    second = mission.create(hub, contract_ref="contract.code_review", client="alice",
                            inputs=TASK / "inputs", price=100, tier="T0", agents=["me"])
    assert second.doc.contract.ref == "contract.code_review@1.1.0"
    again = mission.create(hub, contract_ref="contract.code_review@1.0.0", client="alice",
                           inputs=TASK / "inputs", price=100, tier="T0", agents=["me"])
    assert again.doc.contract.sha256 == first.doc.contract.sha256


def _serve(hub_root: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "aismm", "--hub", str(hub_root), "serve", "--interval", "60"],
            stdout=out, stderr=out, env={**os.environ, "AISMM_NOW": NOW,
                                         "AISMM_WARM_WORKERS": "0"})
    assert _poll(lambda: proc.poll() is not None or "serving " in log.read_text()), \
        log.read_text()
    assert proc.poll() is None, log.read_text()
    return proc


def test_a_mission_created_while_serve_runs_is_watched_once_renamed_into_place(
        daemon_hub: tuple[Path, Path], tmp_path: Path) -> None:
    """The repository being built (``missions/.tmp-*.git``) is not watched; the mission it
    becomes is: a ref deleted, or written in place, behind the gate there is put back without
    waiting for a sweep (the interval is 60 s). The watches ask for writes only (serve.WRITES),
    and those two writes are among them."""
    from aismm.infra.hub import Hub

    hub = Hub(daemon_hub[0], FixedClock(NOW))
    log = tmp_path / "serve.log"
    proc = _serve(hub.root, log)
    try:
        threads = len(os.listdir(f"/proc/{proc.pid}/task"))
        made = [mission.create(hub, contract_ref="contract.code_review", client="alice",
                               inputs=TASK / "inputs", price=100, tier="T0", agents=["me"])
                for _ in range(3)]
        created = made[-1]
        bare = str(created.path)
        git("--git-dir", bare, "update-ref", "refs/heads/accepted", created.main)  # unchanged
        git("--git-dir", bare, "update-ref", "-d", "refs/heads/accepted")
        assert _poll(lambda: (read_refs(created.path) or {}).get(ACCEPTED) == created.main), \
            log.read_text()
        assert _poll(lambda: "deleted without the gate" in log.read_text()), log.read_text()
        # written in place (no lock, no rename), to a commit this repository does not hold
        foreign = made[0].main
        assert foreign != created.main
        (created.path / "refs" / "heads" / "accepted").write_text(foreign + "\n")
        assert _poll(lambda: (read_refs(created.path) or {}).get(ACCEPTED) == created.main), \
            log.read_text()
        # two watches (refs/ and the folder itself) per mission, none for the staging folder
        assert len(os.listdir(f"/proc/{proc.pid}/task")) <= threads + 2 * len(made)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)


def test_a_policy_remembered_per_main_commit_follows_main(daemon_hub: tuple[Path, Path],
                                                          tmp_path: Path) -> None:
    """load_policy is remembered per ``main`` commit id: a repository whose main moves (here a
    copy of a mission, moved by hand) reads the new commit's policy, never the remembered one."""
    import shutil

    from aismm.infra.hub import Hub
    from aismm.state.policy import load_policy
    from aismm.state.registry import identity

    hub = Hub(daemon_hub[0], FixedClock(NOW))
    created = mission.create(hub, contract_ref="contract.code_review", client="alice",
                             inputs=TASK / "inputs", price=100, tier="T0", agents=["me"])
    before = load_policy(Repo(created.path))
    assert before is not None and before.doc.price == 100 and before.main == created.main
    copy = Repo(Path(shutil.copytree(created.path, tmp_path / "copy.git", symlinks=True)))
    raw = copy.read(created.main, "mission.yaml")
    assert raw is not None and b"price: 100\n" in raw
    tree = copy.build_tree(copy.tree_of(created.main),
                           {"mission.yaml": raw.replace(b"price: 100\n", b"price: 150\n")})
    moved = copy.write_commit(tree=tree, parents=[created.main], message="reprice\n",
                              key=hub.hosted_key("alice"), who=identity("alice"),
                              when=hub.clock.now())
    copy.update_ref(MAIN, moved, created.main)
    after = load_policy(Repo(copy.path))
    assert after is not None and after.main == moved and after.doc.price == 150
    again = load_policy(Repo(created.path))
    assert again is not None and again.doc.price == 100 and again.main == created.main


def test_export_writes_a_checkout_into_a_folder_it_makes(daemon_hub: tuple[Path, Path],
                                                         tmp_path: Path) -> None:
    """Repo.export (what a DoD check, a reviewer and a benchmark score read) makes ``dest``
    and every folder, and writes each regular file of the commit with its bytes."""
    from aismm.infra.hub import Hub

    hub = Hub(daemon_hub[0], FixedClock(NOW))
    created = mission.create(hub, contract_ref="contract.code_review", client="alice",
                             inputs=TASK / "inputs", price=100, tier="T0", agents=["me"])
    repo = Repo(created.path)
    dest = tmp_path / "not" / "yet" / "checkout"
    written = repo.export(created.main, dest)
    assert set(written) == set(repo.flatten(created.main)) >= {"README.md", "mission.yaml",
                                                               "inputs/src/client.py"}
    on_disk = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()}
    assert on_disk == set(written)
    for path, oid in written.items():
        assert (dest / path).read_bytes() == repo.blob(oid)
