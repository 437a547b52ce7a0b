"""git smart HTTP: stock ``git http-backend`` behind the app, in a clean CGI environment.

Only three paths per repository are served (``info/refs?service=...``, ``git-upload-pack``,
``git-receive-pack``); dumb HTTP and every other file are refused (``http.getanyfile=false``).
The environment is built from nothing: ``REMOTE_USER`` and ``AISMM_PUSHER`` are the actor the
token proved, so the gate's pusher is an identity no client can set. A request body is read
whole, within the hub's push limit, before git starts (an oversized push changes nothing), then
fed to ``git http-backend`` while its answer streams back; a client that vanishes leaves the
push to finish on its own.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import IO

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from aismm.core.errors import AismmError
from aismm.infra.hub import Hub
from aismm.web import access, auth

__all__ = ["PATH", "Backend", "error"]

PATH = re.compile(r"^/(?P<repo>registry\.git|missions/(?P<mission>[a-z][a-z0-9-]{2,62})\.git)"
                  r"/(?P<what>info/refs|git-upload-pack|git-receive-pack)$")
SERVICES = ("git-upload-pack", "git-receive-pack")
_PROTOCOL = re.compile(r"^[A-Za-z0-9=:._-]{1,64}$")  # Git-Protocol: version=2 and the like
CHUNK = 1 << 16


def error(status: int, text: str, headers: dict[str, str] | None = None) -> Response:
    """A one-line plain-text refusal (git shows it to the user)."""
    return PlainTextResponse(f"aismm: {text}\n", status_code=status, headers=headers)


def _unauthorized(what: str) -> Response:
    return error(401, f"{what}; give your actor id as user and a token from `aismm token "
                 "create` as password",
                 {"WWW-Authenticate": 'Basic realm="aismm", charset="UTF-8"'})


@dataclass
class Backend:
    """The CGI bridge for one hub (the set of running backends lets shutdown drain them)."""

    hub: Hub
    running: set[asyncio.Task[None]] = field(default_factory=set)

    async def handle(self, request: Request) -> Response:
        match = PATH.match(request.url.path)
        if match is None:
            return error(404, f"{request.url.path}: no such repository path")
        what, mission = match["what"], match["mission"]
        service = request.query_params.get("service") if what == "info/refs" else what
        if (what == "info/refs" and request.method != "GET") or \
                (what != "info/refs" and request.method != "POST"):
            return error(405, f"{request.method} {request.url.path}: method not allowed")
        if service not in SERVICES:
            return error(403, "dumb HTTP is off; use a git that speaks smart HTTP")
        actor = await run_in_threadpool(auth.actor_of, self.hub, request.headers.get(
            "authorization"))
        if actor is None:
            return _unauthorized("missing or bad credentials" if request.headers.get(
                "authorization") else "authentication required")
        hidden: tuple[str, ...] = ()
        if mission is not None:
            if not self.hub.mission_path(mission).is_dir():
                return error(404, f"{mission}: no such mission")
            try:
                rule = await run_in_threadpool(access.mission_access, self.hub, mission, actor)
            except AismmError as exc:
                return error(404, str(exc))
            if not rule.read:
                return error(403, f"{actor} may not read mission {mission}; ask its client")
            hidden = rule.hidden
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        env = self._environment(request, match["repo"], what, actor, hidden, body)
        return await self._run(env, body)

    async def _body(self, request: Request) -> IO[bytes] | Response:
        """The request body in a spooled file, or a 413 past the hub's push limit."""
        limit = self.hub.config.limits.max_push_bytes
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return error(413, f"request body of {declared} bytes is over the hub's push limit "
                         f"of {limit} bytes; push less at a time")
        spool = tempfile.SpooledTemporaryFile(max_size=1 << 20)  # noqa: SIM115 - handed on
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    spool.close()
                    return error(413, f"request body over the hub's push limit of {limit} "
                                 "bytes; push less at a time")
                spool.write(chunk)
        except ClientDisconnect:
            spool.close()
            return error(400, "the client went away mid-request")
        spool.seek(0)
        return spool

    def _environment(self, request: Request, repo: str, what: str, actor: str,
                     hidden: tuple[str, ...], body: IO[bytes]) -> dict[str, str]:
        """The CGI environment, from nothing but what this request proved and said."""
        config = [("http.getanyfile", "false"), ("http.uploadpack", "true"),
                  ("http.receivepack", "true"), ("uploadpack.allowAnySHA1InWant", "false"),
                  ("uploadpack.allowReachableSHA1InWant", "false"),
                  ("uploadpack.allowTipSHA1InWant", "false"),
                  ("uploadpack.allowRefInWant", "false"),
                  *(("transfer.hideRefs", ref) for ref in hidden)]
        body.seek(0, os.SEEK_END)
        length = body.tell()
        body.seek(0)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.hub.root), "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
            "HOME": str(self.hub.root / "run"),
            "REQUEST_METHOD": request.method, "PATH_INFO": f"/{repo}/{what}",
            "QUERY_STRING": request.url.query, "REMOTE_USER": actor, "AISMM_PUSHER": actor,
            "REMOTE_ADDR": request.client.host if request.client else "",
            "CONTENT_TYPE": request.headers.get("content-type", ""),
            "GIT_CONFIG_COUNT": str(len(config)),
        }
        if request.method == "POST":
            env["CONTENT_LENGTH"] = str(length)
        encoding = request.headers.get("content-encoding")
        if encoding in ("gzip", "x-gzip"):
            env["HTTP_CONTENT_ENCODING"] = encoding
        protocol = request.headers.get("git-protocol", "")
        # a reader with hidden refs gets protocol v0: v2's fetch hands out any object by id,
        # v0 over HTTP serves only what the advertised (unhidden) refs reach
        if protocol and not hidden and _PROTOCOL.match(protocol):
            env["GIT_PROTOCOL"] = protocol
        for i, (key, value) in enumerate(config):
            env[f"GIT_CONFIG_KEY_{i}"], env[f"GIT_CONFIG_VALUE_{i}"] = key, value
        return env

    async def _run(self, env: dict[str, str], body: IO[bytes]) -> Response:
        git = shutil.which("git", path=env["PATH"]) or "git"
        try:
            proc = await asyncio.create_subprocess_exec(
                git, "http-backend", env=env, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        except OSError as exc:
            body.close()
            return error(502, f"cannot run git http-backend ({exc.strerror or exc}); install "
                         "git on the hub")
        stdin, stdout = proc.stdin, proc.stdout
        if stdin is None or stdout is None:  # both were asked for as pipes: never, in practice
            proc.kill()
            await proc.wait()
            body.close()
            return error(502, "git http-backend started without its pipes; see the hub's log")

        async def feed() -> None:
            try:
                while chunk := body.read(CHUNK):
                    stdin.write(chunk)
                    await stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                pass  # git answered before reading it all (an error): its answer says why
            finally:
                body.close()
                stdin.close()

        feeding = asyncio.create_task(feed())
        head = b""
        while b"\r\n\r\n" not in head and b"\n\n" not in head:
            chunk = await stdout.read(CHUNK)
            if not chunk:
                break
            head += chunk
            if len(head) > 1 << 16:
                break
        cut = head.find(b"\r\n\r\n")
        sep = 4 if cut >= 0 else 2
        cut = cut if cut >= 0 else head.find(b"\n\n")
        if cut < 0:
            proc.kill()  # it may still be writing to a pipe nobody reads
            await proc.wait()
            await feeding
            return error(502, "git http-backend gave no answer; see the hub's log")
        status, headers = 200, {}
        for line in head[:cut].decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.split()[0])
            elif key:
                headers[key.strip()] = value.strip()
        rest = head[cut + sep:]

        async def stream() -> AsyncIterator[bytes]:
            done = False
            try:
                if rest:
                    yield rest
                while chunk := await stdout.read(CHUNK):
                    yield chunk
                done = True
            finally:
                if not done:  # the client went away: the push still finishes, unheard
                    task = asyncio.get_running_loop().create_task(
                        self._drain(proc, stdout, feeding))
                    self.running.add(task)
                    task.add_done_callback(self.running.discard)
                else:
                    await feeding
                    await proc.wait()

        return StreamingResponse(stream(), status_code=status, headers=headers)

    @staticmethod
    async def _drain(proc: asyncio.subprocess.Process, stdout: asyncio.StreamReader,
                     feeding: asyncio.Task[None]) -> None:
        while await stdout.read(CHUNK):
            pass
        await feeding
        await proc.wait()
