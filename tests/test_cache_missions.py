"""`mission list` from summaries cached per mission tip: the same rows as deriving them afresh,
the time applied when listing, and only judged state reported.

Real hubs (the session's settlement template, copied), real git refs, real SQLite.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from aismm.core.signing import generate_key
from aismm.infra.git import Repo, read_refs
from aismm.infra.store import CachedSummary, Store
from aismm.services import lifecycle, settlement
from aismm.state import registry
from tests.settlekit import AGENT, CLIENT, SILENT, Site, make_site, run_git


@pytest.fixture()
def site(settle_template: Path, tmp_path: Path) -> Site:
    registry.forget()
    return make_site(settle_template, tmp_path)


def _summaries(site: Site) -> dict[str, CachedSummary]:
    with Store(site.hub.db_path) as store:
        return store.summaries()


def _key(summary: CachedSummary) -> tuple[int, str, str, str]:
    """What a summary was derived from: last logged move, registry commit, failed runs, refs."""
    return summary[1], summary[2], summary[3], summary[4]


def _fresh(site: Site) -> list[lifecycle.MissionRow]:
    """The list derived from the repositories alone: the cache emptied first."""
    conn = sqlite3.connect(site.hub.db_path)
    with conn:
        conn.execute("DELETE FROM mission_summaries")
    conn.close()
    return lifecycle.list_missions(site.hub)


def _states(rows: list[lifecycle.MissionRow]) -> dict[str, str]:
    return {r.id: r.state for r in rows}


def test_the_cached_list_is_the_list_derived_afresh_in_every_state(site: Site) -> None:
    settled = site.create()
    site.deliver(settled)
    settlement.accept(site.hub, settled, AGENT, as_actor=CLIENT)  # inline: settled at once
    delivered = site.create()
    site.deliver(delivered)
    waiting = site.create(agents=(SILENT,), price=100)  # never delivers
    first = lifecycle.list_missions(site.hub)
    assert _states(first) == {waiting: "assigned", delivered: "awaiting_acceptance",
                              settled: "settled"}
    assert set(_summaries(site)) == {waiting, delivered, settled}
    assert lifecycle.list_missions(site.hub) == first  # every row from the cache
    assert _fresh(site) == first
    for row in first:
        assert lifecycle.status(site.hub, row.id)["state"] == row.state
    assert lifecycle.list_missions(site.hub, state="settled") == [
        r for r in first if r.id == settled]


def test_a_cached_summary_is_replaced_when_the_mission_moves(site: Site) -> None:
    mid = site.create()
    assert _states(lifecycle.list_missions(site.hub)) == {mid: "assigned"}
    key = _key(_summaries(site)[mid])
    site.deliver(mid)
    rows = lifecycle.list_missions(site.hub)
    assert rows[0].state == lifecycle.status(site.hub, mid)["state"] != "assigned"
    assert _key(_summaries(site)[mid]) != key


def test_the_deadline_is_applied_when_listing_not_when_caching(site: Site) -> None:
    mid = site.create()
    assert _states(lifecycle.list_missions(site.hub)) == {mid: "assigned"}
    cached = _summaries(site)
    site.advance("P60D")  # past any contract deadline
    assert _states(lifecycle.list_missions(site.hub)) == {mid: "expired"}
    assert _summaries(site) == cached  # nothing derived again: the same refs, the same row
    assert lifecycle.status(site.hub, mid)["state"] == "expired"


def test_a_ref_moved_without_the_gate_is_judged_before_it_is_listed(site: Site) -> None:
    mid = site.create()
    site.deliver(mid)
    before = lifecycle.list_missions(site.hub)
    repo = Repo(site.hub.mission_path(mid))
    logged = repo.ref("refs/heads/accepted")
    attempt = repo.ref(f"refs/heads/attempts/{AGENT}")
    assert logged is not None and attempt is not None
    # a merge into accepted signed by a key the registry never held, written with no hook
    forged = repo.write_commit(tree=repo.tree_of(attempt), parents=[logged, attempt],
                               message="Accept\n", key=generate_key(),
                               who=registry.identity(CLIENT), when=site.clock.now())
    repo.update_ref("refs/heads/accepted", forged, logged)
    rows = lifecycle.list_missions(site.hub)
    assert rows == before and rows[0].state != "accepted"
    assert repo.ref("refs/heads/accepted") == logged  # put back before it was read
    with Store(site.hub.db_path) as store:
        assert [(i.ref, i.found, i.restored) for i in store.incidents()] == [
            ("refs/heads/accepted", forged, logged)]


@pytest.mark.parametrize(("column", "value"), [("agents", '["ext"'), ("agents", '{"a": 1}'),
                                               ("price", "a hundred"), ("deadline", "soon")])
def test_a_damaged_summary_is_derived_again(site: Site, column: str, value: str) -> None:
    mid = site.create()
    expected = lifecycle.list_missions(site.hub)
    good = _summaries(site)[mid]
    conn = sqlite3.connect(site.hub.db_path)
    with conn:
        conn.execute(f"UPDATE mission_summaries SET {column} = ? WHERE mission = ?", (value, mid))
    conn.close()
    assert lifecycle.list_missions(site.hub) == expected
    assert _summaries(site)[mid][:5] == good[:5] and _summaries(site)[mid][7:17] == good[7:17]


def test_read_refs_reads_what_libgit2_reads(tmp_path: Path) -> None:
    bare = tmp_path / "r.git"
    run_git("init", "-q", "--bare", str(bare))
    work = tmp_path / "w"
    run_git("clone", "-q", str(bare), str(work))
    run_git("commit", "-q", "--allow-empty", "-m", "one", cwd=work)
    run_git("push", "-q", "origin", "HEAD:refs/heads/main", "HEAD:refs/heads/attempts/a",
            "HEAD:refs/tags/settled", cwd=work)
    run_git("pack-refs", "--all", cwd=bare)  # these three now live in packed-refs
    run_git("commit", "-q", "--allow-empty", "-m", "two", cwd=work)
    run_git("push", "-q", "origin", "HEAD:refs/heads/attempts/a", "HEAD:refs/heads/accepted",
            cwd=work)  # a loose ref over a packed one, and a new loose one
    run_git("symbolic-ref", "refs/heads/alias", "refs/heads/main", cwd=bare)
    (bare / "refs" / "heads" / "main.lock").write_text("0" * 40 + "\n")  # a write under way
    assert read_refs(bare) == Repo(bare).refs()
    assert set(Repo(bare).refs()) == {"refs/heads/main", "refs/heads/attempts/a",
                                      "refs/tags/settled", "refs/heads/accepted"}
    (bare / "refs" / "heads" / "odd").write_text("not an object id\n")
    assert read_refs(bare) is None  # anything unexpected: the caller asks libgit2
