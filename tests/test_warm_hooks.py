"""The Python hook client (hubs without a C compiler) and the lean hook path.

Real pushes with the real git binary through hooks/hook.py.in: judged in-process without a
server, through the socket with one, refused when a server takes the request and never answers.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from test_native_hooks import _deliver, _push
from test_serve import _clone, _hub, _start, _stop

from aismm.core.refs import SOCKET
from aismm.infra.hub import Hub
from aismm.infra.store import Store
from aismm.services import mission, worker
from aismm.state import provision


def _python_hooks(hub: Hub, created: mission.Created) -> None:
    """Hooks as a hub without a C compiler has them: the Python client."""
    (hub.root / provision.CLIENT).unlink()
    for repo in (created.path, hub.registry_path):
        provision.install(repo)
    text = (created.path / "hooks" / "pre-receive").read_text()
    assert text.startswith(f"#!{sys.executable} -S") and 'script("pre-receive")' in text


def _tip(created: mission.Created) -> str:
    return subprocess.run(["git", "-C", str(created.path), "rev-parse", "attempts/me"],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_python_hooks_judge_in_process_without_a_server(tmp_path: Path) -> None:
    hub, [created] = _hub(tmp_path)
    _python_hooks(hub, created)
    clone = _clone(created, tmp_path / "clone", tmp_path / "me")
    _deliver(clone)
    pushed = _push(clone)
    assert pushed.returncode == 0, pushed.stderr
    assert "remote: aismm: platform DoD on me: PASS" in pushed.stderr


def test_python_hooks_hand_the_work_to_the_server(tmp_path: Path) -> None:
    hub, [created] = _hub(tmp_path)
    _python_hooks(hub, created)
    log = tmp_path / "serve.log"
    proc = _start(hub, log)
    try:
        clone = _clone(created, tmp_path / "clone", tmp_path / "me")
        _deliver(clone)
        pushed = _push(clone)
    finally:
        _stop(proc)
    assert pushed.returncode == 0, pushed.stderr
    assert "remote: aismm: platform DoD on me: PASS" in pushed.stderr
    assert "warm sandbox workers ran 1 sandboxed run" in log.read_text()  # the server did it


@pytest.mark.parametrize(("behaviour", "why"), [("silent", "did not answer in time"),
                                                ("hangs up", "closed without an answer")])
def test_a_python_hook_refuses_when_the_server_takes_the_request_and_fails(
        tmp_path: Path, behaviour: str, why: str) -> None:
    hub, [created] = _hub(tmp_path)
    _python_hooks(hub, created)
    clone = _clone(created, tmp_path / "clone", tmp_path / "me")
    _deliver(clone)
    before = _tip(created)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(hub.root / SOCKET))
    listener.listen(4)
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            if behaviour == "hangs up":
                conn.makefile("rb").readline()
                conn.close()
            else:
                held.append(conn)

    threading.Thread(target=serve, daemon=True).start()
    try:
        pushed = _push(clone, AISMM_HOOK_TIMEOUT="1")
    finally:
        listener.close()
        for conn in held:
            conn.close()
    assert pushed.returncode != 0
    assert f"remote: aismm: the hub's server {why}; the push was refused to stay safe" \
        in pushed.stderr, pushed.stderr
    assert _tip(created) == before


def test_bytecode_goes_to_the_hub_when_the_package_is_read_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "site" / "aismm"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("X = 1\n")
    (package / "hook.py").write_text("Y = 2\n")
    monkeypatch.setattr(provision, "PACKAGE", package)
    assert provision.compile_package(tmp_path / "hub-a") == package  # writable: in place
    assert {p.name.split(".")[0] for p in (package / "__pycache__").iterdir()} == {"__init__",
                                                                                   "hook"}
    for pyc in (package / "__pycache__").iterdir():
        pyc.unlink()
    # root may write anywhere: the read-only package is what os.access says of it
    monkeypatch.setattr(provision.os, "access", lambda path, mode: False)
    hub = tmp_path / "hub-b"
    assert provision.compile_package(hub) == hub / provision.PYCACHE
    compiled = {p.name.split(".")[0] for p in (hub / provision.PYCACHE).rglob("*.pyc")}
    assert compiled == {"__init__", "hook"} and not list((package / "__pycache__").iterdir())
    assert sys.pycache_prefix is None  # put back


def test_a_hook_answered_by_the_server_imports_only_the_standard_library() -> None:
    code = ("import json, sys; import aismm.hook; "
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'aismm', "
            "'pydantic', 'pygit2', 'yaml', 'jsonschema', 'cryptography'})))")
    done = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                          check=True, env={**os.environ,
                                           "PYTHONPATH": str(Path(provision.__file__).parents[2])})
    assert json.loads(done.stdout) == ["aismm"]


def test_a_daemon_post_receive_only_queues_and_needs_only_sqlite(tmp_path: Path) -> None:
    hub, [created] = _hub(tmp_path)
    config = hub.root / "hub.yaml"
    config.write_text(config.read_text().replace("processing: inline", "processing: daemon"))
    assert Hub(hub.root).config.processing == "daemon"
    clone = _clone(created, tmp_path / "clone", tmp_path / "me")
    _deliver(clone)
    pushed = _push(clone, AISMM_PUSHER="me")  # no server: the hooks do it in-process
    assert pushed.returncode == 0, pushed.stderr
    assert "remote: aismm: 1 update(s) queued for the hub" in pushed.stderr
    tip = _tip(created)
    name = created.path.relative_to(hub.root).as_posix()
    with Store(hub.db_path) as store:
        [row] = [r for r in store.events(name) if r.new == tip]
        [(at,)] = store.conn.execute("SELECT created FROM events WHERE id = ?", (row.id,))
    assert (row.ref, row.pusher, row.status) == ("refs/heads/attempts/me", "me",
                                                          "pending")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", at)
    lines = worker.process(Hub(hub.root))  # what `aismm serve` or `aismm process` does next
    assert any("platform DoD on me: PASS" in line for line in lines), lines
    # the same post-receive again (a replay records nothing new), in a fresh interpreter
    code = ("import json, sys; from aismm.hook import handle; "
            f"print(json.dumps([handle({{'hook': 'post-receive', 'git_dir': {str(created.path)!r},"
            f" 'stdin': '{row.old} {tip} refs/heads/attempts/me\\n', 'object_dir': None,"
            " 'pusher': 'me'}), sorted({m.split('.')[0] for m in sys.modules} & "
            "{'pydantic', 'pygit2', 'yaml', 'jsonschema', 'cryptography'})]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert json.loads(done.stdout) == [[0, ["aismm: 1 update(s) queued for the hub"]], []]
    with Store(hub.db_path) as store:
        assert len([r for r in store.events(name) if r.new == tip]) == 1
