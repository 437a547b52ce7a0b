"""The JSON API under ``/api/``: the CLI's ``--json`` reads and the client's actions, with the
OpenAPI document (``/openapi.json``) built from the same endpoint table that routes them.

Reads of the marketplace (agents, one agent, rank) are public, as the listing is; everything
else needs ``Authorization: Bearer <token>`` and shows only what the caller may read
(:mod:`aismm.web.access`). Errors are ``{"error": "aismm: <where>: <what>; <fix>"}``.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aismm.core.errors import AismmError, ConflictError, MissionError, Rejection, UsageError
from aismm.core.safepath import printable
from aismm.infra.hub import Hub
from aismm.infra.ledger import Ledger
from aismm.services import client, lifecycle, market, mission, settlement, tokens, worker
from aismm.state import registry
from aismm.web import access, auth
from aismm.web.openapi import (
    AGENT,
    AGENT_ROW,
    ATTEMPT,
    CREATE,
    CREATE_FIELDS,
    CREATED,
    LINES,
    ME,
    MISSION_ROW,
    RANK_ROW,
    REASONED,
    STATUS,
    TRANSFER,
    Endpoint,
    document,
)

__all__ = ["Api", "Problem"]

MAX_BODY = 1 << 20
_INPUT_PATH = re.compile(r"^(?!.*(?:^|/)\.\.?(?:/|$))[A-Za-z0-9._-]{1,100}"
                         r"(?:/[A-Za-z0-9._-]{1,100}){0,7}$")


class Problem(Exception):
    """An API answer other than 2xx: status and one line."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status, self.text = status, text


def _status_of(exc: AismmError) -> int:
    if isinstance(exc, MissionError) and "no such mission" in str(exc):
        return 404
    if isinstance(exc, UsageError):
        return 400
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, Rejection):
        return 422
    return 500


def problem_response(exc: Problem) -> Response:
    headers = {"WWW-Authenticate": 'Bearer realm="aismm"'} if exc.status == 401 else None
    return JSONResponse({"error": exc.text}, status_code=exc.status, headers=headers)


