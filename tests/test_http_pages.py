"""The server-rendered pages and A2A cards over a real server (HTML read as a client does)."""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aismm.core.clock import iso
from aismm.infra.store import Store
from aismm.services import market
from tests.hubkit import Kit
from tests.settlekit import AGENT, CLIENT, REVIEW, REVIEW_INPUTS, make_site
from tests.webkit import Web, basic, serve_kit


@pytest.fixture(scope="module")
def web(settle_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    site = make_site(settle_template, tmp_path_factory.mktemp("pages"))
    now = site.clock.now()
    with Store(site.hub.db_path) as store:  # three jobs on three days of the last month
        for day, (quality, seconds, cost) in enumerate([(80, 30, 90), (90, 20, 100),
                                                        (70, 60, 120)]):
            store.add_execution({
                "id": f"x{day}", "agent": AGENT, "agent_owner": "acme", "client": CLIENT,
                "client_owner": CLIENT, "contract": REVIEW, "mission": f"m{day}",
                "finished_at": iso(now - dt.timedelta(days=20 - 5 * day)),
                "latency_seconds": seconds, "quality": quality, "outcome": "accepted",
                "reworks": 0, "cost": cost, "commits": {}})
    yield from serve_kit(Kit(site.hub, site.root.parent))


def _rows(page: str, table: str) -> list[str]:
    body = page.split(f'<table id="{table}">', 1)[1].split("</table>", 1)[0]
    return re.findall(r"<tr class=\"[a-z]+\"[^>]*>(.*?)</tr>", body, re.DOTALL)


def _cells(row: str) -> list[str]:
    return [html.unescape(re.sub(r"<[^>]+>", "", c)).strip()
            for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.DOTALL)]


def test_the_marketplace_lists_every_agent_with_its_figures(web: Web) -> None:
    page = httpx.get(f"{web.url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    listing = {r.agent: r.to_json() for r in market.listing(web.kit.hub)}
    rows = [_cells(r) for r in _rows(page.text, "agents")]
    assert {r[0] for r in rows} == set(listing)
    for cells in rows:
        r = listing[cells[0]]
        assert cells[2] == r["status"] and cells[9] == str(r["price"])
        assert cells[5] == ("-" if r["quality"] is None else f"{r['quality']:.1f}")
    scores = [float(c[4]) for c in rows if c[4] != "-"]
    assert scores == sorted(scores, reverse=True) and scores  # sorted by the routing score
    only = httpx.get(f"{web.url}/", params={"contract": "contract.unit_tests"})
    names = {_cells(r)[0] for r in _rows(only.text, "agents")}
    assert names == {a for a, r in listing.items()
                     if any(c.startswith("contract.unit_tests") for c in r["contracts"])}
    assert names and names != set(listing)
    assert httpx.get(f"{web.url}/", params={"contract": "nope"}).status_code == 400


def test_an_agent_page_draws_three_series_of_the_last_30_days(web: Web) -> None:
    page = httpx.get(f"{web.url}/agents/{AGENT}")
    assert page.status_code == 200
    svg = page.text.split('<svg id="trend"', 1)[1].split("</svg>", 1)[0]
    series = dict(re.findall(r'data-series="(\w+)"[^>]*points="([^"]*)"', svg))
    assert sorted(series) == ["economics", "quality", "speed"]
    points = {name: [tuple(map(float, p.split(","))) for p in value.split()]
              for name, value in series.items()}
    assert all(len(p) == 3 for p in points.values())
    ys = [y for _x, y in points["quality"]]
    assert ys[1] < ys[0] < ys[2]  # 90 drawn highest, then 80, then 70
    assert "ref-code-reviewer" in page.text and "Latest assessment" in page.text
    assert httpx.get(f"{web.url}/agents/nobody").status_code == 404


def test_a2a_cards_for_listed_agents_only(web: Web) -> None:
    card = httpx.get(f"{web.url}/agents/{AGENT}/agent-card.json")
    assert card.status_code == 200 and card.headers["content-type"] == "application/json"
    data = card.json()
    for key in ("protocolVersion", "name", "description", "url", "version", "capabilities",
                "defaultInputModes", "defaultOutputModes", "skills", "provider"):
        assert key in data, key
    assert data["name"] == AGENT and data["url"] == f"{web.url}/agents/{AGENT}"
    assert {s["id"].split("@")[0] for s in data["skills"]} == {REVIEW}
    assert httpx.get(f"{web.url}/agents/sloppy-coder/agent-card.json").status_code == 404


def test_the_mission_page_shows_the_signed_timeline_to_readers_only(web: Web) -> None:
    from aismm.services import mission

    created = mission.create(web.kit.hub, contract_ref=REVIEW, client=CLIENT,
                             inputs=REVIEW_INPUTS, price=None, tier="T1", agents=[AGENT])
    url = f"{web.url}/missions/{created.doc.id}"
    anonymous = httpx.get(url)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Basic")
    page = httpx.get(url, headers=basic(CLIENT, web.token(CLIENT)))
    assert page.status_code == 200
    rows = [_cells(r) for r in _rows(page.text, "timeline")]
    main = next(r for r in rows if r[1] == created.main[:12])
    assert main[3] == CLIENT and main[4] == "verified" and "main" in main[2]
    assert f"{CLIENT} accepts" in page.text or "deliver" in page.text  # who acts next
    outsider = httpx.get(url, headers=basic("ref-test-writer", web.token("ref-test-writer")))
    assert outsider.status_code == 403
    account = httpx.get(f"{web.url}/account", headers=basic(CLIENT, web.token(CLIENT)))
    assert account.status_code == 200
    assert f"client:{CLIENT}" in account.text and created.doc.id in account.text


# -- in a real browser (Debian's chromium, driven by playwright) ------------------------------

CHROMIUM = next((p for p in ("/usr/lib/chromium/chromium", "/usr/bin/chromium")
                 if Path(p).is_file()), None)
FLAGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-default-apps", "--disable-sync",
         "--no-first-run", "--disable-extensions", "--metrics-recording-only",
         "--disable-breakpad", "--no-default-browser-check"]


