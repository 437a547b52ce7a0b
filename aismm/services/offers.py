"""Offers: telling an agent that the hub assigned it work.

A mission's creation is the offer: the ref-state log's time of the event that created its
``main`` is when the work was offered (``offered_at``), and it is what ``aismm agent inbox``
shows. When the mission is created, every assigned agent whose manifest names a ``notify`` URL
also gets a small JSON POST, ``{agent, mission, contract, clone, offered_at}``: best effort, in
the background, with a short timeout, never failing or delaying the mission (the inbox stays
the record). :mod:`aismm.services.events` calls :func:`announce` for each batch it logs, so
every way of creating a mission (the CLI, benchmark missions of an assessment, orchestrators)
announces it.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict
from urllib.parse import urlsplit

from aismm.core.refs import ATTEMPT, MAIN
from aismm.infra.git import ZERO, Repo
from aismm.infra.hub import Hub
from aismm.infra.store import Store
from aismm.state import registry
from aismm.state.policy import load_policy

if TYPE_CHECKING:
    import http.client

__all__ = ["TIMEOUT_SECONDS", "Notice", "Offer", "announce", "notify", "offer_time",
           "offered_agents"]

TIMEOUT_SECONDS = 3.0
"""How long the hub waits for a notify URL to connect and answer (each, per POST)."""


class Offer(TypedDict):
    """What a notify URL receives (and an inbox row starts from)."""

    agent: str
    mission: str
    contract: str
    clone: str
    offered_at: str


@dataclass(frozen=True)
class Notice:
    """The outcome of one POST: ``status`` is the HTTP status, None when none came back."""

    url: str
    status: int | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def offer_time(store: Store, mission_id: str) -> str | None:
    """When the work of a mission was offered: the log's time of the event creating its main."""
    history = store.ref_history(f"missions/{mission_id}.git", MAIN)
    return history[0][1] if history else None


def offered_agents(updates: list[tuple[str, str, str]]) -> list[str]:
    """The agents a batch of logged updates offers work to: those whose ``attempts/<agent>``
    branch is created in the same batch as ``main`` (only a mission's creation does that)."""
    if not any(ref == MAIN and old == ZERO for old, _new, ref in updates):
        return []
    return [ref[len(ATTEMPT):] for old, _new, ref in updates
            if ref.startswith(ATTEMPT) and old == ZERO]


def announce(hub: Hub, repo_path: Path, updates: list[tuple[str, str, str]],
             at: str) -> list[threading.Thread]:
    """POST the offer to the notify URL of every agent a mission's creation assigns.

    Returns the background threads (already started; callers need not wait for them). Any
    problem reading the mission or the manifests is the offer's, not the mission's: nothing is
    sent and nothing is raised.
    """
    agents = offered_agents(updates)
    if not agents or repo_path.parent.resolve() != hub.missions_dir.resolve():
        return []
    mission_id = repo_path.name.removesuffix(".git")
    try:
        policy = load_policy(Repo(repo_path))
        manifests = registry.manifests(hub)
    except Exception:  # best effort: a broken registry or mission is reported elsewhere
        return []
    if policy is None:
        return []
    threads = []
    for agent in agents:
        man = manifests.get(agent)
        if man is None or man.notify is None:
            continue
        offer: Offer = {"agent": agent, "mission": mission_id,
                        "contract": policy.doc.contract.ref,
                        "clone": str(hub.mission_path(mission_id)), "offered_at": at}
        # not a daemon: a CLI that created the mission still sends it before exiting
        thread = threading.Thread(target=notify, args=(man.notify, offer),
                                  name=f"aismm-notify-{agent}", daemon=False)
        thread.start()
        threads.append(thread)
    return threads


def notify(url: str, offer: Offer, timeout: float | None = None) -> Notice:
    """POST one offer as JSON to ``url``: no redirects followed, no proxy, never raises."""
    import http.client  # noqa: PLC0415 - http, ssl and email only when an offer is sent

    wait = TIMEOUT_SECONDS if timeout is None else timeout
    body = json.dumps(offer, sort_keys=True).encode()
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        conn: http.client.HTTPConnection = (
            http.client.HTTPSConnection(host, parts.port, timeout=wait)
            if parts.scheme == "https" else
            http.client.HTTPConnection(host, parts.port, timeout=wait))
        try:
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            conn.request("POST", path, body=body, headers={
                "Content-Type": "application/json", "User-Agent": "aismm-hub",
                "X-Aismm-Event": "offer"})
            response = conn.getresponse()
            response.read(65536)
            return Notice(url, response.status, None)
        finally:
            conn.close()
    except Exception as exc:  # best effort: a dead or slow endpoint is the agent's business
        return Notice(url, None, f"{type(exc).__name__}: {exc}")
