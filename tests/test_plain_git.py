"""docs/plain-git.md runs as written: every ``sh`` block, in order and unchanged, in one shell.

The blocks run the way a reader pastes them into one terminal: one ``bash -euo pipefail``
session started in this project's clone, so variables, the working folder and background jobs
carry over from block to block. The session starts from a bare environment (``PATH`` with the
``aismm`` CLI, ``HOME``, git's isolation), so every variable a block uses must come from an
earlier block, and the first block makes a fresh hub. Any failing command fails the test, except
in the block marked ``sh expect-fail``, which must fail.

The walk-through: an external agent (``ext``, key from ``ssh-keygen``) publishes its manifest
with a signed commit to ``registry.git``, is assessed through the benchmark missions it delivers
by git and listed, is hired at T1, delivers (after one refused push), an external reviewer
(``vera``) reviews, the client merges with ``git merge --no-ff -S``, the hub settles, and
``git verify-commit`` with the hub's allowed-signers file accepts every commit and tag.

``processing``: ``inline`` (post-receive assesses each delivery, the hub writes the platform
verdict) or ``daemon``: from the mission on (after the assessment, which needs the hub's verdicts)
the test switches the hub to queue its work, so the operator's block pushes the platform verdict
and ``aismm process`` settles.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from aismm.core.model import load_yaml
from tests import hubkit
from tests.hubkit import run_git

DOC = hubkit.ROOT / "docs" / "plain-git.md"
BLOCK = re.compile(r"^```sh( expect-fail)?\n(.*?)^```$", flags=re.MULTILINE | re.DOTALL)
#: The refusal the doc quotes (its ``text`` block) and its expect-fail block must produce.
REFUSAL = ("remote: aismm: refs/heads/attempts/ext: README.md: agent ext may write only under "
           "deliverable/; move the file under deliverable/")
#: What the session inherits: the CLI on PATH, a HOME, git cut off from the user's config.
PASSED = ("HOME", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_NOSYSTEM", "GIT_AUTHOR_NAME",
          "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "LANG", "LC_ALL")


@dataclass(frozen=True)
class Block:
    number: int
    code: str
    fails: bool


def doc_blocks() -> list[Block]:
    """The ``sh`` code blocks of docs/plain-git.md, in order (``sh expect-fail`` must fail)."""
    return [Block(n, m.group(2), bool(m.group(1)))
            for n, m in enumerate(BLOCK.finditer(DOC.read_text()), 1)]


def _block(blocks: list[Block], needle: str) -> Block:
    found = [b for b in blocks if needle in b.code]
    assert len(found) == 1, f"one block should contain {needle!r}, found {len(found)}"
    return found[0]


def test_the_doc_has_a_block_for_every_step() -> None:
    blocks = doc_blocks()
    assert len(blocks) == 14
    assert "aismm hub init" in blocks[0].code and "mktemp -d" in blocks[0].code
    assert [b.number for b in blocks if b.fails] == [_block(blocks, ">> README.md").number]
    registry = _block(blocks, '"agents/$AGENT.yaml"')
    assert "registry.git" in registry.code and "git push origin main" in registry.code
    assert "aismm" not in registry.code  # the provider's side is plain git
    assert _block(blocks, "agent assess").number < _block(blocks, "mission create").number
    accept = _block(blocks, "git merge -q --no-ff -S")
    assert "git push origin accepted" in accept.code
    assert "git verify-commit" in blocks[-1].code
    assert REFUSAL.removeprefix("remote: ") in DOC.read_text()


def test_every_variable_comes_from_an_earlier_block() -> None:
    """Nothing is left for the reader (or the test) to set: the set-up block gives it all."""
    known = {"PWD"}
    for block in doc_blocks():
        known |= set(re.findall(r"(?:^|[\s;(])([A-Z_][A-Z0-9_]*)=", block.code, re.MULTILINE))
        for names in re.findall(r"\bread -r ([A-Z_][A-Z0-9_ ]*)", block.code):
            known |= set(names.split())
        used = set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", block.code))
        assert used <= known, f"block {block.number} uses unset {sorted(used - known)}"


def _script(blocks: list[Block], after: dict[int, str]) -> str:
    """One session: each block runs in the shell itself, its output kept in ``<n>.out``."""
    lines = ["set -euo pipefail"]
    for b in blocks:
        out = f'"$DOC_STATE/{b.number}.out"'
        lines.append(f'echo {b.number} > "$DOC_STATE/block"')
        if b.fails:
            lines += ["if {", b.code + f"}} > {out} 2>&1; then",
                      f"  echo 'block {b.number} should have failed' >&2; exit 97", "fi"]
        else:
            lines += ["{", b.code + f"}} > {out} 2>&1"]
        if b.number in after:
            lines.append(after[b.number])
    lines += ['echo done > "$DOC_STATE/block"',  # then every shell variable, for the checks
              'for v in $(compgen -v); do printf \'%s=%s\\0\' "$v" "${!v-}"; done \\',
              '  > "$DOC_STATE/vars"']
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Session:
    outputs: dict[int, str]
    env: dict[str, str]


def run_doc(tmp_path: Path, processing: str) -> Session:
    blocks = doc_blocks()
    state = tmp_path / "state"
    (tmp_path / "tmp").mkdir()
    state.mkdir()
    after = {}
    if processing == "daemon":  # the operator's choice, once the agent is listed
        after[_block(blocks, "mission create").number] = (
            'echo "the switch to processing: daemon" > "$DOC_STATE/block"\n'
            "sed -i 's/^processing: inline$/processing: daemon/' \"$HUB/hub.yaml\"\n"
            "grep -q '^processing: daemon$' \"$HUB/hub.yaml\"")
    script = state / "session.sh"
    script.write_text(_script(blocks, after))
    cli = Path(sys.executable).parent
    assert (cli / "aismm").exists(), "run the tests with the venv's python (.venv/bin/python)"
    env = {k: os.environ[k] for k in PASSED if k in os.environ}
    env |= {"PATH": f"{cli}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "TMPDIR": str(tmp_path / "tmp"), "DOC_STATE": str(state)}
    proc = subprocess.Popen(["bash", str(script)], cwd=hubkit.ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        tail, _ = proc.communicate(timeout=900)
    finally:  # a block that failed may leave the background assessment running
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
    outputs = {b.number: p.read_text(errors="replace") if (p := state / f"{b.number}.out")
               .exists() else "" for b in blocks}
    reached = (state / "block").read_text().strip()
    if not reached.isdigit() and reached != "done":
        pytest.fail(f"{reached} failed:\n{tail.decode(errors='replace')}")
    if reached != "done":
        number = int(reached)
        pytest.fail(f"block {number} failed (exit {proc.returncode}):\n"
                    f"{blocks[number - 1].code}\n--- its output:\n{outputs[number]}\n"
                    f"--- the session:\n{tail.decode(errors='replace')}")
    assert proc.returncode == 0, tail.decode(errors="replace")
    raw = (state / "vars").read_bytes().decode()
    variables = dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)
    return Session(outputs, variables)


def _signers(bare: Path, signers_file: str) -> dict[str, str]:
    """Who signed each commit of a repository, as git itself sees it."""
    signer_of = {}
    for commit in run_git("rev-list", "--all", cwd=bare).stdout.decode().split():
        verified = run_git("-c", f"gpg.ssh.allowedSignersFile={signers_file}",
                           "verify-commit", commit, cwd=bare, check=False)
        said = verified.stderr.decode()
        assert verified.returncode == 0, said
        found = re.search(r'Good "git" signature for (\S+)@aismm\.invalid', said)
        assert found, said
        signer_of[commit] = found.group(1)
    return signer_of


def _last_change(bare: Path, rev: str, path: str) -> str:
    return run_git("log", "--format=%H", "-1", rev, "--", path, cwd=bare).stdout.decode().strip()


@pytest.mark.parametrize("processing", ["inline", "daemon"])
def test_the_protocol_with_plain_git_only(tmp_path: Path, processing: str) -> None:
    session = run_doc(tmp_path, processing)
    blocks = doc_blocks()
    for block in blocks:
        out = session.outputs[block.number]
        rejected = [line for line in out.splitlines() if line.startswith("remote: aismm: refs/")]
        if block.fails:
            assert [line.rstrip() for line in rejected] == [REFUSAL], out
        else:
            assert not rejected, f"block {block.number}:\n{out}"
    judged = session.outputs[_block(blocks, "the hub already judged").number]
    assert ("the hub already judged" in judged) == (processing == "inline"), judged

    var = session.env
    hub = Path(var["HUB"])
    signers_file = str(hub / "allowed_signers")

    # The registry: ext's own signed manifest, and a listing assessment signed by the platform.
    registry = hub / "registry.git"
    reg_signers = _signers(registry, signers_file)
    assert reg_signers[_last_change(registry, "main", "agents/ext.yaml")] == "ext"
    manifest = load_yaml(run_git("show", "main:agents/ext.yaml", cwd=registry).stdout, "ext")
    assert (manifest["id"], manifest["owner"], manifest["runtime"]) == ("ext", "ext",
                                                                       {"kind": "git"})
    record = load_yaml(run_git("show", "main:assessments/ext/0001.yaml", cwd=registry).stdout,
                       "assessment")
    assert record["status"] == "listed", record["reasons"]
    tasks = sorted(p.name for p in (hubkit.ROOT / "contracts" / "code_review" /
                                    "benchmark").iterdir())
    assert sorted(t["task"] for t in record["tasks"]) == tasks
    assert all(t["dod"] == "pass" for t in record["tasks"])
    assert reg_signers[_last_change(registry, "main", "assessments/ext/0001.yaml")] == "platform"
    benches = sorted((hub / "missions").glob("bench-*.git"))
    assert len(benches) == len(tasks)
    for bench in benches:
        delivery = _last_change(bench, "refs/heads/attempts/ext", "deliverable")
        assert _signers(bench, signers_file)[delivery] == "ext"

    # The mission: the delivery, a passing platform verdict and vera's review, both bound to
    # the delivered tree; the client's merge of the attempt's head; the settled tag.
    bare = hub / "missions" / f"{var['MISSION']}.git"
    refs = hubkit.repo_state(bare).refs
    main, head, accepted = (refs["refs/heads/main"], refs["refs/heads/attempts/ext"],
                            refs["refs/heads/accepted"])
    parents = run_git("rev-parse", f"{accepted}^1", f"{accepted}^2", cwd=bare).stdout.split()
    assert [p.decode() for p in parents] == [main, head]
    assert run_git("rev-parse", f"{accepted}^{{tree}}", cwd=bare).stdout == \
        run_git("rev-parse", f"{head}^{{tree}}", cwd=bare).stdout
    tree = run_git("rev-parse", f"{head}:deliverable", cwd=bare).stdout.decode().strip()
    assert run_git("show", f"{head}:deliverable/findings.json", cwd=bare).stdout == \
        hubkit.GOLDEN.read_bytes()
    assert run_git("show", f"{head}:README.md", cwd=bare).stdout == \
        run_git("show", f"{main}:README.md", cwd=bare).stdout  # the refused notes never landed
    for path, reviewer in (("verdicts/platform.yaml", "platform"), ("verdicts/vera.yaml", "vera")):
        doc = load_yaml(run_git("show", f"{head}:{path}", cwd=bare).stdout, path)
        assert (doc["mission"], doc["reviewer"], doc["deliverable_tree"], doc["verdict"]) == \
            (var["MISSION"], reviewer, tree, "pass")

    signer_of = _signers(bare, signers_file)
    assert signer_of[main] == "alice"
    assert signer_of[accepted] == "alice"
    assert signer_of[_last_change(bare, head, "deliverable")] == "ext"
    assert signer_of[_last_change(bare, head, "verdicts/vera.yaml")] == "vera"
    assert signer_of[_last_change(bare, head, "verdicts/platform.yaml")] == "platform"
    assert refs.get("refs/tags/settled") is not None, "the escrow was not settled"
    assert run_git("rev-parse", "refs/tags/settled^{commit}", cwd=bare).stdout.decode().strip() \
        == accepted
    for tag in [r for r in refs if r.startswith("refs/tags/")]:
        verified = run_git("-c", f"gpg.ssh.allowedSignersFile={signers_file}",
                           "verify-tag", tag, cwd=bare, check=False)
        assert verified.returncode == 0 and "platform@aismm.invalid" in verified.stderr.decode()
    assert "settled" in session.outputs[_block(blocks, "mission status").number]
