"""External agents learn of the work assigned to them: `aismm agent inbox` lists it (benchmark
missions included) with when it was offered, and a manifest's `notify` URL gets a POST when the
hub offers work. The assessment times an external agent from that offer."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from aismm.core.actor import Manifest, Runtime
from aismm.infra.hub import Hub
from aismm.infra.ledger import Ledger
from aismm.infra.store import Store
from aismm.services import client, inbox, market, mission, offers, registrar
from aismm.services.hubs import init_hub
from tests.conftest import git

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "contracts" / "schema_design" / "benchmark"
OFFER_FIELDS = {"agent", "mission", "contract", "clone", "offered_at"}


class Receiver:
    """A real HTTP server on the loopback interface that records the JSON POSTed to it."""

    def __init__(self, status: int = 204) -> None:
        self.posts: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.changed:
                    receiver.posts.append(json.loads(body))
                    receiver.paths.append(self.path)
                    receiver.changed.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/offers?token=t1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, count: int, seconds: float = 30.0) -> list[dict[str, Any]]:
        """The posts once there are ``count`` of them (returns as soon as they are there)."""
        with self.changed:
            self.changed.wait_for(lambda: len(self.posts) >= count, timeout=seconds)
            return list(self.posts)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def _hub(tmp_path: Path, notify: str | None) -> tuple[Hub, Path]:
    hub = init_hub(tmp_path / "hub")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "ext")],
                   check=True)
    registrar.add_actor(hub, "extco", ["client"], None, None, True)
    registrar.add_actor(hub, "ext", ["specialist"], "extco", (tmp_path / "ext.pub").read_text(),
                        False)
    market.register_manifest(hub, Manifest(
        id="ext", owner="extco", roles=["specialist"], contracts=["contract.schema_design@1.0.0"],
        price=100, capacity=4, runtime=Runtime(kind="git"), notify=notify), "extco")
    return hub, tmp_path / "ext"


def _inbox(hub: Hub) -> list[dict[str, Any]]:
    """What the agent sees: the real command, as a separate process, `--json`."""
    done = subprocess.run([sys.executable, "-m", "aismm", "--hub", str(hub.root), "agent",
                           "inbox", "ext", "--json"], capture_output=True, text=True, check=False,
                          env={**os.environ, "AISMM_HUB": ""})
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


def _deliver(row: dict[str, Any], key: Path, work: Path) -> None:
    """Clone the offered mission, put the matching golden answer on the attempt, push it."""
    clone = work / row["mission"]
    git("clone", "-q", row["clone"], str(clone))
    git("switch", "-q", row["branch"].removeprefix("refs/heads/"), cwd=clone)
    request = (clone / "inputs" / "request.json").read_bytes()
    task = next(t for t in BENCH.iterdir() if (t / "inputs" / "request.json").read_bytes()
                == request)
    shutil.copytree(task / "golden", clone / "deliverable")
    git("add", "deliverable", cwd=clone)
    git("-c", "gpg.format=ssh", "-c", f"user.signingkey={key}", "commit", "-q", "-S", "-m",
        "Deliver", cwd=clone)
    git("push", "-q", "origin", row["branch"], cwd=clone)


def _agent(hub: Hub, key: Path, work: Path, stop: threading.Event,
           seen: list[dict[str, Any]]) -> None:
    """A plain-git agent that learns of its work only by polling `aismm agent inbox --json`."""
    served: set[str] = set()
    while not stop.is_set():
        for row in _inbox(hub):
            seen.append(row)
            if row["mission"] not in served and row["state"] == "assigned":
                _deliver(row, key, work)
                served.add(row["mission"])
        stop.wait(0.1)


def test_an_external_agent_polls_its_inbox_and_is_timed_from_the_offer(
        tmp_path: Path, receiver: Receiver) -> None:
    hub, key = _hub(tmp_path, receiver.url)
    work = tmp_path / "work"
    work.mkdir()
    assert _inbox(hub) == []
    stop = threading.Event()
    seen: list[dict[str, Any]] = []
    thread = threading.Thread(target=_agent, args=(hub, key, work, stop, seen), daemon=True)
    thread.start()
    started = time.monotonic()
    try:
        record = market.assess(hub, "ext", timeout=120).to_json()
    finally:
        stop.set()
        thread.join(30)
    elapsed = time.monotonic() - started
    assert record["status"] == "listed", record["reasons"]
    tasks = {t["mission"]: t for t in record["tasks"] if "mission" in t}
    assert len(tasks) == len(list(BENCH.iterdir()))

    # the hub POSTed one offer per benchmark mission to the agent's notify URL
    posts = receiver.wait_for(len(tasks))
    assert receiver.paths == ["/offers?token=t1"] * len(tasks)
    assert all(set(p) == OFFER_FIELDS for p in posts)
    by_mission = {p["mission"]: p for p in posts}
    assert set(by_mission) == set(tasks)
    with Store(hub.db_path) as store:
        for mid, post in by_mission.items():
            assert post == {"agent": "ext", "mission": mid, "contract": tasks[mid]["contract"],
                            "clone": str(hub.mission_path(mid)),
                            "offered_at": offers.offer_time(store, mid)}
            # the time the assessment counts from is that offer, and it says so
            assert tasks[mid]["offered_at"] == post["offered_at"]
            assert 0 < tasks[mid]["seconds"] < elapsed

    # the agent found every mission through its inbox, with the same offer time and a clone URL
    first = {row["mission"]: row for row in reversed(seen)}
    assert set(first) == set(tasks)
    for mid, row in first.items():
        assert (row["offered_at"], row["clone"], row["benchmark"]) == (
            by_mission[mid]["offered_at"], str(hub.mission_path(mid)), True)
        assert row["contract"] == "contract.schema_design@1.0.0"
    assert any(row["next"].startswith("deliver") for row in seen)
    # once the assessment recorded them, the benchmark missions are closed
    assert _inbox(hub) == []


def test_a_mission_offer_is_posted_and_the_inbox_follows_the_attempt(
        tmp_path: Path, receiver: Receiver, capsys: pytest.CaptureFixture[str]) -> None:
    hub, key = _hub(tmp_path, receiver.url)
    registrar.add_actor(hub, "alice", ["client"], None, None, True)
    with Ledger(hub.db_path, hub.clock) as ledger:
        ledger.deposit("alice", 1000, cause="seed")
    created = mission.create(hub, contract_ref="contract.schema_design", client="alice",
                             inputs=BENCH / "order" / "inputs", price=None, tier="T0",
                             agents=["ext"])
    mid = created.doc.id
    (post,) = receiver.wait_for(1)
    rows = _inbox(hub)
    assert [r["mission"] for r in rows] == [mid]
    row = rows[0]
    assert post == {"agent": "ext", "mission": mid, "contract": "contract.schema_design@1.0.0",
                    "clone": str(created.path), "offered_at": row["offered_at"]}
    created_at = created.doc.model_dump(mode="json")["created"]  # the hub's, like the log's
    assert row["offered_at"] is not None and row["offered_at"] >= created_at
    assert (row["state"], row["mission_state"], row["benchmark"], row["tier"]) == (
        "assigned", "assigned", False, "T0")
    assert row["next"].startswith("deliver: clone, commit deliverable/** on attempts/ext")

    _deliver(row, key, tmp_path)
    (row,) = inbox.inbox(hub, "ext")
    assert (row["state"], row["next"]) == ("awaiting_acceptance",
                                           "wait: alice accepts or asks for rework")
    text = subprocess.run([sys.executable, "-m", "aismm", "--hub", str(hub.root), "agent",
                           "inbox", "ext"], capture_output=True, text=True, check=True).stdout
    assert text.splitlines()[0].startswith(f"{mid}  contract.schema_design@1.0.0  "
                                           "awaiting_acceptance")
    assert f"clone: git clone {created.path}" in text
    assert f"offered: {row['offered_at']}" in text

    client.accept(hub, mid, "ext")
    assert inbox.inbox(hub, "ext") == []
    text = subprocess.run([sys.executable, "-m", "aismm", "--hub", str(hub.root), "agent",
                           "inbox", "ext"], capture_output=True, text=True, check=True).stdout
    assert text == "(no open assignments for ext)\n"
    unknown = subprocess.run([sys.executable, "-m", "aismm", "--hub", str(hub.root), "agent",
                              "inbox", "nobody"], capture_output=True, text=True, check=False)
    assert unknown.returncode == 2 and unknown.stderr.startswith("aismm: nobody: unknown actor")


@pytest.mark.parametrize("kind", ["refused", "error", "redirect"])
def test_a_dead_or_failing_notify_url_never_fails_the_mission(tmp_path: Path, kind: str) -> None:
    server = Receiver(status={"error": 500, "redirect": 302}.get(kind, 204))
    url = server.url
    if kind == "refused":
        server.close()  # nothing listens on that port any more
    try:
        hub, _key = _hub(tmp_path, url)
        registrar.add_actor(hub, "alice", ["client"], None, None, True)
        with Ledger(hub.db_path, hub.clock) as ledger:
            ledger.deposit("alice", 1000, cause="seed")
        created = mission.create(hub, contract_ref="contract.schema_design", client="alice",
                                 inputs=BENCH / "order" / "inputs", price=None, tier="T0",
                                 agents=["ext"])
        assert [r["mission"] for r in inbox.inbox(hub, "ext")] == [created.doc.id]
        offer: offers.Offer = {"agent": "ext", "mission": created.doc.id, "contract": "c",
                               "clone": str(created.path),
                               "offered_at": created.doc.model_dump(mode="json")["created"]}
        notice = offers.notify(url, offer, timeout=5)
        assert not notice.delivered
        if kind == "refused":
            assert notice.status is None and notice.error
        else:  # answered, not followed anywhere
            assert notice.status == {"error": 500, "redirect": 302}[kind]
            assert len(server.wait_for(2)) == 2  # the offer, then this call
    finally:
        if kind != "refused":
            server.close()


def test_a_silent_notify_url_costs_at_most_the_timeout() -> None:
    """A server that accepts the connection and never answers: notify gives up on time."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    try:
        port = listener.getsockname()[1]
        offer: offers.Offer = {"agent": "a", "mission": "m", "contract": "c", "clone": "x",
                               "offered_at": "2026-01-01T00:00:00Z"}
        started = time.monotonic()
        notice = offers.notify(f"http://127.0.0.1:{port}/", offer, timeout=0.3)
        assert time.monotonic() - started < 5
        assert notice.status is None and "timed out" in (notice.error or "")
    finally:
        listener.close()


