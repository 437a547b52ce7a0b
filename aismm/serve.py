"""``aismm serve``: the resident hub process.

It answers the thin hooks over ``<hub>/run/aismm.sock`` (warm imports: a push costs a socket
round trip instead of a Python start-up), drains the event outbox, applies timers and runs the
reconciler periodically, and watches the repositories with watchdog: file events are hints that
trigger a rescan of refs, and a ref that moved without passing the gate (a write that skipped the
hooks) is judged after the fact and put back if the gate rejects it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import socketserver
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import cast

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from aismm.core.errors import AismmError, ConflictError
from aismm.core.refs import SOCKET
from aismm.hook import Request, handle, parse_raw, unix_address
from aismm.infra import warm
from aismm.infra.hub import Hub
from aismm.infra.store import Store, group_commit
from aismm.services import judged, orchestration, settlement, worker
from aismm.web.server import HttpServer

__all__ = ["Server", "rescan"]

Log = Callable[[str], None]
MAX_STDIN = 16 << 20  # ref lines of one push; far more than git ever sends
SLOW_SWEEP = 60.0  # seconds between full sweeps of every repository (hints do the rest)


class _Activity:
    """Which repositories have a hook request in flight (the watcher leaves those alone: the
    hub's own writes during a push move refs just before they are logged)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy: dict[str, int] = {}
        self._seen: dict[str, int] = {}

    def begin(self, repo: str) -> None:
        with self._lock:
            self._busy[repo] = self._busy.get(repo, 0) + 1
            self._seen[repo] = self._seen.get(repo, 0) + 1

    def end(self, repo: str) -> None:
        with self._lock:
            self._busy[repo] -= 1
            self._seen[repo] += 1

    def names(self) -> list[str]:
        with self._lock:
            return list(self._busy)

    def stamp(self, repo: str) -> tuple[int, int]:
        """(requests in flight, requests begun or ended so far) for one repository."""
        with self._lock:
            return self._busy.get(repo, 0), self._seen.get(repo, 0)


class _Handler(socketserver.StreamRequestHandler):
    """One hook request: JSON from the Python hook scripts, or the native client's raw form."""

    def handle(self) -> None:
        server = cast(_SocketServer, self.server)  # the server this handler belongs to
        repo: str | None = None
        raw = False
        try:
            first = self.rfile.readline(1 << 20)
            raw = first.startswith(b"AISMM/1 ")
            request = self._raw(first) if raw else json.loads(first)
            repo = Path(request["git_dir"]).resolve().relative_to(server.hub.root).as_posix()
            server.activity.begin(repo)
            # No lock: the outbox claim already makes each event's processing exclusive.
            code, lines = handle(request, {server.hub.root: server.hub})
            if code == 0 and request.get("hook") == "pre-receive":
                for line in str(request.get("stdin", "")).splitlines():
                    parts = line.split()
                    if len(parts) == 3:
                        server.approved.add((repo, parts[2], parts[0], parts[1]))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            code, lines = 1, [f"aismm: malformed hook request ({exc}); refused"]
        finally:
            if repo is not None:
                server.activity.end(repo)
                server.wake.set()  # the loop looks at this repository now, not at the interval
        # This request's own lines only; the server's log never goes to a pusher.
        if raw:
            self.wfile.write(f"{code}\n".encode() + "".join(f"{x}\n" for x in lines).encode())
            return
        answer = {"code": code, "lines": lines, "stderr": "".join(f"{x}\n" for x in lines)}
        self.wfile.write(json.dumps(answer).encode() + b"\n")

    def _raw(self, first: bytes) -> Request:
        head = [first]
        while (line := self.rfile.readline(1 << 16)) not in (b"\n", b""):
            head.append(line)
        fields = dict(x.decode("utf-8", "replace").rstrip("\n").partition("=")[::2]
                      for x in head[1:])
        length = int(fields.get("length", "0"))
        if not 0 <= length <= MAX_STDIN:
            raise ValueError(f"length {length} out of range")
        return parse_raw(b"".join(head), self.rfile.read(length))


class _SocketServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, hub: Hub, wake: threading.Event) -> None:
        self.hub = hub
        self.wake = wake
        self.approved: set[tuple[str, str, str, str]] = set()  # (repo, ref, old, new) judged
        self.activity = _Activity()
        super().__init__(path, _Handler)


