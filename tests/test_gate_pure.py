"""The gate is a pure function of the repositories and a context: it runs on copies of a mission
and the registry, with no hub folder, no hub.db and no ledger anywhere."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from aismm import gate
from aismm.core.errors import GateRejection
from aismm.infra.git import Repo
from aismm.infra.hub import HubLimits
from hubkit import Kit, findings, kit_fixture

R = "refs/heads/attempts/bob"


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kit]:
    yield from kit_fixture(tmp_path_factory)


def test_gate_judges_copies_of_the_repositories_without_any_hub(kit: Kit, tmp_path: Path
                                                                ) -> None:
    created = kit.mission(("bob",), tier="T1")
    clone = kit.clone(created, "attempts/bob")
    old = clone.rev("HEAD")
    good = clone.deliver(kit.key("bob"), findings())
    forged = clone.commit(kit.key("stranger"), "forged", {"deliverable/notes.md": "mine\n"})
    # copies of the two repositories, far from the hub: no hub.yaml, no hub.db, no keys
    away = tmp_path / "elsewhere"
    mission_copy = away / "mission.git"
    shutil.copytree(created.path, mission_copy)
    shutil.copytree(kit.hub.registry_path, away / "registry.git")
    # the clone's new objects, as a push would bring them
    shutil.copytree(clone.path / ".git" / "objects", mission_copy / "objects", dirs_exist_ok=True)
    assert not any(p.name in ("hub.db", "hub.yaml") for p in away.rglob("*"))

    ctx = gate.Context(registry=Repo(away / "registry.git"), limits=HubLimits(),
                       platform="platform", now=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    repo = Repo(mission_copy)
    gate.judge(ctx, repo, [(old, good, R)])  # allowed: the agent's signed delivery
    with pytest.raises(GateRejection) as refused:
        gate.judge(ctx, repo, [(old, forged, R)])  # refused: a stranger's commit on top
    assert any("signed by an unregistered or revoked key" in str(p) for p in
               refused.value.problems)
