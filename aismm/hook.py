"""Server-side hooks: the code the thin hook scripts (or the server) run.

The scripts themselves are installed by :mod:`aismm.state.provision`.

A hook first offers its work to a resident ``aismm serve`` over ``<hub>/run/aismm.sock`` (the
native client in C, else :func:`script` here); without one it does the work itself
(:func:`main`). This module's top imports only the standard library: a hook that the server
answers never loads the judging stack, which :func:`handle` imports when it runs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from aismm.infra.git import Repo
    from aismm.infra.hub import Hub

__all__ = ["Request", "handle", "hub_of", "main", "offer", "request_from_env", "script",
           "unix_address"]

# A hook request (also the socket message): hook, stdin, git_dir, object_dir, pusher. Typed
# loosely: it arrives as JSON from a hook script, and a malformed one is refused where read.
Request = dict[str, Any]
SOCKET = "run/aismm.sock"  # aismm.core.refs.SOCKET, repeated: core is not loaded on this path

_T = TypeVar("_T")


def unix_address(path: Path, use: Callable[[str], _T]) -> _T:
    """``use(address)`` with an AF_UNIX address naming ``path``, however deep ``path`` lies.

    A socket address holds at most 107 bytes; a hub in a deep folder names its socket through
    its folder's descriptor instead (``/proc/self/fd/N/aismm.sock``, resolved by the kernel
    like any path), open only while ``use`` binds or connects.
    """
    if len(os.fsencode(path)) < 100:
        return use(str(path))
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return use(f"/proc/self/fd/{fd}/{path.name}")
    finally:
        os.close(fd)
PYCACHE = "run/pycache"  # the package's bytecode, when its own folder is not writable


def hub_of(repo_path: Path) -> Path:
    """The hub a repository belongs to (registry.git or missions/<id>.git)."""
    repo_path = repo_path.resolve()
    for candidate in (repo_path.parent, repo_path.parent.parent):
        if (candidate / "hub.yaml").is_file():
            return candidate
    from aismm.core.errors import AismmError  # noqa: PLC0415 - lean hook path (module doc)

    raise AismmError(f"{repo_path}: not inside an AISMM hub; install hooks only in hub repos")


def _updates(stdin: bytes) -> list[tuple[str, str, str]]:
    out = []
    for line in stdin.decode("utf-8", "replace").splitlines():
        parts = line.split()
        if len(parts) == 3:
            out.append((parts[0], parts[1], parts[2]))
    return out


def request_from_env(name: str, stdin: bytes) -> Request:
    """What a hook needs from its environment, as a plain dict (also the socket message).

    The one place a Python hook builds its request (the native client, hooks/client.c, sends
    the same fields in its raw form, read by :func:`parse_raw`).
    """
    return {
        "hook": name, "stdin": stdin.decode("utf-8", "replace"),
        "git_dir": str(Path(os.environ.get("GIT_DIR", ".")).resolve()),
        "object_dir": os.environ.get("GIT_OBJECT_DIRECTORY") or None,
        "pusher": os.environ.get("AISMM_PUSHER") or os.environ.get("REMOTE_USER") or None,
    }


def _hubs_of(git_dir: str) -> tuple[Path, Path]:
    """Where the hub may be: a repository's parent (registry) or grandparent (missions)."""
    here = Path(git_dir)
    return here.parent, here.parent.parent


def offer(request: Request) -> tuple[int, list[str]] | None:
    """Hand the request to a resident ``aismm serve``: (exit status, this push's lines), or
    None when no server listens (then the hook does the work in-process).

    The native client's rule (hooks/client.c): a server that took the request but does not
    answer in time (15 minutes, or ``AISMM_HOOK_TIMEOUT`` seconds) or breaks the connection
    makes pre-receive refuse the push; post-receive says the push landed unprocessed.
    """
    for hub in _hubs_of(request["git_dir"]):
        path = hub / SOCKET
        if not path.exists():
            continue
        import socket  # noqa: PLC0415 - lean hook path: only when a server may listen

        conn = socket.socket(socket.AF_UNIX)
        try:
            unix_address(path, conn.connect)
        except OSError:
            conn.close()
            return None  # nobody listens: judge in-process
        wait = os.environ.get("AISMM_HOOK_TIMEOUT", "")
        conn.settimeout(int(wait) if wait.isdigit() and int(wait) > 0 else 15 * 60)
        with conn:
            try:
                conn.sendall(json.dumps(request).encode() + b"\n")
            except OSError:
                return _refuse(request["hook"], "dropped the request")
            try:
                answer = json.loads(conn.makefile("rb").readline() or b"null")
            except TimeoutError:
                return _refuse(request["hook"], "did not answer in time")
            except (OSError, ValueError):
                return _refuse(request["hook"], "broke the connection")
        if not isinstance(answer, dict) or not isinstance(answer.get("code"), int):
            return _refuse(request["hook"], "closed without an answer")
        lines = answer.get("lines")  # this push's own lines (older servers: "stderr")
        if not isinstance(lines, list):
            lines = str(answer.get("stderr", "")).splitlines()
        return answer["code"], [str(line) for line in lines]
    return None


