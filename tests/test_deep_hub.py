"""A hub in a deep folder: its socket path is longer than an AF_UNIX address holds (107 bytes).

``aismm serve`` binds it, and both hook clients (the native one and the Python fallback) reach
it, through the folder's descriptor (``/proc/self/fd/N/aismm.sock``). Before, serve died with
``AF_UNIX path too long`` and the clients silently judged in-process.
"""

from __future__ import annotations

import socket
import stat
import threading
from pathlib import Path

import pytest

from aismm.core.refs import SOCKET
from aismm.hook import unix_address
from aismm.state import provision
from test_native_hooks import _deliver, _push
from test_serve import _clone, _hub, _start, _stop


def _deep(tmp_path: Path) -> Path:
    """A folder deep enough that ``<hub>/run/aismm.sock`` is over 107 bytes."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    assert len(str(deep / "hub" / SOCKET)) > 108
    return deep


def test_serve_binds_its_socket_in_a_deep_folder_and_a_push_is_served(tmp_path: Path) -> None:
    deep = _deep(tmp_path)
    hub, [created] = _hub(deep)
    proc = _start(hub, deep / "serve.log")
    try:
        sock = hub.root / SOCKET
        assert stat.S_ISSOCK(sock.stat().st_mode)  # bound where the clients look for it
        clone = _clone(created, deep / "clone", deep / "me")
        _deliver(clone)
        pushed = _push(clone)
        assert pushed.returncode == 0, pushed.stderr
        assert "remote: aismm: platform DoD on me: PASS" in pushed.stderr
    finally:
        _stop(proc)
    assert "AF_UNIX" not in (deep / "serve.log").read_text()


@pytest.mark.parametrize("client", ["native", "python"])
def test_both_hook_clients_reach_a_server_in_a_deep_folder(tmp_path: Path, client: str) -> None:
    deep = _deep(tmp_path)
    hub, [created] = _hub(deep)
    if client == "python":  # no native client: the hooks are the Python fallback
        (hub.root / provision.CLIENT).unlink()
        provision.install(created.path)
    hook = (created.path / "hooks" / "pre-receive").read_text()
    assert ('exec "$client" pre-receive' in hook) == (client == "native")
    assert ('script("pre-receive")' in hook) == (client == "python")
    clone = _clone(created, deep / "clone", deep / "me")
    _deliver(clone)
    before = created.path.joinpath("refs/heads/attempts/me").read_text()
    listener = socket.socket(socket.AF_UNIX)
    unix_address(hub.root / SOCKET, listener.bind)
    listener.listen(4)

    def hang_up() -> None:  # takes the request and closes: a client that reached it refuses
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.recv(1 << 16)
            conn.close()

    threading.Thread(target=hang_up, daemon=True).start()
    try:
        pushed = _push(clone)
    finally:
        listener.close()
    # a client that could not reach the socket would have judged in-process and taken the push
    assert pushed.returncode != 0
    assert "the push was refused to stay safe" in pushed.stderr, pushed.stderr
    assert created.path.joinpath("refs/heads/attempts/me").read_text() == before
