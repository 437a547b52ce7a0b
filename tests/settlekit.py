"""Test helpers for settlement and lifecycle: a ready hub copied per test, and the CLI.

A template hub is built once per session (the ``settle_template`` fixture of tests/conftest.py:
a copy of the session's reference hub, whose reference agents are registered and assessed, plus
the client ``carol`` funded with 10,000 tokens and an external reviewer ``vera`` who never
writes) and copied for every test: each test owns its hub and its clock, so ``aismm tick`` and
clock moves never reach another test's missions.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aismm.core.clock import FixedClock, iso
from aismm.core.model import dump_yaml, load_yaml
from aismm.core.signing import generate_key
from aismm.infra.hub import Hub
from aismm.infra.ledger import Closure, Ledger
from aismm.infra.store import Store
from aismm.services import delivery, lifecycle, mission, registrar, worker
from tests import hubkit
from tests.clikit import call
from tests.hubkit import copy_hub, copy_tree

__all__ = [
    "AGENT",
    "CLIENT",
    "GOLDEN",
    "REVIEW_INPUTS",
    "ROOT",
    "SEED",
    "SILENT",
    "START",
    "UNIT_INPUTS",
    "Result",
    "Site",
    "build_template",
    "failing_findings",
    "make_site",
    "run_git",
]

ROOT = Path(__file__).resolve().parent.parent
START = "2026-01-01T00:00:00Z"
CLIENT, AGENT, SEED = "carol", "ref-code-reviewer", 10_000
SILENT = "silent-agent"  # listed, external, never delivers
REVIEW = "contract.code_review"
REVIEW_INPUTS = ROOT / "contracts" / "code_review" / "benchmark" / "http_helpers" / "inputs"
UNIT_INPUTS = ROOT / "contracts" / "unit_tests" / "benchmark" / "mathx" / "inputs"
GOLDEN = ROOT / "contracts" / "code_review" / "benchmark" / "http_helpers" / "golden" / \
    "findings.json"

def run_git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    """The real git binary, text in and out."""
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def build_template(reference: Path, root: Path) -> Path:
    """The settlement template at ``root``: a copy of the ``reference`` hub (built and assessed
    once per session), with the client funded and the silent external reviewer."""
    hub = copy_hub(reference, root)
    record = hubkit.assessment_json(hub, AGENT)
    assert record is not None and record["status"] == "listed", record
    registrar.add_actor(hub, CLIENT, ["client"], None, None, True)
    registrar.add_actor(hub, "vera", ["reviewer"], "vera-labs", generate_key().public_line, False)
    # a listed external specialist who never pushes: a hosted agent is run by the hub as soon
    # as a mission's creation is processed, so "nothing was delivered" needs a silent one
    registrar.add_actor(hub, SILENT, ["specialist"], "silent-co", generate_key().public_line,
                        False)
    record = {"schema_version": 1, "agent": SILENT, "n": 1, "status": "listed",
              "badge": "silver", "quality": 85.0, "p50_seconds": 1.0, "cost": 400,
              "reasons": [], "tasks": [], "at": START}
    registrar.commit_files(hub, {f"assessments/{SILENT}/0001.yaml": dump_yaml(record).encode()},
                           f"Assess {SILENT}: listed (test fixture)\n", hub.config.platform)
    with Ledger(hub.db_path, hub.clock) as ledger:
        ledger.deposit(CLIENT, SEED, cause="seed")
    return root


@dataclass(frozen=True)
class Result:
    """A finished CLI run: exit code, stdout, and stderr split into lines."""

    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.err.splitlines()


@dataclass
class Site:
    """One test's hub, its clock, and shortcuts to act and to look."""

    hub: Hub
    clock: FixedClock

    @property
    def root(self) -> Path:
        return self.hub.root

    def now(self) -> str:
        return iso(self.clock.now())

    def advance(self, delta: dt.timedelta | str) -> None:
        self.clock.advance(delta)

    # -- acting -----------------------------------------------------------------------------
    def create(self, tier: str = "T1", agents: tuple[str, ...] = (AGENT,),
               contract: str = REVIEW, inputs: Path = REVIEW_INPUTS,
               reviewers: tuple[str, ...] = (), price: int | None = None,
               mode: str = "direct") -> str:
        """A funded mission; its id."""
        created = mission.create(self.hub, contract_ref=contract, client=CLIENT, inputs=inputs,
                                 price=price, tier=tier, agents=list(agents),
                                 reviewers=list(reviewers), mode=mode)
        return created.doc.id

    def deliver(self, mission_id: str) -> list[str]:
        """Run the hosted agents, then process the outbox (DoD checks and reviewers)."""
        return delivery.dispatch(self.hub, mission_id) + worker.process(self.hub)

    def cli_args(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "aismm", "--hub", str(self.root), *args]

    def cli_env(self, **extra: str) -> dict[str, str]:
        env = {**os.environ, "AISMM_NOW": self.now(), **extra}
        env.pop("AISMM_DEBUG", None)
        return env

    def cli(self, *args: str, **extra: str) -> Result:
        """``aismm --hub H ARGS`` at the site's clock time, with ``extra`` variables set:
        ``main()`` in this process, or a new process for a call that sets a crash point
        (``AISMM_CRASH_AT`` kills the process where it says)."""
        done = call(["--hub", str(self.root), *args],
                    {"AISMM_NOW": self.now(), "AISMM_DEBUG": None, **extra}, timeout=180)
        return Result(done.code, done.out, done.err)

    def popen(self, *args: str, **extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.cli_args(*args), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=self.cli_env(**extra))

    def git(self, mission_id: str, *args: str, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
        return run_git(*args, cwd=self.hub.mission_path(mission_id), check=check)

    # -- looking ----------------------------------------------------------------------------
    def balances(self) -> dict[str, int]:
        with Ledger(self.hub.db_path, self.hub.clock) as ledger:
            return ledger.balances()

    def balance(self, account: str) -> int:
        return self.balances().get(account, 0)

    def closure(self, mission_id: str) -> Closure | None:
        with Ledger(self.hub.db_path, self.hub.clock) as ledger:
            return ledger.closure(mission_id)

    def check(self) -> list[str]:
        with Ledger(self.hub.db_path, self.hub.clock) as ledger:
            return ledger.check()

    def history(self) -> list[tuple[Any, ...]]:
        with Ledger(self.hub.db_path, self.hub.clock) as ledger:
            return [(t.seq, t.id, t.debit, t.credit, t.amount, t.action, t.cause)
                    for t in ledger.history()]

    def closing_transfers(self, mission_id: str) -> list[tuple[str, str, int]]:
        """(credit account, action, amount) of every settle/refund transfer of a mission."""
        with Ledger(self.hub.db_path, self.hub.clock) as ledger:
            return sorted((t.credit, t.action, t.amount) for t in ledger.history()
                          if t.mission == mission_id and t.action in ("settle", "refund"))

    def executions(self, mission_id: str) -> list[dict[str, Any]]:
        with Store(self.hub.db_path) as store:
            return [r for r in store.executions() if r["mission"] == mission_id]

    def status(self, mission_id: str) -> dict[str, Any]:
        return lifecycle.status(self.hub, mission_id)

    def refs(self, mission_id: str) -> dict[str, str]:
        """Every ref of the mission repository (name -> object id), read by git."""
        out = self.git(mission_id, "for-each-ref", "--format=%(refname) %(objectname)").stdout
        return dict(line.split(" ", 1) for line in out.splitlines())

    def state(self, mission_id: str) -> tuple[dict[str, str], list[tuple[Any, ...]]]:
        """Refs and the whole ledger history: equal before and after means nothing changed."""
        return self.refs(mission_id), self.history()

    def tag_body(self, mission_id: str, name: str) -> dict[str, Any]:
        """The YAML body of a settlement tag (the message after the title, before the signature)."""
        raw = self.git(mission_id, "cat-file", "tag", f"refs/tags/{name}").stdout
        message = raw.split("\n\n", 1)[1].split("-----BEGIN SSH SIGNATURE-----")[0]
        title, _, body = message.partition("\n\n")
        assert title == name
        data = load_yaml(body, name)
        assert isinstance(data, dict)
        return data

    def verify(self, mission_id: str, kind: str, rev: str) -> subprocess.CompletedProcess[str]:
        """``git verify-tag``/``verify-commit`` against the hub's allowed_signers file."""
        return run_git("-c", "gpg.format=ssh", "-c",
                       f"gpg.ssh.allowedSignersFile={self.hub.allowed_signers_path}",
                       f"verify-{kind}", rev, cwd=self.hub.mission_path(mission_id), check=False)

    def signed_by(self, mission_id: str, kind: str, rev: str) -> str | None:
        """The principal git reports for a good signature, or None."""
        proc = self.verify(mission_id, kind, rev)
        prefix = 'Good "git" signature for '
        for line in proc.stderr.splitlines():
            if line.startswith(prefix) and proc.returncode == 0:
                return line[len(prefix):].split(" with ", 1)[0]
        return None

    def push_as_agent(self, mission_id: str, agent: str, files: dict[str, bytes],
                      workdir: Path) -> subprocess.CompletedProcess[str]:
        """Plain git: clone, commit files on attempts/<agent> signed with its key, push."""
        clone = workdir / f"clone-{mission_id}-{agent}"
        run_git("clone", "-q", "--branch", f"attempts/{agent}",
                str(self.hub.mission_path(mission_id)), str(clone))
        for rel, data in files.items():
            (clone / rel).parent.mkdir(parents=True, exist_ok=True)
            (clone / rel).write_bytes(data)
        run_git("add", "-A", cwd=clone)
        run_git("-c", "gpg.format=ssh", "-c", f"user.signingkey={self.hub.key_path(agent)}",
                "commit", "-q", "-S", "-m", "Deliver", cwd=clone)
        return run_git("push", "-q", "origin", f"HEAD:refs/heads/attempts/{agent}", cwd=clone,
                       env={"AISMM_NOW": self.now()}, check=False)


def make_site(template: Path, tmp_path: Path, processing: str = "inline") -> Site:
    """A private copy of the ``template`` hub (see :func:`build_template`) with its own clock
    at ``START``."""
    root = copy_tree(template, tmp_path / "hub")
    if processing != "inline":
        cfg = root / "hub.yaml"
        data = load_yaml(cfg.read_text(), str(cfg))
        data["processing"] = processing
        cfg.write_text(dump_yaml(data))
    clock = FixedClock(START)
    return Site(Hub(root, clock=clock), clock)


def failing_findings() -> bytes:
    """The golden code-review findings with one finding moved to a line that does not exist:
    valid against the deliverable schema, failing the ``findings-anchored`` DoD check."""
    data = json.loads(GOLDEN.read_text())
    data["findings"][0]["line"] = 9999
    return (json.dumps(data, indent=2) + "\n").encode()
