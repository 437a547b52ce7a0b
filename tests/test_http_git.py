"""git over HTTP with the real git CLI and libgit2 against ``aismm serve --http``.

Every request goes through stock ``git http-backend``; the pusher the gate sees is the actor the
token proved (REMOTE_USER), so a valid token of someone else cannot push an agent's commits, and
in an open contest a rival's attempt is neither advertised nor fetchable by object id.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pygit2
import pytest

from aismm.infra.ledger import Ledger
from aismm.services import lifecycle
from tests.hubkit import Clone, findings, run_git, verdict
from tests.webkit import Web, basic, credentials, serving


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    yield from serving(tmp_path_factory.mktemp("web"))


def _sign(web: Web, actor: str) -> list[str]:
    return Clone.sign_args(web.kit.key(actor))


def _deliver(web: Web, work: Path, agent: str, data: bytes | None = None) -> tuple[int, str]:
    """Commit the golden findings on attempts/<agent> signed by the agent; push as the agent."""
    web.git(agent, "switch", "-q", f"attempts/{agent}", cwd=work)
    (work / "deliverable").mkdir(exist_ok=True)
    (work / "deliverable" / "findings.json").write_bytes(data or findings())
    run_git("add", "-A", cwd=work)
    run_git(*_sign(web, agent), "commit", "-q", "-S", "-m", "Deliver", cwd=work)
    return web.git(agent, "push", "origin", f"attempts/{agent}", cwd=work, check=False)


def test_clone_deliver_review_accept_and_the_escrow_settles(web: Web, tmp_path: Path) -> None:
    created = web.kit.mission(("bob",), reviewers=("rita",))
    mid = created.doc.id
    work = tmp_path / "bob"
    web.git("bob", "clone", "-q", web.remote(mid), str(work))
    code, text = _deliver(web, work, "bob")
    assert code == 0, text
    assert "remote: aismm: platform DoD on bob: PASS (100/100)" in text

    review = tmp_path / "rita"
    web.git("rita", "clone", "-q", "--branch", "attempts/bob", web.remote(mid), str(review))
    tree = run_git("rev-parse", "HEAD:deliverable", cwd=review).stdout.decode().strip()
    (review / "verdicts").mkdir(exist_ok=True)
    (review / "verdicts" / "rita.yaml").write_bytes(verdict(mid, "rita", tree))
    run_git("add", "-A", cwd=review)
    run_git(*_sign(web, "rita"), "commit", "-q", "-S", "-m", "Verdict of rita", cwd=review)
    code, text = web.git("rita", "push", "origin", "attempts/bob", cwd=review, check=False)
    assert code == 0, text
    assert lifecycle.status(web.kit.hub, mid)["state"] == "awaiting_acceptance"

    accept = tmp_path / "alice"
    web.git("alice", "clone", "-q", "--branch", "accepted", web.remote(mid), str(accept))
    run_git(*_sign(web, "alice"), "merge", "-q", "--no-ff", "-S", "-m", "Accept",
            "origin/attempts/bob", cwd=accept)
    code, text = web.git("alice", "push", "origin", "accepted", cwd=accept, check=False)
    assert code == 0, text
    with Ledger(web.kit.hub.db_path, web.kit.hub.clock) as ledger:
        closure = ledger.closure(mid)
        assert ledger.check() == []
    assert closure is not None and closure.kind == "settled"
    assert lifecycle.status(web.kit.hub, mid)["state"] == "settled"


@pytest.mark.parametrize("who", ["nobody", "wrong"])
def test_no_or_a_wrong_token_is_401_with_www_authenticate(web: Web, tmp_path: Path,
                                                          who: str) -> None:
    mid = web.kit.mission(("bob",)).doc.id
    headers = basic("bob", "aismm_00000000_" + "x" * 43) if who == "wrong" else {}
    answer = httpx.get(f"{web.remote(mid)}/info/refs", params={"service": "git-upload-pack"},
                       headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith('Basic realm="aismm"')
    assert answer.text.startswith("aismm: ") and answer.text.count("\n") == 1
    if who == "wrong":  # bob's real token under another name is just as wrong
        answer = httpx.get(f"{web.remote(mid)}/info/refs", headers=basic("dave", web.token("bob")),
                           params={"service": "git-upload-pack"})
        assert answer.status_code == 401
    if who == "wrong":
        proc = run_git(*credentials("bob", "aismm_00000000_" + "y" * 43), "clone", "-q",
                       web.remote(mid), str(tmp_path / "c"), check=False,
                       env={"GIT_TERMINAL_PROMPT": "0"})
        code, text = proc.returncode, proc.stderr.decode()
        assert "Authentication failed" in text
    else:  # git asks for a user name only after a 401 (prompts are off here)
        code, text = web.git(None, "clone", "-q", web.remote(mid), str(tmp_path / "c"),
                             check=False)
        assert "could not read Username" in text
    assert code != 0 and not (tmp_path / "c" / ".git").exists()


def test_another_actors_token_cannot_push_the_agents_commits(web: Web, tmp_path: Path) -> None:
    mid = web.kit.mission(("bob",)).doc.id
    work = tmp_path / "w"
    web.git("alice", "clone", "-q", "--branch", "attempts/bob", web.remote(mid), str(work))
    before = run_git("rev-parse", "attempts/bob", cwd=web.kit.hub.mission_path(mid)).stdout
    (work / "deliverable").mkdir()
    (work / "deliverable" / "findings.json").write_bytes(findings())
    run_git("add", "-A", cwd=work)
    run_git(*_sign(web, "bob"), "commit", "-q", "-S", "-m", "Deliver", cwd=work)
    short = run_git("rev-parse", "--short=12", "HEAD", cwd=work).stdout.decode().strip()
    code, text = web.git("alice", "push", "origin", "attempts/bob", cwd=work, check=False)
    assert code != 0
    assert (f"remote: aismm: refs/heads/attempts/bob: commit {short}: signed by bob but pushed "
            "by alice; push only commits you signed yourself") in text
    # nothing a client sends names the pusher: not a Remote-User header, not an env-like one
    spoof = ["-c", "http.extraHeader=Remote-User: bob", "-c", "http.extraHeader=AISMM-Pusher: bob",
             "-c", "http.extraHeader=X-Forwarded-User: bob"]
    code, text = web.git("alice", *spoof, "push", "origin", "attempts/bob", cwd=work, check=False)
    assert code != 0 and "signed by bob but pushed by alice" in text
    after = run_git("rev-parse", "attempts/bob", cwd=web.kit.hub.mission_path(mid)).stdout
    assert after == before
    # dave is no party to this mission: he may not even read it
    code, text = web.git("dave", "clone", "-q", web.remote(mid), str(tmp_path / "d"),
                         check=False)
    assert code != 0 and "403" in text


def _pkt(line: str) -> bytes:
    return f"{len(line) + 4:04x}{line}".encode()


def test_a_rival_cannot_see_or_fetch_another_attempt(web: Web, tmp_path: Path) -> None:
    mid = web.kit.mission(("bob", "dave"), mode="contest").doc.id
    work = tmp_path / "bob"
    web.git("bob", "clone", "-q", web.remote(mid), str(work))
    code, text = _deliver(web, work, "bob")
    assert code == 0, text
    secret = run_git("rev-parse", "attempts/bob",  # the delivery and the platform's verdict
                     cwd=web.kit.hub.mission_path(mid)).stdout.decode().strip()

    for version in ("0", "2"):
        code, listing = web.git("dave", "-c", f"protocol.version={version}", "ls-remote",
                                web.remote(mid))
        refs = {line.split("\t")[1] for line in listing.splitlines() if "\t" in line}
        assert "refs/heads/attempts/dave" in refs and "refs/heads/main" in refs
        assert "refs/heads/attempts/bob" not in refs and secret not in listing
    rival = tmp_path / "dave"
    web.git("dave", "clone", "-q", web.remote(mid), str(rival))
    for version in ("0", "2"):
        code, text = web.git("dave", "-c", f"protocol.version={version}", "fetch", "origin",
                             "attempts/bob", cwd=rival, check=False)
        assert code != 0 and "couldn't find remote ref attempts/bob" in text
        code, text = web.git("dave", "-c", f"protocol.version={version}", "fetch", "origin",
                             secret, cwd=rival, check=False)
        assert code != 0, text
        assert run_git("cat-file", "-e", secret, cwd=rival, check=False).returncode != 0
    # a hand-made request past any client-side check: the server itself refuses the want
    url = f"{web.remote(mid)}/git-upload-pack"
    v0 = _pkt(f"want {secret} side-band-64k ofs-delta\n") + b"0000" + _pkt("done\n")
    v2 = (_pkt("command=fetch\n") + b"0001" + _pkt(f"want {secret}\n") + _pkt("done\n")
          + b"0000")
    for body, extra in ((v0, {}), (v2, {"Git-Protocol": "version=2"})):
        answer = httpx.post(url, content=body, headers={
            **basic("dave", web.token("dave")), **extra,
            "Content-Type": "application/x-git-upload-pack-request"})
        assert b"PACK" not in answer.content, answer.content[:200]
    # the same hand-made request from the client gets the pack: the refusal is the rule
    answer = httpx.post(url, content=v0, headers={
        **basic("alice", web.token("alice")),
        "Content-Type": "application/x-git-upload-pack-request"})
    assert b"PACK" in answer.content
    code, listing = web.git("alice", "ls-remote", web.remote(mid))
    assert f"{secret}\trefs/heads/attempts/bob" in listing


def test_a_push_over_one_mib_is_sent_chunked_and_judged(web: Web, tmp_path: Path) -> None:
    mid = web.kit.mission(("bob",)).doc.id
    work = tmp_path / "bob"
    web.git("bob", "clone", "-q", "--branch", "attempts/bob", web.remote(mid), str(work))
    (work / "deliverable").mkdir()
    (work / "deliverable" / "findings.json").write_bytes(findings())
    (work / "deliverable" / "blob.bin").write_bytes(os.urandom(3 << 19))  # 1.5 MiB, no deflate
    run_git("add", "-A", cwd=work)
    run_git(*_sign(web, "bob"), "commit", "-q", "-S", "-m", "Deliver", cwd=work)
    trace = tmp_path / "curl.trace"
    code, text = web.git("bob", "-c", "http.postBuffer=65536", "push", "origin", "attempts/bob",
                         cwd=work, check=False, env={"GIT_TRACE_CURL": str(trace),
                                                     "GIT_TRACE_CURL_NO_DATA": "1"})
    sent = trace.read_text(errors="replace")
    assert "Transfer-Encoding: chunked" in sent
    assert "remote: aismm:" in text  # the gate read the whole pack and answered
    head = run_git("rev-parse", "HEAD", cwd=work).stdout
    landed = run_git("rev-parse", "attempts/bob", cwd=web.kit.hub.mission_path(mid)).stdout
    assert (landed == head) == (code == 0), text


def test_protocol_v2_clone_and_push(web: Web, tmp_path: Path) -> None:
    mid = web.kit.mission(("bob",)).doc.id
    work = tmp_path / "bob"
    trace = tmp_path / "packet.trace"
    web.git("bob", "-c", "protocol.version=2", "clone", "-q", web.remote(mid), str(work),
            env={"GIT_TRACE_PACKET": str(trace)})
    assert "git< version 2" in trace.read_text()
    code, text = _deliver(web, work, "bob")
    assert code == 0 and "remote: aismm: platform DoD on bob: PASS (100/100)" in text


def test_pygit2_clone_and_push_with_credentials(web: Web, tmp_path: Path) -> None:
    mid = web.kit.mission(("bob",)).doc.id

    class Callbacks(pygit2.RemoteCallbacks):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(credentials=pygit2.UserPass("bob", web.token("bob")))
            self.refused: list[tuple[str, str | None]] = []

        def push_update_reference(self, refname: str, message: str | None) -> None:
            self.refused.append((refname, message))

    work = tmp_path / "bob"
    repo = pygit2.clone_repository(web.remote(mid), str(work), callbacks=Callbacks(),
                                   checkout_branch="attempts/bob")
    assert repo.head.shorthand == "attempts/bob"
    (work / "deliverable").mkdir()
    (work / "deliverable" / "findings.json").write_bytes(findings())
    run_git("add", "-A", cwd=work)
    run_git(*_sign(web, "bob"), "commit", "-q", "-S", "-m", "Deliver", cwd=work)
    head = run_git("rev-parse", "HEAD", cwd=work).stdout.decode().strip()
    callbacks = Callbacks()
    repo.remotes["origin"].push(["refs/heads/attempts/bob:refs/heads/attempts/bob"],
                                callbacks=callbacks)
    assert callbacks.refused == [("refs/heads/attempts/bob", None)]
    bare = web.kit.hub.mission_path(mid)  # landed, with the platform's verdict on top
    assert run_git("merge-base", "--is-ancestor", head, "attempts/bob", cwd=bare,
                   check=False).returncode == 0
    # and a refused push reports the gate's reason through libgit2
    repo.remotes["origin"].fetch(callbacks=Callbacks())
    run_git("reset", "-q", "--hard", "origin/attempts/bob", cwd=work)
    (work / "README.md").write_text("outside deliverable\n")
    run_git("add", "-A", cwd=work)
    run_git(*_sign(web, "bob"), "commit", "-q", "-S", "-m", "Outside", cwd=work)
    callbacks = Callbacks()
    repo.remotes["origin"].push(["refs/heads/attempts/bob:refs/heads/attempts/bob"],
                                callbacks=callbacks)
    [(ref, message)] = callbacks.refused
    assert ref == "refs/heads/attempts/bob" and message == "pre-receive hook declined"
    assert run_git("rev-parse", "attempts/bob", cwd=bare).stdout.decode().strip() == \
        run_git("rev-parse", "origin/attempts/bob", cwd=work).stdout.decode().strip()
