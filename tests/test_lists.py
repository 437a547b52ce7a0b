"""`mission list` at scale: a mission's refs stamped by the files that hold them (one lstat per
file and folder, no read while the stamp holds), every way a ref can change showing in the
stamp, a ref moved under a stamp judged before it is listed, typed rows, and `--json` written
byte for byte as ``json.dumps(indent=2, sort_keys=True)`` writes it.

Real git repositories and the real `git` binary, real hubs (the settlement template, copied),
real SQLite. The stamp's settling rule (a stamp is kept once its newest file is older than the
file system's timestamp granularity) is set per test through ``lifecycle._SETTLE_NS``, so no
test waits for files to age.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aismm.cli.mission import rows_json
from aismm.core.signing import generate_key
from aismm.infra.git import Repo, read_refs, ref_files, ref_stamp, stamp_newest
from aismm.infra.store import CachedSummary, Store
from aismm.services import lifecycle
from aismm.state import registry
from tests.clikit import run
from tests.settlekit import AGENT, CLIENT, Site, make_site, run_git

ALWAYS = -(10**18)  # every stamp counts as settled
NEVER = 10**18  # no stamp counts as settled


@pytest.fixture()
def site(settle_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Site:
    registry.forget()
    monkeypatch.setattr(lifecycle, "_SETTLE_NS", ALWAYS)
    return make_site(settle_template, tmp_path)


def _summaries(site: Site) -> dict[str, CachedSummary]:
    with Store(site.hub.db_path) as store:
        return store.summaries()


def _in_place(path: Path, data: bytes) -> None:
    """Overwrite ``path`` in place (same inode), as ``echo > file`` does, until its ctime
    shows the write (at most one tick of the file system's clock)."""
    before = os.lstat(path)
    while True:
        with open(path, "r+b") as handle:
            handle.write(data)
            handle.truncate()
        after = os.lstat(path)
        if after.st_ctime_ns != before.st_ctime_ns:
            break
    assert after.st_ino == before.st_ino and after.st_size == before.st_size


def _bare(tmp_path: Path) -> tuple[Path, list[str]]:
    """A bare repository with main and attempts/a, and three commit ids."""
    bare, work = tmp_path / "r.git", tmp_path / "w"
    run_git("init", "-q", "--bare", str(bare))
    run_git("clone", "-q", str(bare), str(work))
    oids = []
    for n in range(3):
        run_git("commit", "-q", "--allow-empty", "-m", f"c{n}", cwd=work)
        oids.append(run_git("rev-parse", "HEAD", cwd=work).stdout.strip())
        run_git("push", "-q", "origin", f"HEAD:refs/heads/c{n}", cwd=work)
    run_git("push", "-q", "origin", f"{oids[0]}:refs/heads/main",
            f"{oids[0]}:refs/heads/attempts/a", cwd=work)
    return bare, oids


def _stamp(bare: Path) -> tuple[list[str], str]:
    files = ref_files(bare)
    assert files is not None
    stamp = ref_stamp(str(bare), files)
    assert stamp is not None
    return files, stamp


def test_ref_files_names_every_folder_and_loose_ref(tmp_path: Path) -> None:
    bare, _oids = _bare(tmp_path)
    (bare / "refs" / "heads" / "main.lock").write_text("0" * 40 + "\n")  # a write under way
    assert ref_files(bare) == [".", "refs", "refs/heads", "refs/heads/attempts",
                               "refs/heads/attempts/a", "refs/heads/c0", "refs/heads/c1",
                               "refs/heads/c2", "refs/heads/main", "refs/tags"]
    files, stamp = _stamp(bare)
    assert ref_stamp(str(bare), files) == stamp  # nothing moved: the same stamp
    newest = max(os.lstat(bare / name).st_ctime_ns for name in files)
    assert stamp_newest(stamp) == newest
    (bare / "refs" / "heads" / "main.lock").unlink()
    run_git("pack-refs", "--all", cwd=bare)
    assert ref_files(bare) == ["packed-refs", "refs", "refs/heads", "refs/tags"]


@pytest.mark.parametrize("change", ["in place", "update-ref", "new ref", "deleted",
                                    "pack-refs", "packed in place", "packed update"])
def test_every_way_a_ref_changes_changes_the_stamp(tmp_path: Path, change: str) -> None:
    bare, oids = _bare(tmp_path)
    if change in ("packed in place", "packed update"):
        run_git("pack-refs", "--all", cwd=bare)
    files, stamp = _stamp(bare)
    refs = read_refs(bare)
    main = bare / "refs" / "heads" / "main"
    if change == "in place":
        _in_place(main, f"{oids[1]}\n".encode())
    elif change == "update-ref":
        run_git("update-ref", "refs/heads/main", oids[1], cwd=bare)
    elif change == "new ref":
        run_git("update-ref", "refs/heads/attempts/b", oids[1], cwd=bare)
    elif change == "deleted":
        run_git("update-ref", "-d", "refs/heads/attempts/a", cwd=bare)
    elif change == "pack-refs":
        run_git("pack-refs", "--all", cwd=bare)
    elif change == "packed in place":
        packed = bare / "packed-refs"
        _in_place(packed, packed.read_bytes().replace(oids[0].encode(), oids[2].encode()))
    else:
        run_git("update-ref", "refs/heads/main", oids[2], cwd=bare)
    assert ref_stamp(str(bare), files) != stamp
    if change != "pack-refs":
        assert read_refs(bare) != refs  # (pack-refs moves refs between files, not values)


def test_a_layout_a_stamp_cannot_vouch_for_is_not_stamped(tmp_path: Path) -> None:
    bare, _oids = _bare(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    (bare / "refs" / "tags").rename(elsewhere)
    (bare / "refs" / "tags").symlink_to(elsewhere)  # a change behind it would not show
    assert ref_files(bare) is None
    (bare / "refs" / "tags").unlink()
    (bare / "refs" / "tags").mkdir()
    assert ref_files(bare) is not None
    run_git("pack-refs", "--all", cwd=bare)
    (bare / "packed-refs").rename(tmp_path / "packed")
    (bare / "packed-refs").symlink_to(tmp_path / "packed")
    assert ref_files(bare) is None


def test_a_settled_stamp_is_kept_and_a_fresh_one_is_not(site: Site,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    mid = site.create()
    monkeypatch.setattr(lifecycle, "_SETTLE_NS", NEVER)  # every file written just now
    first = lifecycle.list_missions(site.hub)
    cached = _summaries(site)[mid]
    assert cached[5] is None and cached[6] is None  # summary kept, stamp not
    monkeypatch.setattr(lifecycle, "_SETTLE_NS", ALWAYS)
    assert lifecycle.list_missions(site.hub) == first
    stamped = _summaries(site)[mid]
    assert stamped[:5] == cached[:5] and stamped[7:] == cached[7:]  # nothing derived again
    path = site.hub.mission_path(mid)
    files = ref_files(path)
    assert files is not None and stamped[5] == "\n".join(files)
    assert stamped[6] == ref_stamp(str(path), files)


def test_while_the_stamp_holds_the_cached_row_is_listed(site: Site) -> None:
    mid = site.create()
    lifecycle.list_missions(site.hub)
    lifecycle.list_missions(site.hub)  # the stamp taken
    assert _summaries(site)[mid][6] is not None
    conn = sqlite3.connect(site.hub.db_path)
    with conn:  # what the cache says is what is listed: the mission is not read again
        conn.execute("UPDATE mission_summaries SET contract = 'contract.cached@9.9.9'")
    conn.close()
    assert [r.contract for r in lifecycle.list_missions(site.hub)] == ["contract.cached@9.9.9"]


def _forged_accept(site: Site, mid: str) -> tuple[Repo, str, str]:
    """A merge into accepted signed by a key the registry never held (no ref moved yet)."""
    repo = Repo(site.hub.mission_path(mid))
    logged = repo.ref("refs/heads/accepted")
    attempt = repo.ref(f"refs/heads/attempts/{AGENT}")
    assert logged is not None and attempt is not None
    forged = repo.write_commit(tree=repo.tree_of(attempt), parents=[logged, attempt],
                               message="Accept\n", key=generate_key(),
                               who=registry.identity(CLIENT), when=site.clock.now())
    return repo, logged, forged


def _incidents(site: Site) -> list[tuple[str, str, str]]:
    with Store(site.hub.db_path) as store:
        return [(i.ref, i.found, i.restored) for i in store.incidents()]


@pytest.mark.parametrize("bulk", [0, 64], ids=["log-read-whole", "log-read-per-mission"])
def test_a_ref_written_in_place_under_a_stamp_is_judged_before_it_is_listed(
        site: Site, monkeypatch: pytest.MonkeyPatch, bulk: int) -> None:
    monkeypatch.setattr(lifecycle, "_BULK", bulk)  # more misses than this: one read of the log
    mid = site.create()
    site.deliver(mid)
    before = lifecycle.list_missions(site.hub)
    assert lifecycle.list_missions(site.hub) == before and _summaries(site)[mid][6] is not None
    repo, logged, forged = _forged_accept(site, mid)
    accepted = site.hub.mission_path(mid) / "refs" / "heads" / "accepted"
    _in_place(accepted, f"{forged}\n".encode())  # same inode, same size, no hook
    rows = lifecycle.list_missions(site.hub)
    assert rows == before and rows[0].state == "awaiting_acceptance"
    assert repo.ref("refs/heads/accepted") == logged  # put back before it was read
    assert _incidents(site) == [("refs/heads/accepted", forged, logged)]
    assert lifecycle.list_missions(site.hub) == before  # and stamped again


def test_a_new_ref_under_a_stamp_is_judged_before_it_is_listed(site: Site) -> None:
    mid = site.create()
    before = lifecycle.list_missions(site.hub)
    assert lifecycle.list_missions(site.hub) == before and _summaries(site)[mid][6] is not None
    main = Repo(site.hub.mission_path(mid)).ref("refs/heads/main")
    assert main is not None
    site.git(mid, "update-ref", "refs/heads/attempts/intruder", main)  # no hook runs
    assert lifecycle.list_missions(site.hub) == before
    assert "refs/heads/attempts/intruder" not in Repo(site.hub.mission_path(mid)).refs()
    assert _incidents(site) == [("refs/heads/attempts/intruder", main, None)]


def test_packed_refs_are_stamped_and_an_edit_inside_them_is_judged(site: Site) -> None:
    mid = site.create()
    site.deliver(mid)
    before = lifecycle.list_missions(site.hub)
    cached = _summaries(site)[mid]
    site.git(mid, "pack-refs", "--all")  # the same refs, now in packed-refs
    assert lifecycle.list_missions(site.hub) == before
    packed = _summaries(site)[mid]
    assert packed[:5] == cached[:5] and packed[7:] == cached[7:]  # nothing derived again
    assert packed[5] is not None and packed[5].startswith("packed-refs\n")
    repo, logged, forged = _forged_accept(site, mid)
    path = site.hub.mission_path(mid) / "packed-refs"
    text = path.read_text()
    assert f"{logged} refs/heads/accepted\n" in text
    _in_place(path, text.replace(f"{logged} refs/heads/accepted",
                                 f"{forged} refs/heads/accepted").encode())
    assert lifecycle.list_missions(site.hub) == before
    assert repo.ref("refs/heads/accepted") == logged
    assert _incidents(site) == [("refs/heads/accepted", forged, logged)]


def test_mission_rows_are_typed_and_listed_by_the_cli_as_before(
        site: Site, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AISMM_NOW", site.now())  # the CLI's hub on the site's clock
    first, second = site.create(), site.create(price=500)
    rows = lifecycle.list_missions(site.hub)
    assert [type(r) for r in rows] == [lifecycle.MissionRow] * 2
    assert [r.id for r in rows] == sorted([first, second])
    assert rows[0].agents == (AGENT,) and rows[0].to_dict()["agents"] == [AGENT]
    with pytest.raises(AttributeError):
        rows[0].state = "settled"  # type: ignore[misc]  # frozen: a row is a value
    out = run(site.root, capsys, "mission", "list", "--json")
    assert out.code == 0
    assert out.out == json.dumps([r.to_dict() for r in rows], indent=2, sort_keys=True,
                                 default=str) + "\n"
    assert run(site.root, capsys, "mission", "list", "--json", "--state", "settled").out == "[]\n"


_TEXT = st.text(max_size=12)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.builds(lifecycle.MissionRow, _TEXT, _TEXT, _TEXT, _TEXT, _TEXT,
                          st.lists(_TEXT, max_size=3).map(tuple),
                          st.integers(-(2**70), 2**70), st.integers(0, 10**12)), max_size=4))
def test_rows_json_is_json_dumps_byte_for_byte(rows: list[lifecycle.MissionRow]) -> None:
    assert rows_json(rows) == json.dumps([r.to_dict() for r in rows], indent=2, sort_keys=True,
                                         default=str)