@pytest.mark.parametrize(("url", "ok"), [
    ("http://127.0.0.1:8080/hook", True),
    ("https://agents.example.com/aismm?x=1", True),
    ("ftp://agents.example.com/x", False),
    ("http://user:secret@agents.example.com/", False),
    ("http:///nohost", False),
    ("http://host:99999/", False),
    ("http://host/a b", False),
    ("file:///etc/passwd", False),
])
def test_manifest_notify_is_an_http_url(url: str, ok: bool) -> None:
    def make() -> Manifest:
        return Manifest(id="ext", owner="extco", roles=["specialist"], contracts=["c"],
                        price=1, runtime=Runtime(kind="git"), notify=url)

    if ok:
        assert make().model_dump(mode="json")["notify"] == url
    else:
        with pytest.raises(ValidationError, match="notify"):
            make()


def test_a_manifest_without_notify_reads_as_before() -> None:
    man = Manifest(id="ext", owner="extco", roles=["specialist"], contracts=["c"], price=1,
                   runtime=Runtime(kind="git"))
    assert "notify" not in man.model_dump(mode="json")
    assert Manifest.model_validate(man.model_dump(mode="json")) == man
    schema = json.loads((ROOT / "docs" / "schemas" / "manifest.schema.json").read_text())
    assert "notify" in schema["properties"] and "notify" not in schema.get("required", [])


def test_only_a_missions_creation_is_an_offer() -> None:
    zero, a, b = "0" * 40, "a" * 40, "b" * 40
    created: Callable[..., list[str]] = offers.offered_agents
    assert created([(zero, a, "refs/heads/main"), (zero, a, "refs/heads/accepted"),
                    (zero, a, "refs/heads/attempts/x"), (zero, a, "refs/heads/attempts/y")]
                   ) == ["x", "y"]
    assert created([(a, b, "refs/heads/attempts/x")]) == []
    assert created([(zero, a, "refs/heads/attempts/x")]) == []  # no new main: not a creation