def rescan(hub: Hub, log: Log, approved: set[tuple[str, str, str, str]] | None = None,
           activity: _Activity | None = None, reported: set[str] | None = None,
           only: set[str] | None = None) -> None:
    """Judge every ref move the ref-state log never saw (in ``only`` those repositories, else
    in all, the registry's included); restore what the gate rejects
    (:func:`aismm.services.judged.sweep`).

    A repository with a hook request in flight (``activity``) is skipped until the next pass:
    its refs move just before they are logged. Trouble with one repository is logged (once per
    distinct message when ``reported`` is given) and never stops the scan of the others.
    """
    busy = {name for name in (activity.names() if activity is not None else [])
            if activity is not None and activity.stamp(name)[0]}
    for line in judged.sweep(hub, approved or set(), skip=busy, only=only):
        if ": incident: " in line:
            continue  # recorded in the incidents table; the loop logs those (Server._incidents)
        text = line.removeprefix("aismm: ")
        if reported is None or text not in reported:
            log(text)
            if reported is not None:
                reported.add(text)
    if approved and only is None:  # forget approvals the log now holds (or were overtaken)
        approved.clear()


# What the watches ask the kernel for (the inotify mask): writes only. Every read of a ref
# (each `git` command, each lookup of ours) would otherwise raise an open and a close-nowrite
# event that the watcher threads read and decode only for _Hints to drop: about a fifth of
# serve's CPU per mission. Git moves a ref by a rename over it (or of packed-refs), writes one
# in place with a close-after-write, and deletes one: those are the events kept.
WRITES: list[type[FileSystemEvent]] = [
    FileCreatedEvent, DirCreatedEvent, FileDeletedEvent, DirDeletedEvent, FileMovedEvent,
    DirMovedEvent, FileClosedEvent]


class _Hints(FileSystemEventHandler):
    """Wake the loop when a ref really moves, naming the repository it moved in.

    Git moves a ref by renaming ``<ref>.lock`` over it (or rewriting ``packed-refs``); reading
    refs (``opened``, ``closed_no_write``) is ignored, so the loop's own scans wake nothing.
    Only ``refs/`` and each repository's top folder are watched, never ``objects/``.
    """

    EVENTS = frozenset({"created", "deleted", "modified", "moved", "closed"})

    def __init__(self, hub: Hub, dirty: set[str], wake: threading.Event,
                 watch: Callable[[Path], None]) -> None:
        self.root, self.dirty, self.wake, self.watch = hub.root, dirty, wake, watch

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in self.EVENTS:
            return
        for raw in (event.src_path, getattr(event, "dest_path", "") or ""):
            path = Path(os.fsdecode(raw))
            try:
                parts = path.relative_to(self.root).parts
            except ValueError:
                continue
            at = 1 if parts[:1] == ("registry.git",) else 2
            if len(parts) < at or not parts[at - 1].endswith(".git") or \
                    parts[at - 1].startswith("."):
                continue  # not a repository, or one being built (renamed into place when done)
            name = "/".join(parts[:at])
            if len(parts) == at and event.event_type in ("created", "moved"):
                self.watch(self.root / name)  # a new mission renamed into place
            elif not _is_ref(parts[at:]):
                continue
            self.dirty.add(name)
            self.wake.set()


def _is_ref(inside: tuple[str, ...]) -> bool:
    """Whether a path inside a repository is a ref (``refs/...``, not a lock) or packed-refs."""
    if inside == ("packed-refs",):
        return True
    return len(inside) > 1 and inside[0] == "refs" and not inside[-1].endswith(".lock")


