"""Listings at scale: `agent list` at 1,000 and 10,000 agents, `mission list` at 10,000 missions.

``python benchmarks/bench_listing.py [--quick]``; ``run(quick)`` returns the figures for run.py.
Each figure is printed beside a baseline measured in the same process: the same listing with
every derived cache (in memory and on disk) emptied first, i.e. parsing the repositories again.

The fixtures are written directly with pygit2 (through :class:`aismm.infra.git.Repo`), not
through the gate, because registering 10,000 agents one gate run at a time takes minutes: the
registry commit is signed by the platform's hosted key as the registrar signs it, and entered in
the ref-state log as post-receive would; missions are copies of one real mission repository
under new ids, each with its escrow funded in the ledger. The fixtures are built once per run
under a temporary folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aismm.core.actor import Actor  # noqa: E402
from aismm.core.clock import iso  # noqa: E402
from aismm.core.model import dump_yaml, load_yaml  # noqa: E402
from aismm.core.refs import MAIN  # noqa: E402
from aismm.core.signing import generate_key  # noqa: E402
from aismm.infra.git import Repo  # noqa: E402
from aismm.infra.hub import Hub  # noqa: E402
from aismm.infra.ledger import Ledger  # noqa: E402
from aismm.infra.store import Store  # noqa: E402
from aismm.services import events, lifecycle, market, mission, registrar  # noqa: E402
from aismm.services.hubs import init_hub  # noqa: E402
from aismm.state import registry  # noqa: E402

TASK = ROOT / "contracts" / "code_review" / "benchmark" / "http_helpers"
ENV = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def registry_hub(root: Path, agents: int) -> Hub:
    """A hub whose registry lists ``agents`` assessed agents, each with its own key."""
    os.environ.update({"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"})
    hub = init_hub(root)
    files: dict[str, bytes | None] = {}
    for i in range(agents):
        aid = f"agent-{i:05d}"
        files[f"actors/{aid}.yaml"] = dump_yaml(Actor(
            id=aid, roles=["specialist"], owner="platform",
            key=generate_key().public_line).model_dump(mode="json")).encode()
        files[f"agents/{aid}.yaml"] = dump_yaml({
            "schema_version": 1, "id": aid, "owner": "platform", "roles": ["specialist"],
            "contracts": ["contract.code_review@1.0.0"], "price": 100 + i % 50,
            "capacity": 4, "runtime": {"kind": "git"}}).encode()
        files[f"assessments/{aid}/0001.yaml"] = dump_yaml({
            "schema_version": 1, "agent": aid, "n": 1, "status": "listed", "badge": "gold",
            "quality": 90, "p50_seconds": 1.0, "cost": 100, "reasons": [], "tasks": [],
            "at": iso(hub.clock.now())}).encode()
    repo = Repo(hub.registry_path)
    old = repo.ref(MAIN)
    assert old is not None
    tree = repo.build_tree(repo.tree_of(old), files)
    new = repo.write_commit(tree=tree, parents=[old], message=f"{agents} agents\n",
                            key=hub.hosted_key("platform"), who=registry.identity("platform"),
                            when=hub.clock.now())
    repo.update_ref(MAIN, new, old)
    events.record(hub, repo.path, [(old, new, MAIN)], "platform")
    return hub


def _link(source: str, target: str) -> None:
    if "/objects/" in source:
        os.link(source, target)
    else:
        shutil.copy2(source, target)


def mission_hub(root: Path, missions: int) -> Hub:
    """A hub with ``missions`` funded missions assigned to one agent.

    The first is made by :func:`aismm.services.mission.create`; each other one is a copy of its
    provisioned repository with its own ``mission.yaml`` (its id, the same contract pin) on a
    new ``main`` signed by the client's hosted key, ``accepted`` and the attempt at ``main`` as
    ``create`` sets them, funded in the ledger and entered in the ref-state log.
    """
    os.environ.update({"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"})
    hub = init_hub(root)
    registrar.add_actor(hub, "alice", ["client"], None, None, True)
    registrar.add_actor(hub, "ext", ["specialist"], None, None, True)
    with Ledger(hub.db_path, hub.clock) as ledger:
        ledger.deposit("alice", 10**12, cause="bench")
    first = mission.create(hub, contract_ref="contract.code_review", client="alice",
                           inputs=TASK / "inputs", price=100, tier="T0", agents=["ext"])
    template = Repo(first.path)
    doc = load_yaml(template.read(first.main, "mission.yaml") or b"", "mission.yaml")
    key, who = hub.hosted_key("alice"), registry.identity("alice")
    refs = sorted(template.refs())
    logged: list[tuple[str, list[tuple[str, str, str]]]] = []
    with Ledger(hub.db_path, hub.clock) as ledger, ledger.batch():
        for i in range(1, missions):
            mid = f"load-{i:05d}"
            path = hub.mission_path(mid)
            # objects are immutable: linked, as `git clone --local` does
            shutil.copytree(first.path, path, symlinks=True, copy_function=_link)
            repo = Repo(path)
            tree = repo.build_tree(repo.tree_of(first.main), {
                "mission.yaml": dump_yaml({**doc, "id": mid}).encode()})
            main = repo.write_commit(tree=tree, parents=[], message=f"Open mission {mid}\n",
                                     key=key, who=who, when=hub.clock.now())
            for ref in refs:
                repo.update_ref(ref, main, template.ref(ref))
            ledger.fund(mid, "alice", doc["price"], doc["fee"], cause=main)
            logged.append((f"missions/{mid}.git", [("0" * 40, main, ref) for ref in refs]))
    with Store(hub.db_path) as store:
        for name, updates in logged:
            store.record_updates(name, updates, "alice", iso(hub.clock.now()))
    return hub


def forget() -> None:
    """Empty every in-memory derived cache, as a new process starts."""
    registry.forget()


def _timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall and CPU seconds of ``fn()`` (the CPU figure is steadier on a loaded machine)."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - start, time.process_time() - cpu, out


def _cli(hub: Hub, *args: str) -> float:
    """Wall seconds of a fresh ``aismm`` process, the best of three."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "aismm", "--hub", str(hub.root), *args],
                       check=True, env=ENV, stdout=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - start)
    return best


