"""The server-rendered pages (Jinja2, autoescaped; no JavaScript build step) and the A2A cards.

Public: the marketplace (``/``), an agent's page and its A2A card. A mission's page and the
account page need credentials (Basic, as git uses, so a browser asks; or Bearer) and follow the
read rules of :mod:`aismm.web.access`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, fields
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from aismm.core.errors import AismmError
from aismm.core.refs import ACCEPTED, ATTEMPT, MAIN, REFUNDED, SETTLED
from aismm.core.reputation import Execution
from aismm.core.safepath import printable
from aismm.core.signing import verify
from aismm.infra.git import Repo
from aismm.infra.hub import Hub
from aismm.infra.ledger import Ledger
from aismm.infra.store import Store
from aismm.services import lifecycle, market, tokens
from aismm.services.mission import open_mission
from aismm.state import registry
from aismm.web import access, auth, chart

__all__ = ["MarketRow", "Pages"]

_ENV = Environment(loader=PackageLoader("aismm.web", "templates"),
                   autoescape=select_autoescape(default=True, default_for_string=True))


def _error(status: int, text: str, basic: bool = False) -> Response:
    headers = {"WWW-Authenticate": 'Basic realm="aismm", charset="UTF-8"'} if basic else None
    return HTMLResponse(f"<!doctype html><title>{status}</title><p>aismm: {_escape(text)}</p>\n",
                        status_code=status, headers=headers)


def _escape(text: str) -> str:
    return str(_ENV.from_string("{{ t }}").render(t=text))


@dataclass(frozen=True)
class MarketRow(market.ListingRow):
    """A listing row on the marketplace page, with its routing score (best over the shown
    contracts; None when not eligible) and its open attempts."""

    score: float | None
    load: int


class Pages:
    """The pages of one hub."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def routes(self) -> list[Route]:
        return [Route("/", self.market), Route("/agents/{agent}", self.agent),
                Route("/agents/{agent}/agent-card.json", self.card),
                Route("/missions/{mission}", self.mission), Route("/account", self.account)]

    # -- the marketplace --------------------------------------------------------------------
    def market_rows(self, contract: str | None) -> list[MarketRow]:
        """Listing rows with the routing score (best over the shown contracts) and the load."""
        known = sorted({c.split("@")[0] for c in registry.contracts(self.hub)})
        rows = market.listing(self.hub, contract)
        score: dict[str, float] = {}
        load: dict[str, int] = {}
        for cid in [contract] if contract else known:
            for r in market.ranking(self.hub, cid):
                if isinstance(r, market.RankedRow):
                    score[r.agent] = max(score.get(r.agent, float("-inf")), r.score)
                    load[r.agent] = r.inputs["open_attempts"]
        out = [MarketRow(**{f.name: getattr(r, f.name) for f in fields(r)},
                         score=score.get(r.agent), load=load.get(r.agent, 0)) for r in rows]
        out.sort(key=lambda r: (r.score is None, -(r.score or 0.0), r.agent))
        return out

    async def market(self, request: Request) -> Response:
        contract = request.query_params.get("contract") or None

        def work() -> Response:
            known = sorted({c.split("@")[0] for c in registry.contracts(self.hub)})
            if contract is not None and contract not in known:
                return _error(400, f"?contract={printable(contract, limit=60)}: no such "
                              "published contract")
            return HTMLResponse(_ENV.get_template("market.html").render(
                rows=self.market_rows(contract), contracts=known, contract=contract))
        return await run_in_threadpool(work)

    # -- an agent ---------------------------------------------------------------------------
    async def agent(self, request: Request) -> Response:
        agent_id = request.path_params["agent"]

        def work() -> Response:
            man = registry.manifests(self.hub).get(agent_id)
            if man is None:
                return _error(404, f"{printable(agent_id, limit=60)}: no such agent")
            with Store(self.hub.db_path) as store:
                runs = store.executions(agent_id)
            listing = next((r for r in market.listing(self.hub) if r.agent == agent_id), None)
            runtime = man.runtime.kind + (f" {man.runtime.url}" if man.runtime.url else "")
            assessed = registry.latest_assessment(self.hub, agent_id)
            return HTMLResponse(_ENV.get_template("agent.html").render(
                man=man, assessment=assessed.to_json() if assessed else None, runtime=runtime,
                chart=chart.trend([Execution.of(r) for r in runs], self.hub.clock.now()),
                listing=listing))
        return await run_in_threadpool(work)

    async def card(self, request: Request) -> Response:
        """The A2A AgentCard of a listed agent."""
        agent_id = request.path_params["agent"]
        base = str(request.base_url).rstrip("/")

        def work() -> Response:
            man = registry.manifests(self.hub).get(agent_id)
            assessed = registry.latest_assessment(self.hub, agent_id) if man else None
            if man is None or assessed is None or not assessed.listed:
                return JSONResponse({"error": f"aismm: {printable(agent_id, limit=60)}: no "
                                     "listed agent of that id"}, status_code=404)
            return JSONResponse({
                "protocolVersion": "0.3.0", "name": man.id,
                "description": man.description or f"{man.id}: an AISMM agent for "
                f"{', '.join(man.contracts)}",
                "url": f"{base}/agents/{man.id}", "preferredTransport": "HTTP+JSON",
                "version": str(assessed.n),
                "provider": {"organization": man.owner, "url": f"{base}/"},
                "documentationUrl": f"{base}/openapi.json",
                "capabilities": {"streaming": False, "pushNotifications": man.notify is not None,
                                 "stateTransitionHistory": True},
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                "security": [{"bearer": []}],
                "defaultInputModes": ["application/json"],
                "defaultOutputModes": ["application/json"],
                "skills": [{"id": c, "name": c.split("@")[0],
                            "description": f"Delivers {c} missions at {man.price} tokens "
                            f"(badge {assessed.badge or 'none'})",
                            "tags": [*man.roles, c.split("@")[0]],
                            "inputModes": ["application/json"],
                            "outputModes": ["application/json"]} for c in man.contracts],
            }, media_type="application/json")
        return await run_in_threadpool(work)

    # -- pages that need credentials --------------------------------------------------------
    def _who(self, request: Request) -> str | None:
        return auth.actor_of(self.hub, request.headers.get("authorization"))

    def timeline(self, mission_id: str, hidden: tuple[str, ...]) -> list[dict[str, Any]]:
        """Every commit of the refs the reader may see, oldest first, with signer and status."""
        repo, _policy = open_mission(self.hub, mission_id)
        keys = registry.snapshot(Repo(self.hub.registry_path)).by_key
        shown = {}
        for ref, tip in repo.refs().items():
            if hidden and ref.startswith(ATTEMPT) and f"!{ref}" not in hidden:
                continue
            if ref in (MAIN, ACCEPTED, SETTLED, REFUNDED) or ref.startswith(ATTEMPT):
                shown[ref] = tip
        seen: dict[str, dict[str, Any]] = {}
        for ref, tip in sorted(shown.items()):
            if repo.object_type(tip) == "tag":
                continue
            for c in repo.iter_commits(tip):
                row = seen.get(c.id)
                if row is None:
                    signer, status = None, "unsigned"
                    if c.signature and c.payload is not None:
                        try:
                            actor = keys.get(verify(c.signature, c.payload))
                            signer = actor.id if actor else None
                            status = "verified" if actor else "unknown key"
                        except (AismmError, ValueError):
                            status = "invalid signature"
                    row = seen[c.id] = {
                        "id": c.id, "short": c.id[:12], "time": c.time, "refs": [],
                        "when": dt.datetime.fromtimestamp(c.time, dt.UTC).strftime(
                            "%Y-%m-%d %H:%M:%SZ"),
                        "message": printable(c.message.splitlines()[0] if c.message else "",
                                             limit=120),
                        "signer": signer, "status": status}
                if c.id == tip:
                    row["refs"].append(ref.removeprefix("refs/heads/").removeprefix("refs/"))
        return sorted(seen.values(), key=lambda r: r["time"])

    async def mission(self, request: Request) -> Response:
        mission_id = request.path_params["mission"]

        def work() -> Response:
            actor = self._who(request)
            if actor is None:
                return _error(401, "sign in with your actor id and a token", basic=True)
            if not self.hub.mission_path(mission_id).is_dir() or not mission_id[:1].isalpha():
                return _error(404, f"{printable(mission_id, limit=60)}: no such mission")
            rule = access.mission_access(self.hub, mission_id, actor)
            if not rule.read:
                return _error(403, f"{actor} may not read mission {mission_id}")
            st = lifecycle.status(self.hub, mission_id)
            if rule.hidden:
                st["attempts"] = [a for a in st["attempts"] if a["agent"] == actor]
            return HTMLResponse(_ENV.get_template("mission.html").render(
                st=st, timeline=self.timeline(mission_id, rule.hidden)))
        return await run_in_threadpool(work)

    async def account(self, request: Request) -> Response:
        def work() -> Response:
            actor = self._who(request)
            if actor is None:
                return _error(401, "sign in with your actor id and a token", basic=True)
            found = registry.actor(self.hub, actor)
            accounts = [f"client:{actor}", *([f"provider:{found.owner}"] if found.owner
                                             else [])]
            with Ledger(self.hub.db_path, self.hub.clock) as ledger:
                balances = {a: ledger.balance(a) for a in accounts}
                history = {t.id: asdict(t) for a in accounts for t in ledger.history(a)}
            missions = [m for m in lifecycle.list_missions(self.hub)
                        if access.mission_access(self.hub, m.id, actor).read]
            me = {"actor": actor, "roles": list(found.roles), "owner": found.owner,
                  "accounts": balances,
                  "tokens": [t.to_dict() for t in tokens.listing(self.hub, actor)]}
            return HTMLResponse(_ENV.get_template("account.html").render(
                me=me, missions=missions,
                history=sorted(history.values(), key=lambda t: str(t["at"]))))
        return await run_in_threadpool(work)
