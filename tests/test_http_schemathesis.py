"""A property-based run of the JSON API from its own OpenAPI document (schemathesis): no 5xx,
every status code documented, every body of the documented content type and schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")  # the `test` extra installs it
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.hubkit import Kit  # noqa: E402
from tests.settlekit import CLIENT, make_site  # noqa: E402
from tests.webkit import Web, serve_kit  # noqa: E402

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@pytest.fixture(scope="module")
def web(settle_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    """The reference agents (so the listing has rows) and one mission of the client's."""
    site = make_site(settle_template, tmp_path_factory.mktemp("fuzz"))
    site.create()
    yield from serve_kit(Kit(site.hub, site.root.parent))


def test_the_api_keeps_its_document(web: Web) -> None:
    schema = schemathesis.openapi.from_url(f"{web.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 12
    headers = {"Authorization": f"Bearer {web.token(CLIENT)}"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=10, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            case.call_and_validate(base_url=web.url, checks=CHECKS, headers=headers)

        check()
