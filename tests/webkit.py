"""Test helpers for the HTTP face: a hub served by ``aismm serve --http 127.0.0.1:0`` in a
thread of the test process, tokens for the cast, and the real git CLI with a credential helper."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aismm.core.model import dump_yaml, load_yaml
from aismm.infra.hub import Hub
from aismm.serve import Server
from aismm.services import tokens
from tests.hubkit import Kit, make_kit, run_git

__all__ = ["Web", "basic", "credentials", "serve_kit", "serving"]


def credentials(user: str, token: str) -> list[str]:
    """git options: a credential helper that answers ``user`` / ``token`` (and nothing else)."""
    helper = f"!f() {{ echo username={user}; echo password={token}; }}; f"
    return ["-c", "credential.helper=", "-c", f"credential.helper={helper}"]


def basic(user: str, token: str) -> dict[str, str]:
    """An ``Authorization: Basic`` header."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()}


@dataclass
class Web:
    """A served hub: the kit, the base URL, a token per actor, the server's log."""

    kit: Kit
    url: str
    server: Server
    log: list[str]
    tokens: dict[str, str] = field(default_factory=dict)

    def token(self, actor: str) -> str:
        if actor not in self.tokens:
            self.tokens[actor] = str(tokens.create(self.kit.hub, actor)["token"])
        return self.tokens[actor]

    def remote(self, mission_id: str) -> str:
        return f"{self.url}/missions/{mission_id}.git"

    def git(self, actor: str | None, *args: str, cwd: Path | None = None, check: bool = True,
            env: dict[str, str] | None = None) -> tuple[int, str]:
        """git as ``actor`` (no credentials when None); (exit status, stderr+stdout text)."""
        auth = credentials(actor, self.token(actor)) if actor else ["-c", "credential.helper="]
        proc = run_git(*auth, *args, cwd=cwd, check=check,
                       env={"GIT_TERMINAL_PROMPT": "0", **(env or {})})
        return proc.returncode, (proc.stderr + proc.stdout).decode("utf-8", "replace")


def serving(root: Path, max_push_bytes: int | None = None) -> Iterator[Web]:
    """A fresh kit hub served over HTTP until the generator is closed."""
    kit = make_kit(root)
    if max_push_bytes is not None:
        config = kit.hub.root / "hub.yaml"
        data = load_yaml(config.read_text(), str(config))
        data.setdefault("limits", {})["max_push_bytes"] = max_push_bytes
        config.write_text(dump_yaml(data))
        kit.hub = Hub(kit.hub.root, clock=kit.hub.clock)
    yield from serve_kit(kit)


def serve_kit(kit: Kit) -> Iterator[Web]:
    """Serve ``kit.hub`` over HTTP (in a thread of this process) until the generator is closed."""
    log: list[str] = []
    server = Server(kit.hub, log.append, 5.0, ("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(2000):  # bounded: the server binds at once
        if any(line.startswith("http: listening on ") for line in log):
            break
        time.sleep(0.005)
    url = next(line for line in log if line.startswith("http: ")).split()[-1]
    try:
        yield Web(kit, url, server, log)
    finally:
        server.stop.set()
        server.wake.set()
        thread.join(30)
