"""The JSON API over a real server: every endpoint is in /openapi.json, every answer fits the
schema it declares, reads show only what the caller may read, and the client's actions act."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pytest

from aismm.infra.ledger import Ledger
from aismm.services import market
from tests.hubkit import INPUTS, findings, run_git
from tests.webkit import Web, serving


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    yield from serving(tmp_path_factory.mktemp("api"))


@pytest.fixture(scope="module")
def document(web: Web) -> dict[str, Any]:
    answer = httpx.get(f"{web.url}/openapi.json")
    assert answer.status_code == 200
    doc: dict[str, Any] = answer.json()
    return doc


def _bearer(web: Web, actor: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {web.token(actor)}"}


def _fits(document: dict[str, Any], path: str, method: str, answer: httpx.Response) -> Any:
    """The answer's body, checked against the schema the document declares for its status."""
    op = document["paths"][path][method]
    declared = op["responses"][str(answer.status_code)]
    schema = {**declared["content"]["application/json"]["schema"],
              "components": document["components"]}
    body = answer.json()
    jsonschema.validate(body, schema)
    return body


def test_every_endpoint_is_in_the_openapi_document(web: Web, document: dict[str, Any]) -> None:
    routes = {(route.path, method.lower()) for route in web.server.web.app.routes
              if route.path.startswith("/api/") for method in route.methods - {"HEAD"}}
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert routes == documented
    assert len(routes) == 12
    for path, method in documented:
        op = document["paths"][path][method]
        ok = next(code for code in op["responses"] if code.startswith("2"))
        assert "schema" in op["responses"][ok]["content"]["application/json"]
        assert op["summary"]
    jsonschema.Draft202012Validator.check_schema(
        {"$defs": document["components"]["schemas"]})


def test_marketplace_reads_are_public_and_mirror_the_cli(web: Web,
                                                         document: dict[str, Any]) -> None:
    answer = httpx.get(f"{web.url}/api/agents")
    assert answer.status_code == 200
    rows = _fits(document, "/api/agents", "get", answer)
    assert [r["agent"] for r in rows] == [r.agent for r in market.listing(web.kit.hub)]
    one = httpx.get(f"{web.url}/api/agents/bob")
    assert one.status_code == 404  # bob is an actor, not a published agent (no manifest)
    assert _fits(document, "/api/agents/{agent}", "get", one)["error"].startswith("aismm: bob")
    rank = httpx.get(f"{web.url}/api/rank", params={"contract": "contract.code_review"})
    assert rank.status_code == 200
    _fits(document, "/api/rank", "get", rank)
    bad = httpx.get(f"{web.url}/api/agents", params={"contract": "contract.nope"})
    assert bad.status_code == 400 and _fits(document, "/api/agents", "get", bad)


def test_mission_reads_need_a_bearer_token_and_show_only_what_one_may_read(
        web: Web, document: dict[str, Any], tmp_path: Any) -> None:
    contest = web.kit.mission(("bob", "dave"), mode="contest").doc.id
    other = web.kit.mission(("sam",)).doc.id
    # bob delivers in the contest, so there is a rival attempt to hide from dave
    work = tmp_path / "bob"
    web.git("bob", "clone", "-q", "--branch", "attempts/bob", f"{web.remote(contest)}",
            str(work))
    (work / "deliverable").mkdir()
    (work / "deliverable" / "findings.json").write_bytes(findings())
    run_git("add", "-A", cwd=work)
    run_git("-c", "gpg.format=ssh", "-c", f"user.signingkey={web.kit.key('bob')}", "commit",
            "-q", "-S", "-m", "Deliver", cwd=work)
    assert web.git("bob", "push", "origin", "attempts/bob", cwd=work)[0] == 0

    none = httpx.get(f"{web.url}/api/missions")
    assert none.status_code == 401 and none.headers["www-authenticate"].startswith("Bearer")
    listed = httpx.get(f"{web.url}/api/missions", headers=_bearer(web, "dave"))
    ids = {r["id"] for r in _fits(document, "/api/missions", "get", listed)}
    assert contest in ids and other not in ids
    seen = httpx.get(f"{web.url}/api/missions/{contest}", headers=_bearer(web, "dave"))
    status = _fits(document, "/api/missions/{mission}", "get", seen)
    assert [a["agent"] for a in status["attempts"]] == ["dave"]
    client = httpx.get(f"{web.url}/api/missions/{contest}", headers=_bearer(web, "alice"))
    assert [a["agent"] for a in _fits(document, "/api/missions/{mission}", "get",
                                      client)["attempts"]] == ["bob", "dave"]
    refused = httpx.get(f"{web.url}/api/missions/{other}", headers=_bearer(web, "dave"))
    assert refused.status_code == 403
    assert _fits(document, "/api/missions/{mission}", "get", refused)["error"] == \
        f"aismm: dave may not read mission {other}"
    missing = httpx.get(f"{web.url}/api/missions/no-such-one", headers=_bearer(web, "dave"))
    assert missing.status_code == 404


