"""20 concurrent pushes to 20 missions over HTTP: every one judged and processed, each pusher
hears only its own lines, nothing lost (outbox drained, ledger check clean)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from aismm.infra.ledger import Ledger
from aismm.infra.store import Store
from tests.hubkit import Clone, findings, run_git
from tests.webkit import Web, serving

N = 20


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    yield from serving(tmp_path_factory.mktemp("many"))


def test_twenty_concurrent_pushes_are_all_judged_each_to_its_own_pusher(
        web: Web, tmp_path: Path) -> None:
    agents = [f"agent-{i:02d}" for i in range(N)]
    for agent in agents:
        web.kit.add_actor(agent, ["specialist"], "many-co")
    missions = {agent: web.kit.mission((agent,)).doc.id for agent in agents}
    heads: dict[str, str] = {}
    for i, agent in enumerate(agents):  # clone and commit first: only the pushes run at once
        work = tmp_path / agent
        web.git(agent, "clone", "-q", "--branch", f"attempts/{agent}",
                web.remote(missions[agent]), str(work))
        (work / "deliverable").mkdir()
        (work / "deliverable" / "findings.json").write_bytes(findings(i))
        run_git("add", "-A", cwd=work)
        run_git(*Clone.sign_args(web.kit.key(agent)), "commit", "-q", "-S", "-m", "Deliver",
                cwd=work)
        heads[agent] = run_git("rev-parse", "HEAD", cwd=work).stdout.decode().strip()

    def push(agent: str) -> tuple[int, str]:
        return web.git(agent, "push", "origin", f"attempts/{agent}", cwd=tmp_path / agent,
                       check=False)

    with ThreadPoolExecutor(N) as pool:
        results = dict(zip(agents, pool.map(push, agents), strict=True))

    for agent, (code, text) in results.items():
        assert code == 0, text
        mine = [line for line in text.splitlines() if line.startswith("remote: aismm: ")]
        assert any(f"platform DoD on {agent}: PASS" in line for line in mine), text
        others = [a for a in agents if a != agent and a in text]
        assert others == [], f"{agent} heard of {others}:\n{text}"
        bare = web.kit.hub.mission_path(missions[agent])
        assert run_git("merge-base", "--is-ancestor", heads[agent], f"attempts/{agent}",
                       cwd=bare, check=False).returncode == 0
    with Store(web.kit.hub.db_path) as store:
        assert store.pending() == 0
        done = [e for e in store.events() if e.ref.startswith("refs/heads/attempts/agent-")]
    assert {e.repo for e in done} >= {f"missions/{m}.git" for m in missions.values()}
    with Ledger(web.kit.hub.db_path, web.kit.hub.clock) as ledger:
        assert ledger.check() == []
        for mid in missions.values():
            assert ledger.balance(f"escrow:{mid}") > 0  # funded, nothing paid without accept
