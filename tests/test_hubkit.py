"""The test kit's hub copies (tests/hubkit.py ``copy_hub``) are hubs of their own.

Tests get copies of hubs built once per session; a copy that still pointed at its template (a
repository config naming the template's allowed_signers, a hook finding the template's hub)
would let one test's work reach another's, or verify against the wrong actors.
"""

from __future__ import annotations

from pathlib import Path

from aismm.infra.git import Repo
from aismm.infra.ledger import Ledger
from aismm.services import mission, registrar
from aismm.state import registry
from tests.hubkit import GOLDEN, INPUTS, _rewritable, copy_hub, findings, run_git


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_copy_names_itself_and_works_where_it_lands(reference_hub: Path,
                                                      tmp_path: Path) -> None:
    before = _tree(reference_hub)
    hub = copy_hub(reference_hub, tmp_path / "elsewhere" / "hub")
    for path in _rewritable(hub.root):
        assert str(reference_hub).encode() not in path.read_bytes(), path
    config = run_git("config", "gpg.ssh.allowedSignersFile", cwd=hub.registry_path)
    assert config.stdout.decode().strip() in ("", str(hub.allowed_signers_path))

    # an actor added to the copy only is known to the copy's registry (and git's view of it)
    registrar.add_actor(hub, "carol", ["client"], None, None, True)
    with Ledger(hub.db_path, hub.clock) as ledger:
        ledger.deposit("carol", 1000, cause="seed")
    assert "carol" in registry.actors(hub)
    verified = run_git("-c", f"gpg.ssh.allowedSignersFile={hub.allowed_signers_path}",
                       "verify-commit", "main", cwd=hub.registry_path, check=False)
    assert verified.returncode == 0, verified.stderr.decode()

    # a push through the copy's installed hooks is judged and recorded by the copy
    created = mission.create(hub, contract_ref="contract.code_review", client="carol",
                             inputs=INPUTS, price=400, tier="T0", agents=["ref-code-reviewer"])
    clone = tmp_path / "clone"
    run_git("clone", "-q", str(created.path), str(clone))
    run_git("switch", "-q", "attempts/ref-code-reviewer", cwd=clone)
    (clone / "deliverable").mkdir(exist_ok=True)
    (clone / "deliverable" / GOLDEN.name).write_bytes(findings(3))
    run_git("add", "deliverable", cwd=clone)
    run_git("-c", "gpg.format=ssh", "-c",
            f"user.signingkey={hub.key_path('ref-code-reviewer')}", "commit", "-q", "-S", "-m",
            "deliver", cwd=clone)
    pushed = run_git("push", "origin", "attempts/ref-code-reviewer", cwd=clone, check=False)
    assert pushed.returncode == 0, pushed.stderr.decode()
    tip = Repo(created.path).ref("refs/heads/attempts/ref-code-reviewer")
    assert tip is not None and tip != created.main

    assert _tree(reference_hub) == before  # the template saw none of it
