"""``aismm demo``: the whole marketplace on a fresh embedded hub, narrated."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from aismm.core.actor import Manifest, Runtime
from aismm.infra import sandbox
from aismm.infra.hub import Hub, bundled
from aismm.infra.ledger import Ledger
from aismm.services import client, delivery, lifecycle, market, mission, registrar, worker
from aismm.services.hubs import init_hub
from aismm.state import registry

__all__ = ["run"]

Say = Callable[[str], None]


def _git(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout + done.stderr


def _task(contract: str, task: str) -> Path:
    return bundled("contracts") / contract / "benchmark" / task / "inputs"


_HEX = re.compile(r"\b[0-9a-f]{12,40}\b")


def run(directory: Path, out: Say) -> dict[str, object]:
    """Run the story in ``directory`` (a new hub is created there) and narrate it."""
    started = time.monotonic()
    named: list[str] = []

    def say(line: str) -> None:
        named.extend(_HEX.findall(line))
        out(line)

    root = directory.resolve()
    hub_dir, work = root / "hub", root / "work"

    isolation = sandbox.isolation()  # agent code runs only contained: none here stops the demo
    say("1. The platform opens a hub and publishes the contract catalog")
    hub = init_hub(hub_dir)
    reg = hub.registry_path
    contracts = registry.contracts(hub)
    tip = _git("rev-parse", "HEAD", cwd=reg).strip()
    say(f"   {hub_dir}: registry.git {tip[:12]} signed by 'platform' publishes "
        f"{', '.join(sorted(contracts))}")

    say("\n2. Providers publish agents; the hub assesses them on each contract's benchmark")
    say(f"   agent code runs in the sandbox, isolation {isolation} (docs/sandbox.md)")
    say("   acme: ref-code-reviewer, ref-schema-designer, ref-test-writer, ref-orchestrator · "
        "qa-guild: ref-reviewer · cheapo: sloppy-coder")
    market.register_reference_agents(hub, assess_them=False)
    registrar.add_actor(hub, "lintworks", ["client"], None, None, True)
    registrar.add_actor(hub, "lint-bot", ["specialist"], "lintworks", None, True)
    market.register_manifest(hub, Manifest(
        id="lint-bot", owner="lintworks", roles=["specialist"],
        contracts=["contract.code_review@1.0.0"], price=300, capacity=4,
        runtime=Runtime(kind="command", argv=["{python}", "-m", "aismm.agents.code_reviewer",
                                              "--order", "severity"]),
        description="lintworks' reviewer, built on the open reference code reviewer; lists "
                    "findings by severity"),
        "lintworks")
    say("   lintworks: lint-bot (a second code reviewer, cheaper)")
    for agent in ("ref-code-reviewer", "lint-bot", "ref-schema-designer", "sloppy-coder"):
        record = market.assess(hub, agent)
        if record.listed:
            say(f"   {agent:<20} quality {record.quality:>5}  p50 {record.p50_seconds}s  "
                f"→ LISTED ({record.badge})")
        else:  # the reason names the contract whose threshold it missed, with its own figure
            say(f"   {agent:<20} REJECTED — {record.reasons[0]}")

    say("\n3. A client joins and funds its wallet")
    registrar.add_actor(hub, "dana", ["client"], "dana-corp", None, True)
    with Ledger(hub.db_path, hub.clock) as ledger:
        ledger.deposit("dana", 3000, cause="demo-deposit")
    say("   dana (owner dana-corp) deposits 3000 tokens; her key: " + str(hub.key_path("dana")))

    say("\n4. A T1 code review runs as a contest of the two best-ranked listed agents")
    top = market.pick(hub, "contract.code_review", "dana", 2)
    for ranked in market.ranking(hub, "contract.code_review", "dana"):
        if isinstance(ranked, market.RankedRow):
            say(f"   rank: {ranked.agent:<18} score {ranked.score:6.2f} (reputation "
                f"{ranked.reputation:.1f}, price score {ranked.price_score}, load "
                f"{ranked.load_score})")
        else:
            say(f"   rank: {ranked.agent:<18} excluded ({ranked.why})")
    review = mission.create(hub, contract_ref="contract.code_review", client="dana",
                            inputs=_task("code_review", "inventory_service"), price=None,
                            tier="T1", agents=top, mode="contest")
    mid = review.doc.id
    say(f"   mission {mid}: main {review.main[:12]} signed by dana; escrow holds "
        f"{review.doc.price} + {review.doc.fee} fee ({review.doc.fee_bp / 100:g}%)")
    for line in _dispatch(hub, mid):
        say(f"   {line}")

    say("\n5. dana asks one agent for a rework, then accepts with plain git")
    first = top[0]
    for line in client.request(hub, mid, first, "rework",
                                   "Add a notes.md that ranks the findings by risk"):
        say(f"   {line.removeprefix('aismm: ')}")
    clone = work / mid
    work.mkdir(parents=True, exist_ok=True)
    _git("clone", "-q", str(review.path), str(clone), cwd=work)
    _git("config", "user.name", "dana", cwd=clone)
    _git("config", "user.email", "dana@aismm.invalid", cwd=clone)
    _git("config", "gpg.format", "ssh", cwd=clone)
    _git("config", "user.signingkey", str(hub.key_path("dana")), cwd=clone)
    _git("switch", "-q", "accepted", cwd=clone)
    say(f"   $ git merge --no-ff -S origin/attempts/{first}   (in {clone})")
    _git("merge", "-q", "--no-ff", "-S", "-m", f"Accept attempts/{first}",
         f"origin/attempts/{first}", cwd=clone)
    merge = _git("rev-parse", "HEAD", cwd=clone).strip()
    say(f"   merge commit {merge[:12]} signed by dana")
    say("   $ git push origin accepted")
    pushed = _git("push", "origin", "accepted", cwd=clone)
    for line in pushed.splitlines():
        if "aismm:" in line:
            say("   " + line.strip().replace("remote: aismm: ", "hub: ").rstrip())
    st = lifecycle.status(hub, mid)
    for a in st["attempts"]:
        say(f"   attempts/{a['agent']}: {a['state']}")

    say("\n6. A schema_design mission hires ref-schema-designer directly")
    schema = mission.create(hub, contract_ref="contract.schema_design", client="dana",
                            inputs=_task("schema_design", "order"), price=None, tier="T1",
                            agents=["ref-schema-designer"])
    for line in _dispatch(hub, schema.doc.id):
        say(f"   {line}")
    for line in client.accept(hub, schema.doc.id, "ref-schema-designer"):
        say(f"   {line.removeprefix('aismm: ')}")

    say("\n7. Balances, reputation and the ledger check")
    with Ledger(hub.db_path, hub.clock) as ledger:
        for account, amount in sorted(ledger.balances().items()):
            say(f"   {account:<40} {amount:>7}")
        problems = ledger.check()
    say("   ledger check: " + ("clean" if not problems else "; ".join(problems)))
    for row in market.listing(hub, role="specialist"):
        stars = "-" if row.stars is None else f"{row.stars:.1f}★"
        quality = "-" if row.quality is None else f"{row.quality:.1f}"
        say(f"   {row.agent:<20} {row.status:<9} quality {quality:>5}  {stars:>5}  "
            f"executions {row.executions}")

    verified = _verify(hub, named)
    say(f"\nEvery commit and tag named above exists and verifies with git verify-commit / "
        f"verify-tag ({verified} checked). Done in {time.monotonic() - started:.1f}s.")
    say(f"""
