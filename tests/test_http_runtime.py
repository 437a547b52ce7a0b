"""The hosted `http` runtime: the hub POSTs the task and commits the files that come back."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from aismm.core.actor import Manifest, Runtime
from aismm.core.clock import FixedClock
from aismm.infra.git import Repo
from aismm.infra.hub import Hub
from aismm.infra.ledger import Ledger
from aismm.infra.store import Store
from aismm.services import delivery, market, mission, registrar, worker
from aismm.services.hubs import init_hub

ROOT = Path(__file__).resolve().parent.parent
TASK = ROOT / "contracts" / "code_review" / "benchmark" / "http_helpers"


def _server(reply: dict[str, Any], seen: list[dict[str, Any]]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(json.loads(body))
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _mission(tmp_path: Path, url: str) -> tuple[Hub, mission.Created]:
    hub = init_hub(tmp_path / "hub", clock=FixedClock("2026-01-01T00:00:00Z"))
    registrar.add_actor(hub, "webco", ["client"], None, None, True)
    market.register_manifest(hub, Manifest(
        id="web-agent", owner="webco", roles=["specialist"],
        contracts=["contract.code_review@1.0.0"], price=100,
        runtime=Runtime(kind="http", url=url, timeout_seconds=10)), "webco", hosted=True)
    registrar.add_actor(hub, "alice", ["client"], None, None, True)
    with Ledger(hub.db_path, hub.clock) as ledger:
        ledger.deposit("alice", 1000, cause="seed")
    created = mission.create(hub, contract_ref="contract.code_review", client="alice",
                             inputs=TASK / "inputs", price=None, tier="T0",
                             agents=["web-agent"])
    return hub, created


def test_http_agent_delivers_through_the_gate(tmp_path: Path) -> None:
    golden = (TASK / "golden" / "findings.json").read_text()
    seen: list[dict[str, Any]] = []
    server = _server({"files": {"deliverable/findings.json": golden}}, seen)
    try:
        hub, created = _mission(tmp_path, f"http://127.0.0.1:{server.server_port}/task")
        lines = delivery.dispatch(hub, created.doc.id) + worker.process(hub)
    finally:
        server.shutdown()
    assert any(line.startswith("aismm: web-agent delivered") for line in lines), lines
    assert "aismm: platform DoD on web-agent: PASS (100/100)" in lines
    repo = Repo(created.path)
    tip = repo.ref("refs/heads/attempts/web-agent")
    assert tip is not None and repo.read(tip, "deliverable/findings.json") == golden.encode()
    task = seen[0]
    assert task["env"]["AISMM_ROLE"] == "specialist" and task["env"]["AISMM_ACTOR"] == "web-agent"
    assert "inputs/request.json" in task["files"] and "mission.yaml" in task["files"]


@pytest.mark.parametrize(("reply", "why"), [
    ({"files": {"../../escape.txt": "x"}}, "wrote outside the checkout"),
    ({"files": {"notes/outside.md": "x"}}, "wrote outside deliverable/"),
    ({"nothing": True}, "delivered nothing"),
])
def test_misbehaving_http_agent_is_a_failed_attempt(tmp_path: Path, reply: dict[str, Any],
                                                    why: str) -> None:
    server = _server(reply, [])
    try:
        hub, created = _mission(tmp_path, f"http://127.0.0.1:{server.server_port}/task")
        lines = delivery.dispatch(hub, created.doc.id)
    finally:
        server.shutdown()
    assert len(lines) == 1 and "attempt failed" in lines[0] and why in lines[0], lines
    repo = Repo(created.path)
    assert repo.ref("refs/heads/attempts/web-agent") == created.main
    assert not (tmp_path / "escape.txt").exists()
    with Store(hub.db_path) as store:
        assert [r["outcome"] for r in store.executions("web-agent")] == ["failed"]
