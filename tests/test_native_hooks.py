"""The native hook client: the same fail-safe rule as the Python one, and Python hooks where no
C compiler exists."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from pathlib import Path

import pytest
from hubkit import findings
from test_serve import _clone, _hub

from aismm.core.refs import SOCKET
from aismm.state import provision


def _deliver(clone: Path) -> None:
    (clone / "deliverable").mkdir(exist_ok=True)
    (clone / "deliverable" / "findings.json").write_bytes(findings())
    subprocess.run(["git", "add", "deliverable"], cwd=clone, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "deliver"], cwd=clone, check=True)


def _push(clone: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "push", "origin", "attempts/me"], cwd=clone, text=True,
                          capture_output=True, env={**os.environ, **env}, check=False)


def test_hooks_are_native_where_a_compiler_exists(tmp_path: Path) -> None:
    hub, [created] = _hub(tmp_path)
    assert (hub.root / provision.CLIENT).is_file()
    assert "exec \"$client\" pre-receive" in (created.path / "hooks" / "pre-receive").read_text()
    clone = _clone(created, tmp_path / "clone", tmp_path / "me")
    _deliver(clone)
    pushed = _push(clone)  # no server: the client runs the hook in-process
    assert pushed.returncode == 0, pushed.stderr
    assert "remote: aismm: platform DoD on me: PASS" in pushed.stderr


def test_without_a_compiler_the_hooks_are_python(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CC", raising=False)
    assert provision.build_client(tmp_path) is None
    monkeypatch.undo()
    hooks = tmp_path / "repo.git" / "hooks"
    hooks.mkdir(parents=True)
    provision.install(tmp_path / "repo.git")
    text = (hooks / "post-receive").read_text()
    assert text.startswith("#!") and "aismm-hook: post-receive" in text
    assert 'script("post-receive")' in text and "aismm-hook\" " not in text


def test_the_client_is_compiled_once_per_machine_and_copied_into_each_hub(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = tmp_path / "calls"
    compiler = tmp_path / "cc-logged"
    compiler.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexec cc "$@"\n')
    compiler.chmod(0o755)
    monkeypatch.setenv("CC", str(compiler))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first, second = tmp_path / "first", tmp_path / "second"
    assert provision.build_client(first) == first / provision.CLIENT
    assert len(calls.read_text().splitlines()) == 1
    assert provision.build_client(second) == second / provision.CLIENT
    assert len(calls.read_text().splitlines()) == 1  # the second hub copied the cached build
    [cached] = [p for p in (tmp_path / "cache" / "aismm").iterdir() if p.suffix != ".sha256"]
    client = second / provision.CLIENT
    assert client.read_bytes() == cached.read_bytes() == (first / provision.CLIENT).read_bytes()
    assert os.access(client, os.X_OK) and client.stat().st_ino != cached.stat().st_ino
    cached.write_bytes(cached.read_bytes()[:100])  # a cache gone bad is not trusted: compiled
    assert provision.build_client(tmp_path / "third") == tmp_path / "third" / provision.CLIENT
    assert len(calls.read_text().splitlines()) == 2
    assert (tmp_path / "third" / provision.CLIENT).read_bytes() == client.read_bytes()
    assert cached.read_bytes() == client.read_bytes()  # and the cache mended


@pytest.mark.parametrize("where", ["a file in the way", "no home folder"])
def test_without_a_usable_cache_each_hub_compiles_its_client(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    if where == "a file in the way":
        blocked = tmp_path / "not-a-folder"
        blocked.write_text("")
        monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    else:
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
        monkeypatch.delenv("HOME")
        monkeypatch.setattr("pwd.getpwuid", _no_such_user)
    assert provision.build_client(tmp_path / "hub") == tmp_path / "hub" / provision.CLIENT
    assert os.access(tmp_path / "hub" / provision.CLIENT, os.X_OK)


def _no_such_user(uid: int) -> object:
    raise KeyError(f"getpwuid(): uid not found: {uid}")


@pytest.mark.parametrize(("behaviour", "whys"), [
    ("silent", ("did not answer in time",)),
    ("hangs up", ("closed without an answer", "dropped the request")),  # as the race falls
])
def test_a_server_that_does_not_answer_refuses_the_push(tmp_path: Path, behaviour: str,
                                                        whys: tuple[str, ...]) -> None:
    hub, [created] = _hub(tmp_path)
    clone = _clone(created, tmp_path / "clone", tmp_path / "me")
    _deliver(clone)
    before = subprocess.run(["git", "-C", str(created.path), "rev-parse", "attempts/me"],
                            capture_output=True, text=True, check=True).stdout
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
                conn.recv(1 << 16)
                conn.close()
            else:
                held.append(conn)  # accepted, never answered

    threading.Thread(target=serve, daemon=True).start()
    try:
        pushed = _push(clone, AISMM_HOOK_TIMEOUT="1")
    finally:
        listener.close()
        for conn in held:
            conn.close()
    assert pushed.returncode != 0
    assert any(f"remote: aismm: the hub's server {why}; the push was refused to stay safe"
               in pushed.stderr for why in whys), pushed.stderr
    after = subprocess.run(["git", "-C", str(created.path), "rev-parse", "attempts/me"],
                           capture_output=True, text=True, check=True).stdout
    assert after == before


def test_a_raw_request_takes_newlines_only_as_separators() -> None:
    from aismm.hook import parse_raw

    good = parse_raw(b"AISMM/1 pre-receive\ngit_dir=/h/missions/m.git\npusher=alice\n", b"")
    assert (good["git_dir"], good["pusher"]) == ("/h/missions/m.git", "alice")
    for head in (b"AISMM/1 pre-receive\ngit_dir=/h/m.git\npusher=alice\rpusher=\n",
                 b"AISMM/1 pre-receive\ngit_dir=/h/m.git\npusher=x\x1cgit_dir=/h/o.git\n",
                 b"AISMM/1 pre-receive\ngit_dir=/h/m.git\ngit_dir=/h/o.git\n"):
        with pytest.raises(ValueError):
            parse_raw(head, b"")