def test_the_pages_in_a_headless_browser(web: Web, tmp_path: Path) -> None:
    import os

    sync_api = pytest.importorskip("playwright.sync_api")
    if CHROMIUM is None:
        pytest.skip("no chromium: `apt-get install chromium` (.ci/run installs it)")
    from aismm.services import mission

    shots = Path(os.environ.get("AISMM_ARTIFACTS") or tmp_path) / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    created = mission.create(web.kit.hub, contract_ref=REVIEW, client=CLIENT,
                             inputs=REVIEW_INPUTS, price=None, tier="T1", agents=[AGENT])
    listing = [r.to_json() for r in market.listing(web.kit.hub)]
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            context = browser.new_context(http_credentials={
                "username": CLIENT, "password": web.token(CLIENT)})
            page = context.new_page()
            page.goto(f"{web.url}/")
            rows = page.locator("#agents tr.agent")
            assert rows.count() == len(listing)
            shown = {rows.nth(i).get_attribute("data-agent"): rows.nth(i).locator(
                "td.quality").inner_text() for i in range(rows.count())}
            assert shown == {r["agent"]: "-" if r["quality"] is None else f"{r['quality']:.1f}"
                             for r in listing}
            page.screenshot(path=str(shots / "marketplace.png"), full_page=True)

            page.goto(f"{web.url}/agents/{AGENT}")
            lines = page.locator("svg#trend polyline.series")
            assert lines.count() == 3
            assert sorted(lines.nth(i).get_attribute("data-series") or ""
                          for i in range(3)) == ["economics", "quality", "speed"]
            assert all(len((lines.nth(i).get_attribute("points") or "").split()) == 3
                       for i in range(3))
            box = page.locator("svg#trend").bounding_box()
            assert box is not None and box["width"] >= 500  # drawn, not collapsed
            page.screenshot(path=str(shots / "agent.png"), full_page=True)

            page.goto(f"{web.url}/missions/{created.doc.id}")
            commits = page.locator("#timeline tr.commit")
            assert commits.count() >= 1
            first = commits.first.locator("td")
            assert first.nth(3).inner_text() == CLIENT and first.nth(4).inner_text() == "verified"
            page.screenshot(path=str(shots / "mission.png"), full_page=True)
        finally:
            browser.close()
    assert all((shots / f"{n}.png").stat().st_size > 1000 for n in ("marketplace", "agent",
                                                                   "mission"))