def _refuse(hook: str, why: str) -> tuple[int, list[str]]:
    if hook == "pre-receive":
        return 1, [f"aismm: the hub's server {why}; the push was refused to stay safe"]
    return 0, [f"aismm: the hub's server {why}; the push landed but was not processed; run "
               "`aismm process`"]


def script(name: str) -> None:
    """The Python hook script (hooks/hook.py.in, started without ``site`` for speed): offer the
    work to the server, else do it here; then exit without the interpreter's slow teardown."""
    data = sys.stdin.buffer.read()
    request = request_from_env(name, data)
    answered = offer(request)
    if answered is None:
        for hub in _hubs_of(request["git_dir"]):
            if (hub / PYCACHE).is_dir():  # the bytecode compiled at `hub init` (provision)
                sys.pycache_prefix = str(hub / PYCACHE)
        if sys.flags.no_site:
            import site  # noqa: PLC0415 - site-packages only when the work is done here

            site.main()
        from aismm.core.startup import skip_plugin_scan  # noqa: PLC0415 - lean hook path

        skip_plugin_scan()  # this process's own models only (aismm.core.startup)
        answered = handle(request)
    _finish(*answered)


def _finish(code: int, lines: list[str]) -> None:
    sys.stderr.write("".join(f"{line}\n" for line in lines))
    sys.stderr.flush()
    os._exit(code)  # nothing left to tear down: skip the interpreter's slow exit


def handle(request: Request, hubs: dict[Path, Hub] | None = None) -> tuple[int, list[str]]:
    """Run one hook request; return (exit status, the lines for this pusher's stderr).

    Nothing is printed here: the caller (the hook script in-process, or ``aismm serve`` for one
    socket request) sends these lines to the one pusher they belong to.
    """
    if request["hook"] == "post-receive":
        queued = _queue_only(request)
        if queued is not None:
            return 0, queued
    elif hubs is None and _lean(request):
        return 0, []  # allowed as the gate would, without loading it (aismm.state.lean)
    # the judging stack, loaded only when a hook does the work (module doc)
    from aismm.core.errors import (  # noqa: PLC0415
        AismmError,
        GateRejection,
        SandboxError,
    )
    from aismm.gate import rejection_lines  # noqa: PLC0415

    name = request["hook"]
    try:
        return 0, _run(request, hubs)
    except GateRejection as exc:
        return 1, rejection_lines(exc)
    except SandboxError as exc:  # the hub's fault: nothing was judged or committed for it
        if name == "pre-receive":
            return 1, [f"aismm: {exc}"]
        return 0, [f"aismm: {exc}", "aismm: the push landed but was not assessed; fix the "
                   "sandbox, then run `aismm process`"]
    except AismmError as exc:
        return 1, f"aismm: {exc}".splitlines()
    except Exception as exc:  # fail closed, one line, no traceback
        what = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else \
            type(exc).__name__
        if name == "pre-receive":
            return 1, [f"aismm: internal error in {name} ({what}); the push was refused to "
                       "stay safe"]
        # the refs already moved: say so, and how the work gets finished
        return 0, [f"aismm: internal error in {name} ({what}); the push was accepted but not "
                   "yet processed; run `aismm process`"]


_DAEMON = re.compile(r"^processing:[ \t]*daemon[ \t]*(#.*)?$", re.M)
_CREATED = ("0" * 40, "0" * 64)  # the old id of a ref a push creates