def test_ledger_history_is_the_callers_own(web: Web, document: dict[str, Any]) -> None:
    web.kit.mission(("bob",))
    mine = httpx.get(f"{web.url}/api/ledger", headers=_bearer(web, "alice"))
    rows = _fits(document, "/api/ledger", "get", mine)
    assert rows and all("client:alice" in (r["debit"], r["credit"]) for r in rows)
    with Ledger(web.kit.hub.db_path, web.kit.hub.clock) as ledger:
        assert len(rows) == len(ledger.history("client:alice"))
    theirs = httpx.get(f"{web.url}/api/ledger", headers=_bearer(web, "rita"))
    assert _fits(document, "/api/ledger", "get", theirs) == []
    me = httpx.get(f"{web.url}/api/me", headers=_bearer(web, "alice"))
    body = _fits(document, "/api/me", "get", me)
    assert body["actor"] == "alice" and body["accounts"]["client:alice"] > 0
    assert all("token" not in t for t in body["tokens"])


def test_the_client_creates_and_cancels_and_nobody_else_may(web: Web,
                                                            document: dict[str, Any]) -> None:
    files = {p.relative_to(INPUTS).as_posix(): p.read_text()
             for p in sorted(INPUTS.rglob("*")) if p.is_file()}
    body = {"contract": "contract.code_review", "inputs": files, "agents": ["bob"],
            "price": 100}
    made = httpx.post(f"{web.url}/api/missions", json=body, headers=_bearer(web, "alice"))
    assert made.status_code == 201, made.text
    created = _fits(document, "/api/missions", "post", made)
    mid = created["id"]
    assert web.kit.hub.mission_path(mid).is_dir() and created["total"] == 100 + created["fee"]
    with Ledger(web.kit.hub.db_path, web.kit.hub.clock) as ledger:
        assert ledger.balance(f"escrow:{mid}") == created["total"]

    stranger = httpx.post(f"{web.url}/api/missions/{mid}/cancel", json={},
                          headers=_bearer(web, "bob"))
    assert stranger.status_code == 403
    assert _fits(document, "/api/missions/{mission}/cancel", "post", stranger)["error"] == \
        f"aismm: bob is not the client of {mid}; only alice may cancel"
    bad = httpx.post(f"{web.url}/api/missions/{mid}/rework", json={"attempt": "bob"},
                     headers=_bearer(web, "alice"))
    assert bad.status_code == 400
    done = httpx.post(f"{web.url}/api/missions/{mid}/cancel", json={},
                      headers=_bearer(web, "alice"))
    assert done.status_code == 200, done.text
    _fits(document, "/api/missions/{mission}/cancel", "post", done)
    with Ledger(web.kit.hub.db_path, web.kit.hub.clock) as ledger:
        closure = ledger.closure(mid)
        assert ledger.balance(f"escrow:{mid}") == 0 and ledger.check() == []
    assert closure is not None and closure.kind == "refunded"


@pytest.mark.parametrize(("body", "status"), [
    (b"not json", 400), (b"[1]", 400), (b'{"contract": 1, "inputs": {}}', 400),
    (b'{"contract": "contract.code_review", "inputs": {"../x": "y"}}', 400),
    (b'{"contract": "contract.code_review", "inputs": {"a": "b"}, "evil": 1}', 400),
    (b"{" + b" " * (1 << 20) + b"}", 413),
])
def test_bad_bodies_are_one_line_4xx_and_change_nothing(web: Web, document: dict[str, Any],
                                                        body: bytes, status: int) -> None:
    before = web.kit.hub.mission_ids()
    answer = httpx.post(f"{web.url}/api/missions", content=body,
                        headers={**_bearer(web, "alice"), "Content-Type": "application/json"})
    assert answer.status_code == status
    error = _fits(document, "/api/missions", "post", answer)["error"]
    assert error.startswith("aismm: ") and "\n" not in error
    assert web.kit.hub.mission_ids() == before