class Api:
    """The API of one hub."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.endpoints = [
            Endpoint("GET", "/api/agents", self.agents, "The marketplace listing (agent list)",
                     {"type": "array", "items": AGENT_ROW}, public=True,
                     query=(("contract", False), ("role", False)), errors=(400,)),
            Endpoint("GET", "/api/agents/{agent}", self.agent,
                     "An agent's manifest and latest assessment (agent show)", AGENT,
                     public=True, errors=(404,)),
            Endpoint("GET", "/api/rank", self.rank, "Agents ranked for a contract (agent rank)",
                     {"type": "array", "items": RANK_ROW}, public=True,
                     query=(("contract", True), ("client", False)), errors=(400,)),
            Endpoint("GET", "/api/missions", self.missions,
                     "Missions the caller may read (mission list)",
                     {"type": "array", "items": MISSION_ROW},
                     query=(("state", False), ("agent", False))),
            Endpoint("GET", "/api/missions/{mission}", self.status,
                     "A mission's derived state (mission status)", STATUS),
            Endpoint("GET", "/api/ledger", self.ledger,
                     "Transfers of the caller's own accounts (ledger history)",
                     {"type": "array", "items": TRANSFER}, errors=(401,)),
            Endpoint("GET", "/api/me", self.me, "The caller: roles, balances, tokens", ME,
                     errors=(401,)),
            Endpoint("POST", "/api/missions", self.create,
                     "Create and fund a mission as the caller (mission create)", CREATED,
                     body=CREATE, ok=201, errors=(400, 401, 409, 413, 422)),
            *(Endpoint("POST", f"/api/missions/{{mission}}/{action}", handler,
                       f"{action.capitalize()} (mission {action}; the mission's client only)",
                       LINES, body=schema, errors=(400, 401, 403, 404, 409, 413, 422))
              for action, handler, schema in (
                  ("rework", self.rework, REASONED), ("escalate", self.escalate, REASONED),
                  ("accept", self.accept, ATTEMPT),
                  ("cancel", self.cancel, {"type": "object", "additionalProperties": False}))),
        ]

    # -- plumbing ---------------------------------------------------------------------------
    def openapi(self) -> dict[str, Any]:
        """The OpenAPI 3.1 document of every endpoint above."""
        return document(self.endpoints)

    def routes(self) -> list[Route]:
        return [Route(e.path, self._wrap(e), methods=[e.method]) for e in self.endpoints]

    def _wrap(self, endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            try:
                data = await endpoint.handler(request)
            except Problem as exc:
                return problem_response(exc)
            except AismmError as exc:
                text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                return problem_response(Problem(_status_of(exc), printable(
                    text if text.startswith("aismm: ") else f"aismm: {text}")))
            return JSONResponse(json.loads(json.dumps(data, default=str)),
                                status_code=endpoint.ok)
        return run

    async def _caller(self, request: Request) -> str:
        actor = await run_in_threadpool(auth.actor_of, self.hub,
                                        request.headers.get("authorization"))
        if actor is None:
            raise Problem(401, "aismm: authentication required; send Authorization: Bearer "
                          "<token> (make one with `aismm token create ACTOR`)")
        return actor

    async def _json(self, request: Request) -> dict[str, Any]:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
            raise Problem(413, f"aismm: body of {declared} bytes over the API's limit of "
                          f"{MAX_BODY}; send less")
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_BODY:
                raise Problem(413, f"aismm: body over the API's limit of {MAX_BODY} bytes; "
                              "send less")
        try:
            data = json.loads(raw or b"{}")
        except (ValueError, UnicodeDecodeError) as exc:
            raise Problem(400, f"aismm: body: not JSON ({exc}); send a JSON object") from exc
        if not isinstance(data, dict):
            raise Problem(400, "aismm: body: not a JSON object; send one")
        return data

    def _query(self, request: Request, name: str) -> str | None:
        value = request.query_params.get(name)
        if value is not None and not re.fullmatch(r"[A-Za-z0-9._@-]{1,100}", value):
            raise Problem(400, f"aismm: ?{name}={printable(value, limit=60)}: not a name; "
                          "give an id")
        return value

    def _readable(self, mission_id: str, actor: str) -> access.Access:
        if not re.fullmatch(r"[a-z][a-z0-9-]{2,62}", mission_id) or \
                not self.hub.mission_path(mission_id).is_dir():
            raise Problem(404, f"aismm: {printable(mission_id, limit=80)}: no such mission")
        rule = access.mission_access(self.hub, mission_id, actor)
        if not rule.read:
            raise Problem(403, f"aismm: {actor} may not read mission {mission_id}")
        return rule

    # -- reads ------------------------------------------------------------------------------
    def _known(self, contract: str | None, role: str | None) -> None:
        if contract is not None and contract not in registry.contracts(self.hub) and not any(
                c.split("@")[0] == contract for c in registry.contracts(self.hub)):
            raise Problem(400, f"aismm: ?contract={contract}: no such published contract")
        if role is not None and role not in ("client", "specialist", "reviewer", "orchestrator",
                                             "platform", "arbiter"):
            raise Problem(400, f"aismm: ?role={role}: not a role")

    async def agents(self, request: Request) -> Any:
        contract, role = self._query(request, "contract"), self._query(request, "role")

        def work() -> Any:
            self._known(contract, role)
            return [r.to_json() for r in market.listing(self.hub, contract, role)]
        return await run_in_threadpool(work)

    async def agent(self, request: Request) -> Any:
        agent_id = request.path_params["agent"]

        def work() -> Any:
            man = registry.manifests(self.hub).get(agent_id)
            if man is None:
                raise Problem(404, f"aismm: {printable(agent_id, limit=80)}: no such agent")
            record = registry.latest_assessment(self.hub, agent_id)
            return {"manifest": man.model_dump(mode="json"),
                    "assessment": record.to_json() if record else None}
        return await run_in_threadpool(work)

    async def rank(self, request: Request) -> Any:
        contract, who = self._query(request, "contract"), self._query(request, "client")
        if contract is None:
            raise Problem(400, "aismm: ?contract: required; give a contract id")

        def work() -> Any:
            self._known(contract, None)
            if who is not None and who not in registry.actors(self.hub):
                raise Problem(400, f"aismm: ?client={who}: no such actor")
            return [r.to_json() for r in market.ranking(self.hub, contract, who)]
        return await run_in_threadpool(work)

    async def missions(self, request: Request) -> Any:
        actor = await self._caller(request)
        state, agent = self._query(request, "state"), self._query(request, "agent")
        if state is not None and state not in lifecycle.STATES:
            raise Problem(400, f"aismm: ?state={state}: not a mission state; use one of "
                          f"{', '.join(lifecycle.STATES)}")

        def work() -> Any:
            rows = lifecycle.list_missions(self.hub, state=state, agent=agent)
            return [r.to_dict() for r in rows
                    if access.mission_access(self.hub, r.id, actor).read]
        return await run_in_threadpool(work)

    async def status(self, request: Request) -> Any:
        actor = await self._caller(request)
        mission_id = request.path_params["mission"]

        def work() -> Any:
            rule = self._readable(mission_id, actor)
            st = lifecycle.status(self.hub, mission_id)
            if rule.hidden:  # a contest rival sees its own attempt only
                st["attempts"] = [a for a in st["attempts"] if a["agent"] == actor]
            return st
        return await run_in_threadpool(work)

    def _accounts(self, actor: str) -> list[str]:
        found = registry.actor(self.hub, actor)
        return [f"client:{actor}", *([f"provider:{found.owner}"] if found.owner else [])]

    async def ledger(self, request: Request) -> Any:
        actor = await self._caller(request)

        def work() -> Any:
            with Ledger(self.hub.db_path, self.hub.clock) as ledger:
                rows = [asdict(t) for account in self._accounts(actor)
                        for t in ledger.history(account)]
            unique = {json.dumps(r, sort_keys=True, default=str): r for r in rows}
            return sorted(unique.values(), key=lambda r: (str(r["at"]), str(r["id"])))
        return await run_in_threadpool(work)

    async def me(self, request: Request) -> Any:
        actor = await self._caller(request)

        def work() -> Any:
            found = registry.actor(self.hub, actor)
            with Ledger(self.hub.db_path, self.hub.clock) as ledger:
                accounts = {a: ledger.balance(a) for a in self._accounts(actor)}
            return {"actor": actor, "roles": list(found.roles), "owner": found.owner,
                    "accounts": accounts,
                    "tokens": [r.to_dict() for r in tokens.listing(self.hub, actor)]}
        return await run_in_threadpool(work)

    # -- the client's actions ---------------------------------------------------------------
    async def create(self, request: Request) -> Any:
        actor = await self._caller(request)
        body = await self._json(request)
        unknown = set(body) - set(CREATE_FIELDS)
        if unknown or not isinstance(body.get("contract"), str) or not isinstance(
                body.get("inputs"), dict) or not body["inputs"]:
            raise Problem(400, "aismm: body: needs contract (string) and inputs (path -> text)"
                          + (f"; unknown fields {sorted(unknown)}" if unknown else ""))
        inputs: dict[str, Any] = body["inputs"]
        for path, text in inputs.items():
            if not _INPUT_PATH.match(path) or not isinstance(text, str):
                raise Problem(400, f"aismm: inputs: {printable(path, limit=80)}: not a relative "
                              "path to UTF-8 text; use names like src/app.py")
        agents = body.get("agents") or []
        reviewers = body.get("reviewers") or []
        contest, auto = body.get("contest"), bool(body.get("auto"))
        tier = body.get("tier", "T1")
        price, deadline = body.get("price"), body.get("deadline")
        if not (isinstance(agents, list) and all(isinstance(a, str) for a in agents)
                and isinstance(reviewers, list) and all(isinstance(r, str) for r in reviewers)
                and tier in ("T0", "T1", "T2")
                and (price is None or (isinstance(price, int) and not isinstance(price, bool)))
                and (contest is None or (isinstance(contest, int) and contest >= 1))
                and (deadline is None or isinstance(deadline, str))):
            raise Problem(400, "aismm: body: agents and reviewers are lists of ids, tier is "
                          "T0/T1/T2, price and contest whole numbers, deadline a duration")

        def work() -> Any:
            with tempfile.TemporaryDirectory(prefix="aismm-inputs-") as tmp:
                for path, text in inputs.items():
                    target = Path(tmp) / path
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(text)
                chosen, mode = list(agents), "direct"
                if contest is not None or auto:
                    if agents:
                        raise Problem(400, "aismm: agents: cannot be combined with contest or "
                                      "auto")
                    chosen = market.pick(self.hub, body["contract"], actor, contest or 1)
                    mode = "contest" if contest is not None else "direct"
                made = mission.create(self.hub, contract_ref=body["contract"], client=actor,
                                      inputs=Path(tmp), price=price, tier=tier, agents=chosen,
                                      reviewers=reviewers, deadline=deadline, mode=mode)
            data = made.to_dict()
            data.pop("url", None)
            data["lines"] = [printable(x) for x in worker.process(self.hub)] \
                if self.hub.config.processing == "inline" else []
            return data
        return await run_in_threadpool(work)

    async def _act(self, request: Request, action: str) -> Any:
        actor = await self._caller(request)
        mission_id = request.path_params["mission"]
        body = await self._json(request)

        def work() -> Any:
            self._readable(mission_id, actor)
            _repo, policy = mission.open_mission(self.hub, mission_id)
            if policy.doc.client != actor:
                raise Problem(403, f"aismm: {actor} is not the client of {mission_id}; only "
                              f"{policy.doc.client} may {action}")
            attempt = body.get("attempt", "")
            reason = body.get("reason", "")
            if action != "cancel" and (not isinstance(attempt, str) or not attempt):
                raise Problem(400, "aismm: body: attempt: required; name the agent")
            if action in ("rework", "escalate") and (
                    not isinstance(reason, str) or not reason.strip() or len(reason) > 2000):
                raise Problem(400, "aismm: body: reason: 1-2000 characters; say what is wrong")
            if action in ("rework", "escalate"):
                lines = client.request(self.hub, mission_id, attempt, "rework" if action ==
                                       "rework" else "escalation", reason)
            elif action == "accept":
                lines = client.accept(self.hub, mission_id, attempt)
            else:
                lines = settlement.cancel(self.hub, mission_id)
            return {"mission": mission_id, "action": action,
                    "lines": [printable(x) for x in lines]}
        return await run_in_threadpool(work)

    async def rework(self, request: Request) -> Any:
        return await self._act(request, "rework")

    async def escalate(self, request: Request) -> Any:
        return await self._act(request, "escalate")

    async def accept(self, request: Request) -> Any:
        return await self._act(request, "accept")

    async def cancel(self, request: Request) -> Any:
        return await self._act(request, "cancel")