def _queue_only(request: Request) -> list[str] | None:
    """A post-receive on a ``processing: daemon`` hub only appends the updates to the outbox:
    done here with ``sqlite3`` alone (no models, no git library), as
    :func:`aismm.services.events.record` would. None when the full path must run instead: an
    inline hub, a push that creates a ref (a new mission's offers are announced there), or
    anything unexpected (the full path then records the same rows; a replay is a no-op)."""
    try:
        git_dir = Path(request["git_dir"]).resolve()
        root = hub_of(git_dir)
        if not _DAEMON.search((root / "hub.yaml").read_text(encoding="utf-8")):
            return None
        updates = _updates(request["stdin"].encode())
        if any(old in _CREATED for old, _new, _ref in updates):
            return None
        fixed = os.environ.get("AISMM_NOW")  # the hub's clock (aismm.core.clock.default_clock)
        moment = dt.datetime.fromisoformat(fixed.replace("Z", "+00:00")) if fixed \
            else dt.datetime.now(dt.UTC)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        from aismm.infra.store import Store  # noqa: PLC0415 - stdlib and sqlite3 only

        with Store(root / "hub.db") as store:
            store.record_updates(git_dir.relative_to(root).as_posix(), updates,
                                 request.get("pusher"),
                                 moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    except Exception:  # the full path decides, and reports, whatever went wrong here
        return None
    return [f"aismm: {len(updates)} update(s) queued for the hub"]


def _lean(request: Request) -> bool:
    """A pre-receive in-process: whether :func:`aismm.state.lean.accepts` can allow it without
    the judging stack. False (the gate then judges in full) on anything unexpected, and when
    ``AISMM_LEAN_HOOK=0`` turns the shortcut off (benchmarks compare both paths)."""
    if os.environ.get("AISMM_LEAN_HOOK") == "0":
        return False
    try:
        from aismm.state import lean  # noqa: PLC0415 - lean hook path (module doc)

        git_dir = Path(request["git_dir"]).resolve()
        return lean.accepts(hub_of(git_dir), git_dir, _updates(request["stdin"].encode()),
                            request.get("pusher"), request.get("object_dir"))
    except Exception:  # the full gate decides, and says why it refuses
        return False


def _remember(hub: Hub, repo: Repo) -> None:
    """Keep what :func:`_lean` needs for this mission and hub, derived from the documents the
    full path reads anyway (never a reason to refuse: the gate below decides)."""
    from aismm.state import lean, policy  # noqa: PLC0415 - lean hook path (module doc)

    with contextlib.suppress(Exception):
        found = policy.load_policy(repo)
        if found is not None:
            lean.remember(hub.root, repo.path, found)


def _run(request: Request, hubs: dict[Path, Hub] | None) -> list[str]:
    from aismm.infra.git import Repo  # noqa: PLC0415 - lean hook path (module doc)
    from aismm.infra.hub import Hub  # noqa: PLC0415
    from aismm.services import judged  # noqa: PLC0415

    git_dir = Path(request["git_dir"])
    root = hub_of(git_dir)
    hub = (hubs or {}).get(root) or Hub(root)
    updates = _updates(request["stdin"].encode())
    if request["hook"] == "pre-receive":
        judged.ensure_registry(hub)  # keys and manifests as judged, never a hook-skipping write
        name = git_dir.resolve().relative_to(hub.root).as_posix()
        if name != judged.REGISTRY:
            # a push builds on the refs it finds: one that moved without the gate is judged
            # (and put back) first, so a forged value is never laundered by a push on top
            judged.ensure(hub, name)
        repo = Repo(git_dir)
        if hubs is None and name != judged.REGISTRY:
            _remember(hub, repo)  # before the objects of the push are visible: main's policy
        if request.get("object_dir"):
            repo.add_objects(request["object_dir"])
        judged.judge(hub, repo, updates, pusher=request.get("pusher"))
        return []

    # post-receive: the event dispatch (every service), which a pre-receive never loads
    from aismm.services import worker  # noqa: PLC0415

    return worker.record_and_process(hub, git_dir, updates, request.get("pusher"))


def main(name: str, stdin: bytes) -> int:
    """The work of a hook in-process (no server answered); returns the exit status."""
    code, lines = handle(request_from_env(name, stdin))
    sys.stderr.write("".join(f"{line}\n" for line in lines))
    sys.stderr.flush()
    return code


def parse_raw(head: bytes, body: bytes) -> Request:
    """A request in the native client's raw form (see hooks/client.c): header lines, then stdin.

    ``head`` holds ``AISMM/1 <hook>`` and ``key=value`` lines; ``body`` the ref lines.
    """
    # split on newlines only: str.splitlines() also splits on \r, \v, \x1c … which the client
    # lets through, so a crafted pusher name could otherwise smuggle in another field
    lines = head.decode("utf-8", "replace").split("\n")
    magic, _, hook = lines[0].partition(" ")
    if magic != "AISMM/1" or hook not in ("pre-receive", "post-receive"):
        raise ValueError("not an aismm hook request")
    fields: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            key, _, value = line.partition("=")
            if key in fields or any(ord(c) < 0x20 for c in value):
                raise ValueError(f"header {key!r} repeated or holds control characters")
            fields[key] = value
    return {"hook": hook, "stdin": body.decode("utf-8", "replace"),
            "git_dir": fields["git_dir"], "object_dir": fields.get("object_dir") or None,
            "pusher": fields.get("pusher") or None}


if __name__ == "__main__":  # the native client's fallback: `python -m aismm.hook HOOK` < stdin
    from aismm.core.startup import skip_plugin_scan

    skip_plugin_scan()
    _finish(*handle(request_from_env(sys.argv[1], sys.stdin.buffer.read())))
