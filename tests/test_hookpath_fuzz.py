"""The lean pre-receive under the gate's own fuzzing (tests/test_gate_fuzz.py): on random
trees, modes, hostile names, signers and ref updates, whatever ``lean.accepts`` allows, the gate
allows too (and it does allow the legitimate deliveries among them, so the property is not
vacuous)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, event, given, settings

from aismm.core.errors import GateRejection
from aismm.infra.git import ZERO, Repo
from aismm.services import judged
from aismm.state import lean, registry
from aismm.state.policy import load_policy
from tests import hubkit, test_gate_fuzz
from tests.hubkit import Kit
from tests.test_gate_fuzz import ATTEMPT, World

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kit]:
    yield from hubkit.kit_fixture(tmp_path_factory)


@pytest.fixture(scope="module")
def world(kit: Kit) -> World:
    made = World(kit)
    policy = load_policy(made.repo)
    assert policy is not None
    lean.remember(kit.hub.root, made.repo.path, policy)  # as the first full hook run does
    registry.snapshot(Repo(kit.hub.registry_path))
    return made


def _lean(world: World, updates: list[tuple[str | None, str, str]], pusher: str | None) -> bool:
    lines = [(old or ZERO, new, ref) for old, new, ref in updates]  # as a hook's stdin has them
    return lean.accepts(world.kit.hub.root, world.created.path.resolve(), lines, pusher)


@SETTINGS
@given(push=test_gate_fuzz.pushes)
def test_what_the_lean_path_allows_the_gate_allows(world: World, push: dict[str, object]
                                                   ) -> None:
    updates, _commit = test_gate_fuzz._build(world, push)
    pusher = push["pusher"]
    if not _lean(world, updates, pusher):  # type: ignore[arg-type]
        event("left to the gate")
        return
    event(f"allowed by the lean path ({push['kind']})")
    try:
        judged.judge(world.kit.hub, world.repo, updates, pusher=pusher)  # type: ignore[arg-type]
    except GateRejection as exc:
        pytest.fail(f"the lean path allowed what the gate refuses: {exc.problems}")


def test_the_legitimate_delivery_takes_the_lean_path(world: World) -> None:
    assert _lean(world, [(world.main, world.delivered, ATTEMPT)], "bob")
    assert not _lean(world, [(world.main, world.delivered, ATTEMPT)], "dave")
