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
from aismm.core.model import dump_yaml  # noqa: E402
from aismm.core.refs import MAIN  # noqa: E402
from aismm.core.signing import generate_key  # noqa: E402
from aismm.infra.git import Repo  # noqa: E402
from aismm.infra.hub import Hub  # noqa: E402
from aismm.services import events, lifecycle, market  # noqa: E402
from aismm.services.hubs import init_hub  # noqa: E402
from aismm.state import registry  # noqa: E402

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
            "quality": 90, "p50_seconds": 1.0, "cost": 100, "reasons": [], "tasks": []}).encode()
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


def forget() -> None:
    """Empty every in-memory derived cache, as a new process starts."""
    registry.forget()
    lifecycle.forget()


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _cli(hub: Hub, *args: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "aismm", "--hub", str(hub.root), *args, "--json"],
                   check=True, env=ENV, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _agents(root: Path, n: int) -> dict[str, float]:
    hub = registry_hub(root / f"agents{n}", n)
    out: dict[str, float] = {}
    registry.drop_disk_cache(hub)
    forget()
    out[f"agents_{n}_uncached_s"], rows = _timed(lambda: market.listing(hub))
    assert len(rows) == n + len(registry.manifests(hub)) - n
    forget()  # the disk cache the first listing wrote stays: a new process finds it
    out[f"agents_{n}_cold_s"], _ = _timed(lambda: market.listing(hub))
    out[f"agents_{n}_warm_s"], _ = _timed(lambda: market.listing(hub))
    out[f"agents_{n}_cli_s"] = min(_cli(hub, "agent", "list") for _ in range(3))
    out[f"agents_{n}_ratio"] = out[f"agents_{n}_uncached_s"] / out[f"agents_{n}_cold_s"]
    shutil.rmtree(hub.root)
    return out


def run(quick: bool) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="aismm-bench-listing-") as tmp:
        for n in (1000,) if quick else (1000, 10000):
            figures.update(_agents(Path(tmp), n))
    return figures


if __name__ == "__main__":
    for key, value in run("--quick" in sys.argv).items():
        print(f"{key:<28} {value:.4f}" if isinstance(value, float) else f"{key:<28} {value}")