def _cli_cpu(hub: Hub, *args: str) -> float:
    """CPU seconds (user + system) of a fresh ``aismm`` process, the best of three."""
    best = float("inf")
    for _ in range(3):
        before = os.times()
        subprocess.run([sys.executable, "-m", "aismm", "--hub", str(hub.root), *args],
                       check=True, env=ENV, stdout=subprocess.DEVNULL)
        after = os.times()
        best = min(best, after.children_user - before.children_user
                   + after.children_system - before.children_system)
    return best


def _agents(root: Path, n: int) -> dict[str, float]:
    hub = registry_hub(root / f"agents{n}", n)
    out: dict[str, float] = {}
    registry.drop_disk_cache(hub)
    registry.forget()
    out[f"agents_{n}_uncached_s"], out[f"agents_{n}_uncached_cpu_s"], rows = _timed(
        lambda: market.listing(hub))
    assert len(rows) == n
    registry.forget()  # as a new process: the disk entries the first listing wrote stay
    out[f"agents_{n}_cold_s"], out[f"agents_{n}_cold_cpu_s"], again = _timed(
        lambda: market.listing(hub))
    assert again == rows
    out[f"agents_{n}_warm_s"], _cpu, _rows = _timed(lambda: market.listing(hub))
    out[f"agents_{n}_ratio"] = out[f"agents_{n}_uncached_s"] / out[f"agents_{n}_cold_s"]
    out[f"agents_{n}_cli_s"] = _cli(hub, "agent", "list", "--json")
    shutil.rmtree(hub.root)
    return out


def _missions(root: Path, n: int) -> dict[str, float]:
    hub = mission_hub(root / f"missions{n}", n)
    out: dict[str, float] = {}
    registry.forget()
    with Store(hub.db_path) as store:  # the cache empty: every summary derived afresh
        assert store.summaries() == {}
    out[f"missions_{n}_uncached_s"], out[f"missions_{n}_uncached_cpu_s"], rows = _timed(
        lambda: lifecycle.list_missions(hub))
    assert len(rows) == n
    # The summaries cached but every stamp lost (a copied hub, a new format): each mission's
    # refs are read from its files, compared and stamped again (a one-off cost).
    with Store(hub.db_path) as store, store.conn:
        store.conn.execute("UPDATE mission_summaries SET files = NULL, stamp = NULL")
    registry.forget()
    out[f"missions_{n}_restamp_s"], out[f"missions_{n}_restamp_cpu_s"], again = _timed(
        lambda: lifecycle.list_missions(hub))
    assert again == rows
    with Store(hub.db_path) as store:
        stamped = sum(1 for row in store.summaries().values() if row[6] is not None)
    out[f"missions_{n}_stamped"] = stamped  # those older than the settling time (2 s)
    best = (float("inf"), float("inf"))
    for _ in range(3):  # as a new process: every in-memory cache emptied first
        registry.forget()
        wall, cpu, again = _timed(lambda: lifecycle.list_missions(hub))
        assert again == rows
        best = min(best, (wall, cpu))
    out[f"missions_{n}_cached_s"], out[f"missions_{n}_cached_cpu_s"] = best
    out[f"missions_{n}_ratio"] = out[f"missions_{n}_uncached_s"] / out[f"missions_{n}_cached_s"]
    out[f"missions_{n}_cli_s"] = _cli(hub, "mission", "list", "--json")
    out[f"missions_{n}_cli_cpu_s"] = _cli_cpu(hub, "mission", "list", "--json")
    shutil.rmtree(hub.root)
    return out


def run(quick: bool) -> dict[str, Any]:
    figures: dict[str, Any] = {"agents": [1000] if quick else [1000, 10000],
                               "missions": 1000 if quick else 10000}
    with tempfile.TemporaryDirectory(prefix="aismm-bench-listing-") as tmp:
        for n in figures["agents"]:
            figures.update(_agents(Path(tmp), n))
        figures.update(_missions(Path(tmp), figures["missions"]))
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "aismm", "--help"], check=True, env=ENV,
                       stdout=subprocess.DEVNULL)
        figures["cli_start_s"] = time.perf_counter() - start  # `aismm --help`: the floor
        figures["load"] = os.getloadavg()[0]
    return figures


if __name__ == "__main__":
    for key, value in run("--quick" in sys.argv).items():
        print(f"{key:<28} {value:.4f}" if isinstance(value, float) else f"{key:<28} {value}")
