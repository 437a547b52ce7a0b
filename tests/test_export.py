"""``aismm export``: one signed, reproducible archive of a hub (or one client's share).

The source hub (built once per module from the session's settlement template) has a settled
mission, a refunded one and one awaiting acceptance; tests/test_verify.py and
tests/test_import.py reuse :func:`build_source` and :func:`rebuild`.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import pty
import select
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aismm.core.envelope import seal
from aismm.core.signing import PrivateKey
from aismm.infra.ledger import Ledger
from aismm.services import client, export, mission, registrar, settlement
from tests.clikit import call
from tests.hubkit import copy_hub
from tests.settlekit import AGENT, CLIENT, REVIEW, REVIEW_INPUTS, Site, make_site, run_git

PASS = "correct horse battery staple"


def build_source(template: Path, root: Path) -> tuple[Site, dict[str, str]]:
    """A hub with a settled, a refunded and an open (awaiting acceptance) mission."""
    root.mkdir(parents=True)
    site = make_site(template, root)
    settled = site.create()
    site.deliver(settled)
    client.accept(site.hub, settled, AGENT)
    refunded = site.create()
    settlement.cancel(site.hub, refunded)
    open_ = site.create()
    site.deliver(open_)
    return site, {"settled": settled, "refunded": refunded, "open": open_}


def cli(*args: str, hub: Path | None = None, now: str = "2026-01-01T00:00:00Z",
        **env: str) -> subprocess.CompletedProcess[str]:
    """``aismm ARGS`` with ``env`` set: ``main()`` in this process, or a subprocess for a call
    that sets a crash point (it kills the process)."""
    head = ["--hub", str(hub)] if hub else []
    done = call([*head, *args], {"AISMM_NOW": now, "AISMM_DEBUG": None, **env})
    return subprocess.CompletedProcess(["aismm", *head, *args], done.code, done.out, done.err)


def unpack(archive: Path, dest: Path) -> dict[str, Any]:
    """Extract an export (trusted: our own) into ``dest``; its manifest."""
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(dest, filter="data")
    manifest: dict[str, Any] = json.loads((dest / export.MANIFEST).read_bytes())
    return manifest


def rebuild(archive: Path, dest: Path, key: PrivateKey | None,
            mutate: Callable[[Path, dict[str, Any]], None],
            extra: tuple[tuple[tarfile.TarInfo, bytes], ...] = ()) -> Path:
    """A copy of ``archive`` at ``dest`` changed by ``mutate(folder, manifest)``: with
    ``key`` the manifest is re-inventoried and re-signed (an attacker holding that key),
    without it the files change under the original signed manifest. ``extra`` adds raw
    tar members (symlinks, odd names)."""
    folder = dest.parent / f"{dest.name}.d"
    manifest = unpack(archive, folder)
    mutate(folder, manifest)
    if key is not None:
        manifest["files"] = {rel: entry.model_dump()
                             for rel, entry in export.inventory(folder).items()}
        body = export.canonical(manifest)
        (folder / export.MANIFEST).write_bytes(body)
        (folder / export.ENVELOPE).write_bytes(seal(body, export.PAYLOAD_TYPE, key))
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    with tarfile.open(dest, "w:gz") as tar:
        for rel in names:
            tar.add(folder / rel, arcname=rel)
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return dest


@pytest.fixture(scope="module")
def source(settle_template: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> tuple[Site, dict[str, str]]:
    return build_source(settle_template, tmp_path_factory.mktemp("export-src") / "src")


def test_two_exports_of_an_unchanged_hub_are_byte_identical(
        source: tuple[Site, dict[str, str]], tmp_path: Path) -> None:
    site, _ = source
    first = cli("export", str(tmp_path / "a.tar.gz"), "--json", hub=site.root)
    second = cli("export", str(tmp_path / "b.tar.gz"), hub=site.root)
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()
    data = json.loads(first.stdout)
    assert (data["scope"], data["repos"], data["secrets"]) == ("hub", 4, False)
    assert second.stdout.startswith(f"Exported hub to {tmp_path / 'b.tar.gz'}: 4 repositories")


def test_the_archive_is_reproducible_by_construction_and_lists_every_file(
        source: tuple[Site, dict[str, str]], tmp_path: Path) -> None:
    site, missions = source
    archive = tmp_path / "hub.tar.gz"
    export.export_hub(site.hub, archive)
    raw = archive.read_bytes()
    assert raw[4:8] == b"\0\0\0\0"  # gzip mtime 0
    with tarfile.open(archive, "r:gz") as tar:
        members = tar.getmembers()
        manifest = json.loads(tar.extractfile(export.MANIFEST).read())  # type: ignore[union-attr]
    names = [m.name for m in members]
    assert names == sorted(names)
    assert {(m.uid, m.gid, m.uname, m.gname, m.mode, m.mtime) for m in members} == {
        (0, 0, "", "", 0o644, manifest["position"]["time"])}
    assert set(names) == {*manifest["files"], export.MANIFEST, export.ENVELOPE}
    for mid in missions.values():
        assert f"repos/missions/{mid}.bundle" in names
    with Ledger(site.hub.db_path) as ledger:
        assert manifest["ledger"]["balances"] == ledger.balances()
        assert manifest["position"]["transfer"] == ledger.history()[-1].seq
    assert manifest["repos"][f"missions/{missions['settled']}.git"]["refs"] == \
        site.refs(missions["settled"])
    assert {"VERIFY.md", "roster/allowed_signers", "ledger/transfers.ndjson",
            "state/executions.ndjson", "state/log.ndjson"} <= set(names)


def test_export_moves_with_the_hub(source: tuple[Site, dict[str, str]], tmp_path: Path
                                   ) -> None:
    site, _ = source
    before = export.export_hub(site.hub, tmp_path / "a.tar.gz")
    with Ledger(site.hub.db_path, site.hub.clock) as ledger:
        ledger.deposit(CLIENT, 5, cause="export-test")
    try:
        after = export.export_hub(site.hub, tmp_path / "b.tar.gz")
    finally:
        pass
    assert after.position.transfer == before.position.transfer + 1
    assert after.digest != before.digest


def test_secrets_travel_only_encrypted(source: tuple[Site, dict[str, str]], tmp_path: Path
                                       ) -> None:
    site, _ = source
    archive = tmp_path / "s.tar.gz"
    done = cli("export", str(archive), "--include-secrets", "--passphrase-env", "PASS",
               hub=site.root, PASS=PASS)
    assert done.returncode == 0, done.stderr
    with gzip.open(archive) as handle:
        plain = handle.read()
    assert b"PRIVATE KEY" not in plain and b"secrets/keys.enc" in plain
    key = site.hub.key_path(site.hub.config.platform).read_text()
    assert key.split("\n")[1].encode() not in plain
    keys = export.decrypt_secrets(unpack(archive, tmp_path / "x") and
                                  (tmp_path / "x" / export.SECRETS).read_bytes(),
                                  PASS.encode())
    assert keys["platform.key"] == key


@pytest.mark.parametrize(("args", "line"), [
    (("export", "/nonexistent/dir/a.tar.gz"),
     "aismm: /nonexistent/dir/a.tar.gz: folder /nonexistent/dir does not exist; create it first"),
    (("export", "x.tar.gz", "--scope", "team:x"),
     "aismm: --scope team:x: not a scope; use hub or client:<id>"),
    (("export", "x.tar.gz", "--scope", "client:nobody"),
     "aismm: --scope client:nobody: no actor nobody in this hub; see `aismm actor list`"),
    (("export", "x.tar.gz", "--include-secrets", "--passphrase-env", "UNSET_VAR_X"),
     "aismm: --passphrase-env UNSET_VAR_X: the variable is unset or empty; export it with the "
     "passphrase"),
])
def test_bad_export_input_is_one_line_and_exit_2(source: tuple[Site, dict[str, str]],
                                                 tmp_path: Path, args: tuple[str, ...],
                                                 line: str) -> None:
    site, _ = source
    done = subprocess.run([sys.executable, "-m", "aismm", "--hub", str(site.root), *args],
                          capture_output=True, text=True, cwd=tmp_path, check=False)
    assert (done.returncode, done.stderr.splitlines()) == (2, [line])
    assert not list(tmp_path.iterdir())


def test_a_client_scope_export_holds_nothing_of_another_client(
        source: tuple[Site, dict[str, str]], tmp_path: Path) -> None:
    site, missions = source
    other = copy_hub(site.root, tmp_path / "two", clock=site.clock)
    registrar.add_actor(other, "dora", ["client"], None, None, True)
    with Ledger(other.db_path, other.clock) as ledger:
        ledger.deposit("dora", 5000, cause="seed-dora")
    hers = mission.create(other, contract_ref=REVIEW, client="dora", inputs=REVIEW_INPUTS,
                          price=None, agents=[AGENT]).doc.id
    settlement.cancel(other, hers)
    archive = tmp_path / "carol.tar.gz"
    done = cli("export", str(archive), "--scope", f"client:{CLIENT}", "--include-secrets",
               "--passphrase-env", "PASS", hub=other.root, PASS=PASS)
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "x"
    manifest = unpack(archive, folder)
    assert set(manifest["repos"]) == {"registry.git", *(f"missions/{m}.git"
                                                        for m in missions.values())}
    assert manifest["scope"] == f"client:{CLIENT}"
    # the registry (the public roster every signature is checked against) is shared; nothing
    # else of dora's travels: no mission, no ledger row, no execution, no key
    shared = {"repos/registry.bundle", "roster/actors.json", "roster/allowed_signers"}
    for rel in manifest["files"]:
        if rel not in shared and rel != export.SECRETS:
            data = (folder / rel).read_bytes()
            assert b"dora" not in data and hers.encode() not in data, rel
    keys = export.decrypt_secrets((folder / export.SECRETS).read_bytes(), PASS.encode())
    assert sorted(keys) == [f"{CLIENT}.key", "platform.key"]  # the client's, and a new platform's
    assert keys[f"{CLIENT}.key"] == other.key_path(CLIENT).read_text()
    assert keys["platform.key"] != other.key_path("platform").read_text()
    assert all(CLIENT in f"{t['debit']} {t['credit']}" or t["mission"] in missions.values()
               for t in map(json.loads,
                            (folder / "ledger/transfers.ndjson").read_text().splitlines()))
    verified = cli("verify", str(archive))
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_terminal_gets_a_progress_bar_and_a_pipe_does_not(
        source: tuple[Site, dict[str, str]], tmp_path: Path) -> None:
    site, _ = source
    main, side = pty.openpty()
    env = {**os.environ, "AISMM_NOW": "2026-01-01T00:00:00Z"}
    done = subprocess.run([sys.executable, "-m", "aismm", "--hub", str(site.root), "export",
                           str(tmp_path / "t.tar.gz")], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=side, env=env, timeout=300,
                          check=False)
    os.close(side)
    shown = b""
    while select.select([main], [], [], 0)[0]:
        try:
            chunk = os.read(main, 1 << 16)
        except OSError:  # the other side is closed and drained
            break
        if not chunk:
            break
        shown += chunk
    os.close(main)
    assert done.returncode == 0
    assert b"export bundle" in shown and b"100%" in shown
    piped = cli("export", str(tmp_path / "p.tar.gz"), hub=site.root)
    assert piped.stderr == ""


def test_a_write_during_the_export_makes_it_read_again(
        source: tuple[Site, dict[str, str]], tmp_path: Path) -> None:
    """A registry write lands while the bundles are being written: the first reading is
    thrown away and the archive holds the hub as it is after the write, consistently."""
    site, _ = source
    hub = copy_hub(site.root, tmp_path / "hub", clock=site.clock)
    landed: list[str] = []

    def meanwhile(what: str, done: int, total: int) -> None:
        if not landed:
            landed.append(registrar.add_actor(hub, "late", ["client"], None, None, True).id)

    export.export_hub(hub, tmp_path / "e.tar.gz", progress=meanwhile)
    manifest = unpack(tmp_path / "e.tar.gz", tmp_path / "x")
    assert landed == ["late"]
    assert "late" in json.loads((tmp_path / "x" / "roster/actors.json").read_text())
    assert manifest["repos"]["registry.git"]["refs"]["refs/heads/main"] == \
        run_git("rev-parse", "main", cwd=hub.registry_path).stdout.strip()
    verified = cli("verify", str(tmp_path / "e.tar.gz"))
    assert verified.returncode == 0, verified.stdout