class Server:
    """The resident process: socket, outbox, timers, reconciler, watcher."""

    def __init__(self, hub: Hub, log: Log, interval: float = 5.0,
                 http: tuple[str, int] | None = None) -> None:
        self.hub, self.log, self.interval = hub, log, interval
        self.http = http  # (host, port) for the HTTP face (aismm.web), or None
        self.web: HttpServer | None = None
        self.wake = threading.Event()
        self.stop = threading.Event()
        self.socket_path = hub.root / SOCKET
        self.approved: set[tuple[str, str, str, str]] = set()
        self.activity: _Activity | None = None
        self.reported: set[str] = set()  # problems already logged (logged once, not per pass)
        self.stragglers = 0  # outbox ids pending since the previous full pass
        self.dirty: set[str] = set()  # repositories whose refs moved since the last pass
        self.incident = 0  # the last incident logged: whoever put a ref back, serve reports it

    def run(self, once: bool = False) -> None:
        """Serve until interrupted (or one pass with ``once``)."""
        with group_commit(self.hub.db_path):  # one writer: outbox and ledger, group commit
            self._run(once)

    def _run(self, once: bool) -> None:
        server = self._listen()
        self.approved, self.activity = server.approved, server.activity
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        web = None
        if self.http is not None:
            try:
                web = self.web = HttpServer(self.hub, *self.http)
            except AismmError:
                server.shutdown()
                server.server_close()
                self.socket_path.unlink(missing_ok=True)
                raise
        if threading.current_thread() is threading.main_thread() and not once:
            # SIGTERM: stop accepting, finish running pushes, exit (like Ctrl-C)
            signal.signal(signal.SIGTERM, self._terminate)
        warnings.filterwarnings("ignore", category=RuntimeWarning, module="watchdog")
        observer = Observer()
        watched: set[Path] = set()

        def watch(repo: Path) -> None:
            if repo in watched or not (repo / "refs").is_dir():
                return
            watched.add(repo)
            observer.schedule(hints, str(repo / "refs"), recursive=True, event_filter=WRITES)
            observer.schedule(hints, str(repo), recursive=False,  # packed-refs
                              event_filter=WRITES)

        hints = _Hints(self.hub, self.dirty, self.wake, watch)
        observer.schedule(hints, str(self.hub.missions_dir), recursive=False,  # new missions
                          event_filter=WRITES)
        for repo in [self.hub.registry_path, *self.hub.missions_dir.glob("*.git")]:
            watch(repo)
        observer.start()
        with Store(self.hub.db_path) as store:
            known = store.incidents()
        self.incident = known[-1].id if known else 0
        workers = warm.Pool()  # sandboxed runs start in warm workers (one-shot as a fallback)
        for why in [] if once else workers.install():
            self.log(f"warm sandbox workers: {why}; runs start one-shot")
        self.log(f"serving {self.hub.root} on {self.socket_path}")
        if web is not None:
            web.start()
            self.log(f"http: listening on {web.url}")
        try:
            due, sweep_due = 0.0, 0.0
            while not self.stop.is_set():
                now = time.monotonic()
                full = now >= due  # timers, the reconciler and stragglers: on the interval
                sweep = now >= sweep_due  # every repository, hints or not: slowly
                self._pass(full, sweep)
                if full:
                    due = time.monotonic() + self.interval
                if sweep:
                    sweep_due = time.monotonic() + max(self.interval, SLOW_SWEEP)
                if once:
                    break
                self.wake.wait(max(0.0, min(due, sweep_due) - time.monotonic()))
                self.wake.clear()
        finally:
            if web is not None:  # first: its pushes still need the hook socket
                web.stop()
            workers.close()
            if workers.started:
                self.log(f"warm sandbox workers ran {workers.warm_runs} sandboxed run(s)")
            observer.stop()
            server.shutdown()
            server.server_close()
            self.socket_path.unlink(missing_ok=True)

    def _terminate(self, *_: object) -> None:
        self.stop.set()
        self.wake.set()

    def _listen(self) -> _SocketServer:
        path = str(self.socket_path)
        if self.socket_path.exists():
            with socket.socket(socket.AF_UNIX) as probe:
                try:
                    unix_address(self.socket_path, probe.connect)
                except OSError:
                    self.socket_path.unlink()  # a stale socket from a crashed server
                else:
                    raise ConflictError(f"{path}: another `aismm serve` is running; stop it first")
        old = os.umask(0o177)
        try:
            return unix_address(self.socket_path,
                                lambda address: _SocketServer(address, self.hub, self.wake))
        finally:
            os.umask(old)

    def _incidents(self) -> None:
        """Log every incident recorded since the last pass (by this loop or any command)."""
        with Store(self.hub.db_path) as store:
            for row in store.incidents(after=self.incident):
                self.incident = row.id
                put = (row.restored or "")[:12] or "nothing (deleted)"
                self.log(f"{row.repo} {row.ref}: incident: a write that skipped the gate "
                         f"was refused ({row.reason}); put back to {put}")

    def _pass(self, full: bool = True, sweep: bool = True) -> None:
        """One pass of the loop (only the loop runs it: the socket threads take no part)."""
        try:
            changed = set(self.dirty)
            self.dirty -= changed  # in place: the watcher (_Hints) adds to this very set
            if sweep or changed:
                rescan(self.hub, self.log, self.approved, self.activity, self.reported,
                       only=None if sweep else changed)
                if self.activity is not None:  # skipped while busy: look again next pass
                    self.dirty |= {n for n in changed if self.activity.stamp(n)[0]}
            if self.hub.config.processing == "daemon":
                lines = worker.process(self.hub)
            elif full:  # inline: pushes process their own events and report them; the
                # loop only picks up stragglers already pending at the previous pass
                lines = worker.process(self.hub, max_id=self.stragglers)
            else:
                lines = []
            if full:  # timers and the reconciler walk every mission: on the interval only
                with Store(self.hub.db_path) as store:
                    self.stragglers = store.max_event_id()
                lines = settlement.reconcile(self.hub) + lines + settlement.tick(self.hub)
                lines += orchestration.timers(self.hub)
            for line in lines:
                if "nothing to finish" not in line:
                    self.log(line.removeprefix("aismm: "))
            self._incidents()
        except AismmError as exc:
            self.log(f"error: {exc}")
        except Exception as exc:  # the daemon outlives any one bad pass
            self.log(f"error: {type(exc).__name__}: {exc}")
