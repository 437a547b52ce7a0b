"""The whole protocol with the ``git`` binary alone: the ``sh`` blocks of docs/plain-git.md, run
in order and unchanged against a real hub with its installed hooks (pre- and post-receive).

An external agent and an external reviewer sign with keys made by ``ssh-keygen``; the client
merges with ``git merge --no-ff -S``. Whether the hub already committed the platform verdict
after the delivery (its post-receive assessment) or not, the story ends accepted, and
``git verify-commit`` with the hub's allowed-signers file accepts every commit.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from aismm.core.model import dump_yaml, load_yaml
from tests import hubkit
from tests.hubkit import Kit, run_git

DOC = hubkit.ROOT / "docs" / "plain-git.md"
ATTEMPT = "refs/heads/attempts/ext"


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kit]:
    yield from hubkit.kit_fixture(tmp_path_factory)


def doc_blocks() -> list[str]:
    """The ``sh`` code blocks of docs/plain-git.md, in order."""
    return re.findall(r"^```sh\n(.*?)^```$", DOC.read_text(), flags=re.MULTILINE | re.DOTALL)


def test_the_doc_has_a_block_for_every_step() -> None:
    blocks = doc_blocks()
    assert len(blocks) == 5
    assert "git push origin \"attempts/$AGENT\"" in blocks[0]
    assert "git merge -q --no-ff -S" in blocks[3] and "git push origin accepted" in blocks[3]
    assert "git verify-commit" in blocks[4]


@pytest.fixture(params=["inline", "daemon"])
def processing(kit: Kit, request: pytest.FixtureRequest) -> Iterator[str]:
    """inline: post-receive assesses the delivery (the hub writes the platform verdict);
    daemon: it only queues the event, so the operator's block pushes the platform verdict."""
    config = kit.hub.root / "hub.yaml"
    original = config.read_text()
    data = load_yaml(original, "hub.yaml")
    data["processing"] = request.param
    config.write_text(dump_yaml(data))
    yield request.param
    config.write_text(original)


def test_the_protocol_with_plain_git_only(kit: Kit, tmp_path: Path, processing: str) -> None:
    created = kit.mission(("ext",), tier="T1", reviewers=("vera",))
    hub = kit.hub
    work = tmp_path / "work"
    work.mkdir()
    env = {
        **os.environ,
        "HUB": str(hub.root), "MISSION": created.doc.id, "WORK": str(work),
        "AGENT": "ext", "AGENT_KEY": str(kit.key("ext")),
        "REVIEWER": "vera", "REVIEWER_KEY": str(kit.key("vera")),
        "CLIENT": "alice", "CLIENT_KEY": str(hub.key_path("alice")),
        "PLATFORM_KEY": str(hub.key_path("platform")),
        "DELIVERABLE": str(hubkit.GOLDEN.parent),
    }
    outputs = []
    for number, block in enumerate(doc_blocks(), 1):
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block], env=env, cwd=tmp_path,
                              capture_output=True, text=True, check=False)
        outputs.append(proc.stdout + proc.stderr)
        assert proc.returncode == 0, f"block {number} failed:\n{block}\n---\n{outputs[-1]}"
    rejections = [line for out in outputs for line in out.splitlines()
                  if line.startswith("remote: aismm: refs/")]
    assert not rejections
    judged_by_hub = "the hub already judged" in outputs[1]
    assert judged_by_hub == (processing == "inline"), outputs[1]

    bare = created.path
    refs = hubkit.repo_state(bare).refs
    head, accepted = refs[ATTEMPT], refs["refs/heads/accepted"]
    assert refs["refs/heads/main"] == created.main
    parents = run_git("rev-parse", f"{accepted}^1", f"{accepted}^2", cwd=bare).stdout.split()
    assert [p.decode() for p in parents] == [created.main, head]
    assert run_git("rev-parse", f"{accepted}^{{tree}}", cwd=bare).stdout == \
        run_git("rev-parse", f"{head}^{{tree}}", cwd=bare).stdout

    # What the attempt holds: the delivery, a passing platform verdict and vera's review, both
    # bound to the delivered tree.
    tree = run_git("rev-parse", f"{head}:deliverable", cwd=bare).stdout.decode().strip()
    assert run_git("show", f"{head}:deliverable/findings.json", cwd=bare).stdout == \
        hubkit.GOLDEN.read_bytes()
    for path, reviewer in (("verdicts/platform.yaml", "platform"), ("verdicts/vera.yaml", "vera")):
        doc = load_yaml(run_git("show", f"{head}:{path}", cwd=bare).stdout, path)
        assert (doc["mission"], doc["reviewer"], doc["deliverable_tree"], doc["verdict"]) == \
            (created.doc.id, reviewer, tree, "pass")

    # Who signed what, as git itself sees it with the hub's allowed-signers file.
    signer_of = {}
    commits = run_git("rev-list", "--all", cwd=bare).stdout.decode().split()
    for commit in commits:
        verified = run_git("-c", f"gpg.ssh.allowedSignersFile={hub.allowed_signers_path}",
                           "verify-commit", commit, cwd=bare, check=False)
        said = verified.stderr.decode()
        assert verified.returncode == 0, said
        found = re.search(r'Good "git" signature for (\S+)@aismm\.invalid', said)
        assert found, said
        signer_of[commit] = found.group(1)
    assert signer_of[created.main] == "alice"
    assert signer_of[accepted] == "alice"
    delivery = run_git("log", "--format=%H", "-1", head, "--", "deliverable", cwd=bare)
    assert signer_of[delivery.stdout.decode().strip()] == "ext"
    vera = run_git("log", "--format=%H", "-1", head, "--", "verdicts/vera.yaml", cwd=bare)
    assert signer_of[vera.stdout.decode().strip()] == "vera"
    dod = run_git("log", "--format=%H", "-1", head, "--", "verdicts/platform.yaml", cwd=bare)
    assert signer_of[dod.stdout.decode().strip()] == "platform"
    for tag in [r for r in refs if r.startswith("refs/tags/")]:
        verified = run_git("-c", f"gpg.ssh.allowedSignersFile={hub.allowed_signers_path}",
                           "verify-tag", tag, cwd=bare, check=False)
        assert verified.returncode == 0 and "platform@aismm.invalid" in verified.stderr.decode()