Try next:
  export AISMM_HUB={hub_dir}
  aismm mission status {mid}
  git -C {review.path} -c gpg.ssh.allowedSignersFile={hub.allowed_signers_path} \\
      log --show-signature --oneline attempts/{first}
  aismm agent list
  the plain-git walk-through: docs/plain-git.md""")
    return {"hub": str(hub_dir), "missions": [mid, schema.doc.id], "named": named}


def _dispatch(hub: Hub, mission_id: str) -> list[str]:
    lines = delivery.dispatch(hub, mission_id) + worker.process(hub)
    return [line.removeprefix("aismm: ") for line in lines]


def _verify(hub: Hub, named: list[str]) -> int:
    """Every commit or tag id the story printed exists in a hub repository and verifies."""
    repos = [hub.registry_path, *sorted(hub.missions_dir.glob("*.git"))]
    checked = 0
    for oid in dict.fromkeys(named):
        for repo in repos:
            kind = subprocess.run(["git", "cat-file", "-t", oid], cwd=repo, capture_output=True,
                                  text=True).stdout.strip()
            if kind in ("commit", "tag"):
                _git("-c", "gpg.format=ssh", "-c",
                     f"gpg.ssh.allowedSignersFile={hub.allowed_signers_path}",
                     f"verify-{kind}", oid, cwd=repo)
                checked += 1
                break
            if kind == "tree":
                break
        else:
            raise RuntimeError(f"demo: {oid} was named but is in no hub repository")
    return checked
