"""The HTTP face at its edge: only the allow-listed paths, one-line 4xx answers that change
nothing, oversized bodies refused before git runs, and SIGTERM draining a running request."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.hubkit import repo_state, run_git
from tests.webkit import Web, basic, serving

LIMIT = 256 << 10  # the hub's push limit in these tests


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    yield from serving(tmp_path_factory.mktemp("edge"), max_push_bytes=LIMIT)


def _one_line(answer: httpx.Response) -> str:
    assert answer.text.startswith("aismm: ") and answer.text.endswith("\n")
    assert answer.text.count("\n") == 1, answer.text
    return answer.text.strip()


@pytest.mark.parametrize("path", [
    "/missions/../hub.yaml", "/hub.db", "/registry.git/config", "/registry.git/HEAD",
    "/registry.git/objects/info/packs", "/missions/x.git/hooks/pre-receive", "/keys/bob.key",
    "/registry.git/info/refs/../../hub.yaml", "/run/aismm.sock",
])
def test_paths_outside_the_allow_list_are_404(web: Web, path: str) -> None:
    answer = httpx.get(web.url + path, headers=basic("bob", web.token("bob")))
    assert answer.status_code == 404
    assert _one_line(answer).startswith("aismm: ")


def test_dumb_http_and_wrong_methods_are_refused(web: Web) -> None:
    auth = basic("bob", web.token("bob"))
    dumb = httpx.get(f"{web.url}/registry.git/info/refs", headers=auth)
    assert dumb.status_code == 403
    assert _one_line(dumb) == "aismm: dumb HTTP is off; use a git that speaks smart HTTP"
    wrong = httpx.get(f"{web.url}/registry.git/git-receive-pack", headers=auth)
    assert wrong.status_code == 405
    unknown = httpx.get(f"{web.url}/missions/no-such-mission.git/info/refs",
                        params={"service": "git-upload-pack"}, headers=auth)
    assert unknown.status_code == 404
    assert _one_line(unknown) == "aismm: no-such-mission: no such mission"


def test_an_oversized_push_is_413_and_changes_nothing(web: Web) -> None:
    mid = web.kit.mission(("bob",)).doc.id
    bare = web.kit.hub.mission_path(mid)
    before = repo_state(bare)
    url = f"{web.remote(mid)}/git-receive-pack"
    headers = {**basic("bob", web.token("bob")),
               "Content-Type": "application/x-git-receive-pack-request"}
    declared = httpx.post(url, content=b"0" * (LIMIT + 1), headers=headers)
    assert declared.status_code == 413
    assert _one_line(declared) == (f"aismm: request body of {LIMIT + 1} bytes is over the "
                                   f"hub's push limit of {LIMIT} bytes; push less at a time")

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        for _ in range(LIMIT // 4096 + 2):
            yield b"0" * 4096

    chunked = httpx.post(url, content=chunks(), headers=headers)
    assert chunked.status_code == 413
    assert "over the hub's push limit" in _one_line(chunked)
    assert repo_state(bare) == before


def test_a_git_push_over_the_limit_is_refused_by_the_server(web: Web, tmp_path: Path) -> None:
    mid = web.kit.mission(("bob",)).doc.id
    bare = web.kit.hub.mission_path(mid)
    before = repo_state(bare)
    work = tmp_path / "w"
    web.git("bob", "clone", "-q", "--branch", "attempts/bob", web.remote(mid), str(work))
    (work / "deliverable").mkdir()
    (work / "deliverable" / "big.bin").write_bytes(os.urandom(LIMIT * 2))
    run_git("add", "-A", cwd=work)
    run_git("commit", "-q", "-m", "big", cwd=work)
    code, text = web.git("bob", "push", "origin", "attempts/bob", cwd=work, check=False)
    assert code != 0 and "413" in text
    assert repo_state(bare) == before


def test_a_malformed_authorization_is_401_not_an_error(web: Web) -> None:
    for header in ("Basic !!!", "Basic " + "QQ==" * 2000, "Token x", "Bearer x", "Basic Ym9i"):
        answer = httpx.get(f"{web.url}/registry.git/info/refs",
                           params={"service": "git-upload-pack"},
                           headers={"Authorization": header})
        assert answer.status_code == 401, header


def test_a_gzip_request_body_is_served(web: Web) -> None:
    """git gzips large upload-pack requests; http-backend inflates them (HTTP_CONTENT_ENCODING)."""
    import gzip

    tip = run_git("rev-parse", "main", cwd=web.kit.hub.registry_path).stdout.decode().strip()
    body = f"0032want {tip}\n".encode() + b"0000" + b"0009done\n"
    answer = httpx.post(f"{web.url}/registry.git/git-upload-pack", content=gzip.compress(body),
                        headers={**basic("bob", web.token("bob")), "Content-Encoding": "gzip",
                                 "Content-Type": "application/x-git-upload-pack-request"})
    assert answer.status_code == 200 and b"PACK" in answer.content


def test_a_slow_client_holds_nobody_up(web: Web) -> None:
    host, port = web.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as slow:
        slow.sendall(b"POST /registry.git/git-upload-pack HTTP/1.1\r\nHost: x\r\n")  # ...
        for _ in range(3):  # meanwhile others are served at once
            answer = httpx.get(f"{web.url}/registry.git/info/refs",
                               params={"service": "git-upload-pack"},
                               headers=basic("bob", web.token("bob")), timeout=10)
            assert answer.status_code == 200 and b"refs/heads/main" in answer.content


def _wait_closed(host: str, port: int) -> None:
    """Until the server stops accepting (bounded)."""
    for _ in range(1000):
        with socket.socket() as probe:
            if probe.connect_ex((host, port)) != 0:
                return
        time.sleep(0.01)
    raise AssertionError("the server kept accepting after SIGTERM")


def test_sigterm_stops_accepting_finishes_the_running_request_and_exits(
        reference_hub: Path, tmp_path: Path) -> None:
    from aismm.services import tokens
    from tests.hubkit import copy_hub

    served = copy_hub(reference_hub, tmp_path / "hub")
    hub = served.root
    token = str(tokens.create(served, "platform")["token"])
    proc = subprocess.Popen([sys.executable, "-m", "aismm", "--hub", str(hub), "serve",
                             "--http", "127.0.0.1:0"], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "AISMM_NOW": "2026-01-01T00:00:00Z"})
    try:
        assert proc.stderr is not None
        line = ""
        for _ in range(50):
            line = proc.stderr.readline()
            if line.startswith("http: listening on "):
                break
        url = line.split()[-1]
        host, port = url.removeprefix("http://").split(":")
        tip = run_git("rev-parse", "main", cwd=hub / "registry.git").stdout.decode().strip()
        body = (f"0032want {tip}\n".encode() + b"0000" + b"0009done\n")
        head = (f"POST /registry.git/git-upload-pack HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: {basic('platform', token)['Authorization']}\r\n"
                "Content-Type: application/x-git-upload-pack-request\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        with socket.create_connection((host, int(port))) as client:
            client.sendall(head + body[:10])  # a slow client, mid-request
            time.sleep(0.2)  # let the server read the head (not a timeout we wait out)
            proc.send_signal(signal.SIGTERM)
            _wait_closed(host, int(port))
            client.sendall(body[10:])
            answer = b""
            while chunk := client.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200") and b"PACK" in answer
        assert proc.wait(timeout=60) == 0
        assert not (hub / "run" / "aismm.sock").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_http_bad_addresses_are_one_line_exit_2(
        reference_hub: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests import clikit
    from tests.hubkit import copy_hub

    hub = copy_hub(reference_hub, tmp_path / "hub")
    bad = clikit.run(hub.root, capsys, "serve", "--http", "nope")
    assert bad.code == 2 and bad.err_lines == [
        "aismm: --http nope: not HOST:PORT; give one like 127.0.0.1:8470 (port 0 picks a free "
        "one)"]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        busy = clikit.run(hub.root, capsys, "serve", "--once", "--http", f"127.0.0.1:{port}")
    assert busy.code == 2
    assert busy.err_lines[-1].startswith(f"aismm: --http 127.0.0.1:{port}: cannot listen (")
    assert not (hub.root / "run" / "aismm.sock").exists()  # nothing left behind
