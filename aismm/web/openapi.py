"""The API's OpenAPI document: the schemas of its answers and bodies, and the endpoint table
both the router (:mod:`aismm.web.api`) and the document are built from."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from aismm.services import lifecycle

__all__ = ["Endpoint", "document"]

NULL_STR = {"type": ["string", "null"]}
NULL_NUM = {"type": ["number", "null"]}
AGENT_ROW = {"type": "object", "required": ["agent", "owner", "status", "price"], "properties": {
    "agent": {"type": "string"}, "owner": {"type": "string"},
    "roles": {"type": "array", "items": {"type": "string"}},
    "contracts": {"type": "array", "items": {"type": "string"}},
    "status": {"type": "string"}, "badge": NULL_STR, "price": {"type": "integer"},
    "capacity": {"type": "integer"}, "assessed_quality": NULL_NUM, "quality": NULL_NUM,
    "speed_p50": NULL_NUM, "cost_per_accepted": NULL_NUM, "stars": NULL_NUM, "rank": NULL_NUM,
    "trend_30d": NULL_NUM, "executions": {"type": "integer"}}}
RANK_ROW = {"type": "object", "required": ["agent", "eligible"], "properties": {
    "agent": {"type": "string"}, "eligible": {"type": "boolean"}, "score": {"type": "number"},
    "reputation": {"type": "number"}, "price_score": {"type": "number"},
    "load_score": {"type": "number"}, "inputs": {"type": "object"}, "why": {"type": "string"}}}
AGENT = {"type": "object", "required": ["manifest", "assessment"], "properties": {
    "manifest": {"type": "object"}, "assessment": {"type": ["object", "null"]}}}
TRANSFER = {"type": "object", "required": ["id", "debit", "credit", "amount", "action", "at"],
            "properties": {"id": {"type": ["string", "integer"]}, "debit": {"type": "string"},
                           "credit": {"type": "string"}, "amount": {"type": "integer"},
                           "action": {"type": "string"}, "at": {"type": "string"}}}
ME = {"type": "object", "required": ["actor", "roles", "owner", "accounts", "tokens"],
      "properties": {"actor": {"type": "string"},
                     "roles": {"type": "array", "items": {"type": "string"}},
                     "owner": NULL_STR, "accounts": {"type": "object",
                                                     "additionalProperties": {"type": "integer"}},
                     "tokens": {"type": "array", "items": {"type": "object"}}}}
LINES = {"type": "object", "required": ["mission", "action", "lines"], "properties": {
    "mission": {"type": "string"}, "action": {"type": "string"},
    "lines": {"type": "array", "items": {"type": "string"}}}}
CREATED = {"type": "object", "required": ["id", "contract", "tier", "price", "fee", "agents"],
           "properties": {"id": {"type": "string"}, "contract": {"type": "string"},
                          "tier": {"type": "string"}, "price": {"type": "integer"},
                          "fee": {"type": "integer"}, "total": {"type": "integer"},
                          "agents": {"type": "array", "items": {"type": "string"}},
                          "lines": {"type": "array", "items": {"type": "string"}}}}
_IDS = {"type": "array", "items": {"type": "string"}}
_ROW_REQUIRED = ["id", "state", "contract", "tier", "client", "agents", "price", "fee"]
_ROW: dict[str, Any] = {
    "id": {"type": "string"}, "state": {"enum": list(lifecycle.STATES)},
    "contract": {"type": "string"}, "tier": {"type": "string"}, "client": {"type": "string"},
    "agents": _IDS, "price": {"type": "integer"}, "fee": {"type": "integer"}}
MISSION_ROW = {"type": "object", "required": _ROW_REQUIRED, "properties": _ROW}
ATTEMPT_STATUS = {"type": "object", "required": ["agent", "head", "state", "verdicts"],
                  "properties": {"agent": {"type": "string"}, "head": {"type": "string"},
                                 "deliverable_tree": NULL_STR, "state": {"type": "string"},
                                 "dod": NULL_STR, "quorum": {"type": "object"},
                                 "verdicts": {"type": "object"}, "reworks": {"type": "integer"},
                                 "failure": {"type": ["object", "null"]}}}
STATUS = {"type": "object", "required": [*_ROW_REQUIRED, "deadline", "mode",
                                         "attempts", "accepted", "escrow", "next", "now"],
          "properties": {**_ROW, "deadline": {"type": "string"},
                         "mode": {"enum": ["direct", "contest"]},
                         "attempts": {"type": "array", "items": ATTEMPT_STATUS},
                         "accepted": NULL_STR, "escrow": {"type": "object",
                                                          "required": ["state", "balance"]},
                         "next": {"type": "string"}, "now": {"type": "string"}}}
TEXT = {"type": "string", "minLength": 1, "maxLength": 2000}
REASONED = {"type": "object", "required": ["attempt", "reason"], "additionalProperties": False,
            "properties": {"attempt": {"type": "string"}, "reason": TEXT}}
ATTEMPT = {"type": "object", "required": ["attempt"], "additionalProperties": False,
           "properties": {"attempt": {"type": "string"}}}
CREATE_FIELDS = ("contract", "tier", "inputs", "price", "agents", "reviewers", "contest", "auto",
                 "deadline")
CREATE = {"type": "object", "required": ["contract", "inputs"], "additionalProperties": False,
          "properties": {
              "contract": {"type": "string"}, "tier": {"enum": ["T0", "T1", "T2"]},
              "inputs": {"type": "object", "additionalProperties": {"type": "string"},
                         "description": "relative path -> UTF-8 text (becomes inputs/)"},
              "price": {"type": ["integer", "null"], "minimum": 0},
              "agents": {"type": "array", "items": {"type": "string"}},
              "reviewers": {"type": "array", "items": {"type": "string"}},
              "contest": {"type": ["integer", "null"], "minimum": 1},
              "auto": {"type": "boolean"}, "deadline": {"type": ["string", "null"]}}}


@dataclass(frozen=True)
class Endpoint:
    """One API operation: its route, its handler and what the OpenAPI document says of it."""

    method: str
    path: str
    handler: Callable[[Request], Awaitable[Any]]
    summary: str
    response: dict[str, Any]
    public: bool = False
    query: tuple[tuple[str, bool], ...] = ()  # (name, required)
    body: dict[str, Any] | None = None
    ok: int = 200
    errors: tuple[int, ...] = field(default=(400, 401, 403, 404))


def document(endpoints: list[Endpoint]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every endpoint above."""
    paths: dict[str, dict[str, Any]] = {}
    components: dict[str, Any] = {}

    def lift(schema: dict[str, Any]) -> dict[str, Any]:
        schema = dict(schema)
        components.update(schema.pop("$defs", {}))
        return schema

    error = {"type": "object", "required": ["error"],
             "properties": {"error": {"type": "string"}}}
    for e in endpoints:
        params = [{"name": name, "in": "query", "required": required,
                   "schema": {"type": "string"}} for name, required in e.query]
        params += [{"name": name, "in": "path", "required": True,
                    "schema": {"type": "string"}}
                   for name in re.findall(r"{(\w+)}", e.path)]
        op: dict[str, Any] = {
            "summary": e.summary, "operationId": f"{e.method.lower()}_{e.path}",
            "parameters": params,
            "responses": {str(e.ok): {"description": "OK", "content": {
                "application/json": {"schema": lift(e.response)}}},
                **{str(code): {"description": "error", "content": {
                    "application/json": {"schema": error}}} for code in e.errors}},
        }
        if not e.public:
            op["security"] = [{"bearer": []}]
        if e.body is not None:
            op["requestBody"] = {"required": False, "content": {
                "application/json": {"schema": e.body}}}
        paths.setdefault(e.path, {})[e.method.lower()] = op
    return {"openapi": "3.1.0",
            "info": {"title": "AISMM hub API", "version": "1"},
            "paths": paths,
            "components": {"schemas": components, "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "a token from `aismm token create ACTOR`"}}}}
