"""``aismm import``: a working hub from an export, atomically, once; round trip and crashes."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from aismm.core.clock import FixedClock
from aismm.core.signing import verify as verify_signature
from aismm.infra.hub import Hub
from aismm.infra.ledger import Ledger
from aismm.infra.store import Store
from aismm.services import client, export, lifecycle, registrar
from tests.hubkit import copy_tree
from tests.settlekit import AGENT, CLIENT, START, Site, run_git
from tests.test_export import PASS, build_source, cli, rebuild

#: Manifest fields that may differ between an export and the export of its import: a bundle's
#: bytes depend on how its repository stores its objects (the pack's delta choices), not on
#: what it holds; the refs (and so every object id) are compared instead.
LOCATION_FREE_EXCEPT = ("files[repos/*.bundle]",)


@pytest.fixture(scope="module")
def source(settle_template: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> tuple[Site, dict[str, str]]:
    return build_source(settle_template, tmp_path_factory.mktemp("import-src") / "src")


@pytest.fixture(scope="module")
def archive(source: tuple[Site, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
            ) -> Path:
    dest = tmp_path_factory.mktemp("import-archive") / "hub.tar.gz"
    done = cli("export", str(dest), "--include-secrets", "--passphrase-env", "PASS",
               hub=source[0].root, PASS=PASS)
    assert done.returncode == 0, done.stderr
    return dest


def _manifest(path: Path) -> dict[str, Any]:
    with tarfile.open(path, "r:gz") as tar:
        handle = tar.extractfile(export.MANIFEST)
        assert handle is not None
        data: dict[str, Any] = json.loads(handle.read())
    return data


def _facts(hub: Hub, missions: dict[str, str]) -> dict[str, Any]:
    with Ledger(hub.db_path) as ledger:
        balances = ledger.balances()
    with Store(hub.db_path) as store:
        execs = store.executions()
    return {"states": {m: lifecycle.status(hub, m)["state"] for m in missions.values()},
            "balances": balances,
            "reputation": export.reputations(execs, hub.clock.now())}


def test_round_trip_keeps_every_status_balance_and_reputation(
        source: tuple[Site, dict[str, str]], archive: Path, tmp_path: Path) -> None:
    site, missions = source
    done = cli("import", str(archive), str(tmp_path / "hub"), "--passphrase-env", "PASS",
               "--json", PASS=PASS)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert (data["imported"], data["repos"], data["keys"]) == (True, 4, len(list(
        site.hub.keys_dir.glob("*.key"))))
    again = cli("export", str(tmp_path / "again.tar.gz"), hub=tmp_path / "hub")
    assert again.returncode == 0, again.stderr
    first = cli("export", str(tmp_path / "first.tar.gz"), hub=site.root)
    assert first.returncode == 0, first.stderr
    a, b = _manifest(tmp_path / "first.tar.gz"), _manifest(tmp_path / "again.tar.gz")
    strip = {f: v for f, v in a["files"].items() if not f.startswith("repos/")}
    assert strip == {f: v for f, v in b["files"].items() if not f.startswith("repos/")}
    assert set(a["files"]) == set(b["files"])
    assert {k: v for k, v in a.items() if k != "files"} == \
        {k: v for k, v in b.items() if k != "files"}
    imported = Hub(tmp_path / "hub", clock=site.clock)
    assert _facts(imported, missions) == _facts(site.hub, missions)
    assert cli("verify", str(tmp_path / "hub")).returncode == 0


def test_the_imported_hub_works(source: tuple[Site, dict[str, str]], archive: Path,
                                tmp_path: Path) -> None:
    site, missions = source
    assert cli("import", str(archive), str(tmp_path / "hub"), "--passphrase-env", "PASS",
               PASS=PASS).returncode == 0
    clock = FixedClock(START)
    there = Site(Hub(tmp_path / "hub", clock=clock), clock)
    # hooks and config point at the new place, never at the source hub
    for repo in (there.root / "missions").glob("*.git"):
        assert str(site.root) not in (repo / "config").read_text()
    assert f"allowedsignersfile = {there.root}/allowed_signers" in \
        (there.hub.mission_path(missions["open"]) / "config").read_text().lower()
    # a bad push (unsigned) is refused by the hooks
    clone = tmp_path / "clone"
    run_git("clone", "-q", "--branch", f"attempts/{AGENT}",
            str(there.hub.mission_path(missions["open"])), str(clone))
    (clone / "deliverable").mkdir(exist_ok=True)
    (clone / "deliverable" / "x.txt").write_text("unsigned\n")
    run_git("add", "-A", cwd=clone)
    run_git("commit", "-q", "-m", "unsigned", cwd=clone)
    pushed = run_git("push", "origin", f"HEAD:refs/heads/attempts/{AGENT}", cwd=clone,
                     env={"AISMM_NOW": there.now()}, check=False)
    assert pushed.returncode != 0, pushed.stderr
    assert "not signed" in pushed.stderr or "unsigned" in pushed.stderr, pushed.stderr
    # a new mission is created, delivered, assessed and settled
    mid = there.create()
    lines = there.deliver(mid)
    assert any("PASS" in line for line in lines), lines
    assert there.status(mid)["state"] == "awaiting_acceptance"
    client.accept(there.hub, mid, AGENT)
    assert there.status(mid)["state"] == "settled"
    assert there.signed_by(mid, "tag", "refs/tags/settled") == "platform@aismm.invalid"
    checked = cli("ledger", "check", hub=there.root)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert there.balance(f"client:{CLIENT}") < site.balance(f"client:{CLIENT}")


def test_import_is_idempotent_and_refuses_an_older_state(
        source: tuple[Site, dict[str, str]], archive: Path, tmp_path: Path) -> None:
    site, _ = source
    newer_hub = Hub(copy_tree(site.root, tmp_path / "copy"), clock=FixedClock(START))
    with Ledger(newer_hub.db_path, newer_hub.clock) as ledger:
        ledger.deposit(CLIENT, 7, cause="newer")
    newer = tmp_path / "newer.tar.gz"
    assert cli("export", str(newer), hub=newer_hub.root).returncode == 0
    target = tmp_path / "hub"
    assert cli("import", str(newer), str(target)).returncode == 0
    again = cli("import", str(newer), str(target))
    assert (again.returncode, again.stdout.strip()) == (
        0, f"{target} already holds this export; nothing to do")
    older = cli("import", str(archive), str(target), "--passphrase-env", "PASS", PASS=PASS)
    assert older.returncode == 1
    assert older.stderr.startswith(f"aismm: import: {archive.name}: its state position ")
    assert "is older than the one" in older.stderr and len(older.stderr.splitlines()) == 1
    with Ledger(target / "hub.db") as ledger:
        assert ledger.balance(f"client:{CLIENT}") == newer_hub_balance(newer_hub)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".hub.")] == []


def newer_hub_balance(hub: Hub) -> int:
    with Ledger(hub.db_path) as ledger:
        return ledger.balance(f"client:{CLIENT}")


def test_a_copy_that_fails_verify_is_not_imported(archive: Path, tmp_path: Path) -> None:
    bad = rebuild(archive, tmp_path / "bad.tar.gz", None,
                  lambda folder, manifest: (folder / "ledger/closures.ndjson").write_text("{}\n"))
    done = cli("import", str(bad), str(tmp_path / "hub"))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "aismm: import: bad.tar.gz: verify failed at inventory: ledger/closures.ndjson: size "
        "differs from the manifest; nothing was imported"]
    assert not (tmp_path / "hub").exists()


@pytest.mark.parametrize("point", ["repos", "database", "before-rename", "after-rename"])
def test_a_killed_import_leaves_the_target_absent_or_complete(
        archive: Path, tmp_path: Path, point: str) -> None:
    target = tmp_path / "hub"
    done = cli("import", str(archive), str(target), "--passphrase-env", "PASS", PASS=PASS,
               AISMM_CRASH_AT=f"import:{point}")
    assert done.returncode == -9
    if point == "after-rename":
        assert cli("verify", str(target)).returncode == 0
    else:
        assert not target.exists()
    finished = cli("import", str(archive), str(target), "--passphrase-env", "PASS", PASS=PASS)
    assert finished.returncode == 0, finished.stderr
    assert cli("verify", str(target)).returncode == 0


def test_a_replacement_killed_between_renames_leaves_the_target_absent(
        source: tuple[Site, dict[str, str]], archive: Path, tmp_path: Path) -> None:
    target = tmp_path / "hub"
    assert cli("import", str(archive), str(target), "--passphrase-env", "PASS",
               PASS=PASS).returncode == 0
    newer_hub = Hub(copy_tree(source[0].root, tmp_path / "copy"), clock=FixedClock(START))
    with Ledger(newer_hub.db_path, newer_hub.clock) as ledger:
        ledger.deposit(CLIENT, 3, cause="newer")
    newer = tmp_path / "newer.tar.gz"
    assert cli("export", str(newer), hub=newer_hub.root).returncode == 0
    done = cli("import", str(newer), str(target), AISMM_CRASH_AT="import:between-renames")
    assert done.returncode == -9 and not target.exists()
    assert cli("import", str(newer), str(target)).returncode == 0
    with Ledger(target / "hub.db") as ledger:
        assert ledger.balance(f"client:{CLIENT}") == newer_hub_balance(newer_hub)


def test_a_buyout_founds_a_standalone_hub_with_its_own_platform_key(
        source: tuple[Site, dict[str, str]], tmp_path: Path) -> None:
    site, missions = source
    registry_before = run_git("for-each-ref", cwd=site.hub.registry_path).stdout
    archive = tmp_path / "carol.tar.gz"
    done = cli("export", str(archive), "--scope", f"client:{CLIENT}", "--include-secrets",
               "--passphrase-env", "PASS", hub=site.root, PASS=PASS)
    assert done.returncode == 0, done.stderr
    assert run_git("for-each-ref", cwd=site.hub.registry_path).stdout == registry_before
    manifest = _manifest(archive)
    old_key = site.hub.hosted_key("platform").public_line
    assert manifest["platform_key"] == old_key != manifest["handover"]["platform_key"]
    assert cli("verify", str(archive)).returncode == 0
    target = tmp_path / "mine"
    assert cli("import", str(archive), str(target), "--passphrase-env", "PASS",
               PASS=PASS).returncode == 0
    clock = FixedClock(START)
    there = Site(Hub(target, clock=clock), clock)
    assert there.hub.hosted_key("platform").public_line == manifest["handover"]["platform_key"]
    assert sorted(p.name for p in there.hub.keys_dir.glob("*.key")) == [
        f"{CLIENT}.key", "platform.key"]
    # the old platform's signatures stay valid; the new key signs from now on
    settled = missions["settled"]
    assert there.signed_by(settled, "tag", "refs/tags/settled") == "platform@aismm.invalid"
    clock.advance("PT1H")
    open_ = missions["open"]
    client.accept(there.hub, open_, AGENT)
    assert there.status(open_)["state"] == "settled"
    tag = there.refs(open_)["refs/tags/settled"]
    raw = run_git("cat-file", "tag", tag, cwd=there.hub.mission_path(open_)).stdout
    signed = raw[raw.index("-----BEGIN SSH SIGNATURE-----"):]
    payload = raw[:raw.index("-----BEGIN SSH SIGNATURE-----")].encode()
    assert verify_signature(signed, payload).split()[:2] == \
        manifest["handover"]["platform_key"].split()[:2]
    assert there.signed_by(open_, "tag", "refs/tags/settled") == "platform@aismm.invalid"
    checked = cli("verify", str(target))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_an_export_behind_what_the_hub_did_since_its_import_is_refused(
        source: tuple[Site, dict[str, str]], archive: Path, tmp_path: Path) -> None:
    site, _ = source
    target = tmp_path / "hub"
    assert cli("import", str(archive), str(target), "--passphrase-env", "PASS",
               PASS=PASS).returncode == 0
    with Ledger(target / "hub.db") as ledger:  # the imported hub moves on
        ledger.deposit(CLIENT, 9, cause="after-import")
    later = Hub(copy_tree(site.root, tmp_path / "copy"), clock=FixedClock(START))
    registrar.add_actor(later, "late", ["client"], None, None, True)  # newer log, same ledger
    newer = tmp_path / "newer.tar.gz"
    assert cli("export", str(newer), hub=later.root).returncode == 0
    refused = cli("import", str(newer), str(target))
    assert refused.returncode == 1
    assert "is older than the one" in refused.stderr and len(refused.stderr.splitlines()) == 1
    with Ledger(target / "hub.db") as ledger:
        assert ledger.find_deposit(CLIENT, "after-import") is not None  # nothing was lost
