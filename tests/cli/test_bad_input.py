"""Bad input gets one line and changes nothing (issue 11, item 19).

``aismm: <where>: <what>; <fix>`` on stderr, exit 2 (1 for a rejection), no traceback, no
half-written state, no dangling objects. Every case runs the CLI in-process (tests/clikit.py)
against a real hub (tests/hubkit.py) and checks what is on disk afterwards.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aismm.core.errors import GateRejection
from aismm.infra.git import Repo
from aismm.infra.ledger import Ledger
from aismm.services import registrar
from tests import clikit
from tests.clikit import Result
from tests.hubkit import CONTRACT, INPUTS, START, Kit, findings, kit_fixture, repo_state, run_git

USAGE = re.compile(r"^aismm: [^;]+: [^;]+; see aismm( [a-z]+)* --help$")


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kit]:
    yield from kit_fixture(tmp_path_factory)


@pytest.fixture()
def cli(kit: Kit, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
        ) -> Callable[..., Result]:
    monkeypatch.setenv("AISMM_NOW", START)

    def run(*args: str) -> Result:
        return clikit.run(kit.hub.root, capsys, *args)

    return run


def one_line(result: Result, code: int, line: str | None = None) -> str:
    """Exactly one ``aismm:`` line on stderr (equal to ``line`` when given), nothing on stdout."""
    assert result.code == code, (result.code, result.out, result.err)
    assert result.out == "", result.out
    assert len(result.err_lines) == 1, result.err_lines
    got = result.err_lines[0]
    assert got.startswith("aismm: ") and "; " in got and "Traceback" not in result.err, got
    if line is not None:
        assert got == line
    return got


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def hub_state(kit: Kit) -> tuple[object, ...]:
    """Everything a command could change: every repository, the hub's files and the ledger."""
    repos = [kit.hub.registry_path, *sorted(kit.hub.missions_dir.glob("*.git"))]
    with Ledger(kit.hub.db_path, kit.hub.clock) as ledger:
        money = (ledger.balances(), len(ledger.history()))
    return ([repo_state(r) for r in repos], listing(kit.hub.missions_dir),
            listing(kit.hub.keys_dir), money)


def dangling(bare: Path) -> str:
    return run_git("fsck", "--dangling", "--no-reflogs", "--no-progress", cwd=bare,
                   check=False).stdout.decode()


# -- 1. exit 3 before, one line and exit 2 now -------------------------------------------------
def test_hub_init_under_a_file(cli: Callable[..., Result], tmp_path: Path) -> None:
    (tmp_path / "FILE").write_text("not a folder\n")
    before = listing(tmp_path)
    for target, line in (
            (tmp_path / "FILE" / "sub", f"aismm: {tmp_path / 'FILE' / 'sub'}: "
             f"{tmp_path / 'FILE'} is a file, not a folder; pick a DIR under a folder"),
            (tmp_path / "FILE" / "a" / "b", None),
            (tmp_path / "FILE", f"aismm: {tmp_path / 'FILE'}: not a folder; pick a new or "
             "empty DIR")):
        one_line(cli("hub", "init", str(target)), 2, line)
        assert listing(tmp_path) == before


def test_actor_add_with_a_non_utf8_key_file(cli: Callable[..., Result], kit: Kit, tmp_path: Path) -> None:
    key = tmp_path / "X.pub"
    key.write_bytes(b"ssh-ed25519 \xff\xfe\x00AAAA x\n")
    before = hub_state(kit)
    one_line(cli("actor", "add", "X", "--role", "client", "--pubkey", str(key)), 2,
             f"aismm: --pubkey {key}: not UTF-8 text (byte 12); pass a text file")
    assert hub_state(kit) == before


@pytest.mark.parametrize("deadline", ["P99999999D", "P36526D", "PT99999999999999999999S",
                                      "P" + "9" * 40 + "D"])
def test_mission_create_with_a_deadline_past_any_date(cli: Callable[..., Result], kit: Kit,
                                                      deadline: str) -> None:
    before = hub_state(kit)
    line = one_line(cli("mission", "create", "--contract", CONTRACT, "--client", "alice",
                        "--tier", "T0", "--inputs", str(INPUTS), "--price", "100",
                        "--agent", "bob", "--deadline", deadline), 2)
    assert line == (f"aismm: --deadline {deadline}: '{deadline}' is longer than P36525D "
                    "(100 years); give a shorter duration")
    assert hub_state(kit) == before


def test_mission_create_with_a_deadline_past_the_year_9999(
        cli: Callable[..., Result], kit: Kit, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AISMM_NOW", "9990-01-01T00:00:00Z")
    before = hub_state(kit)
    one_line(cli("mission", "create", "--contract", CONTRACT, "--client", "alice", "--tier",
                 "T0", "--inputs", str(INPUTS), "--price", "100", "--agent", "bob",
                 "--deadline", "P36000D"), 2,
             "aismm: --deadline P36000D: ends after the year 9999; give a shorter duration")
    assert hub_state(kit) == before


@pytest.fixture(scope="module")
def delivered(kit: Kit) -> str:
    """A T1 mission whose attempt holds a delivery nobody has checked or reviewed yet."""
    created = kit.mission(("bob",), tier="T1")
    clone = kit.clone(created, "attempts/bob")
    clone.deliver(kit.key("bob"))
    clone.land("attempts/bob")
    return created.doc.id


@pytest.mark.parametrize("action", ["rework", "escalate"])
@pytest.mark.parametrize("reason,line", [
    ("", "aismm: --reason: empty; say in a sentence what is wrong with the delivery"),
    ("   \n", "aismm: --reason: empty; say in a sentence what is wrong with the delivery"),
    ("x" * 4001, "aismm: --reason: 4001 characters exceed the limit of 4000; shorten it"),
])
def test_request_with_an_empty_or_overlong_reason(cli: Callable[..., Result], kit: Kit, delivered: str,
                                                   action: str, reason: str, line: str) -> None:
    before = hub_state(kit)
    one_line(cli("mission", action, delivered, "--attempt", "bob", "--reason", reason), 2,
             line)
    assert hub_state(kit) == before


def test_schema_export_under_a_file(cli: Callable[..., Result], tmp_path: Path) -> None:
    (tmp_path / "FILE").write_text("x\n")
    before = listing(tmp_path)
    one_line(cli("schema", "export", str(tmp_path / "FILE" / "sub")), 2,
             f"aismm: {tmp_path / 'FILE' / 'sub'}: is under {tmp_path / 'FILE'}, a file, not "
             "a folder; pass a folder to write into")
    line = one_line(cli("schema", "export", str(tmp_path / "FILE")), 2)
    assert USAGE.match(line), line
    assert listing(tmp_path) == before
    done = cli("schema", "export", str(tmp_path / "out"))
    assert done.code == 0 and len(done.out.splitlines()) == len(listing(tmp_path / "out")) == 9


# -- 2. click's usage errors: the same shape, with a fix ----------------------------------------
@pytest.mark.parametrize("args,line", [
    (("mission", "create"),
     "aismm: mission create: missing option --contract; see aismm mission create --help"),
    (("mission", "create", "--contract", "x", "--bogus"),
     "aismm: mission create: no such option --bogus; see aismm mission create --help"),
    (("mission", "create", "--tier", "T7"),
     "aismm: mission create: invalid value for --tier: T7 is not one of T0, T1, T2; see aismm "
     "mission create --help"),
    (("mission", "create", "--tier"),
     "aismm: mission create: option --tier requires an argument; see aismm mission create "
     "--help"),
    (("mission", "status"),
     "aismm: mission status: missing argument MISSION_ID; see aismm mission status --help"),
    (("mission", "status", "a", "b"),
     "aismm: mission status: got unexpected extra argument (b); see aismm mission status "
     "--help"),
    (("mission", "frobnicate"),
     "aismm: mission: no such command 'frobnicate'; see aismm mission --help"),
    (("frobnicate",), "aismm: usage: no such command 'frobnicate'; see aismm --help"),
    (("--bogus", "actor", "list"), "aismm: usage: no such option --bogus; see aismm --help"),
    (("actor", "add", "x", "--role", "king"), None),
    (("wallet", "deposit", "alice", "lots"),
     "aismm: wallet deposit: invalid value for AMOUNT: 'lots' is not a valid integer; see "
     "aismm wallet deposit --help"),
    (("mission",), "aismm: mission: missing command (one of accept, cancel, create, escalate, "
     "list, rework, run, show, status, tree); see aismm mission --help"),
    (("mission", "accept", "m", "--attempt", "bob", "--key", "/no/such/key"), None),
])
def test_usage_errors_are_one_line_with_a_fix(cli: Callable[..., Result], kit: Kit, args: tuple[str, ...],
                                              line: str | None) -> None:
    before = hub_state(kit)
    got = one_line(cli(*args), 2, line)
    assert USAGE.match(got), got
    assert hub_state(kit) == before


def test_help_and_version_still_exit_0(cli: Callable[..., Result]) -> None:
    for args in (("--help",), ("mission", "create", "--help"), ("--version",)):
        done = cli(*args)
        assert (done.code, done.err) == (0, "") and done.out, args


# -- 3. filters naming nothing that exists ----------------------------------------------------
@pytest.mark.parametrize("args,line", [
    (("agent", "list", "--contract", "contract.NOPE@x"),
     "aismm: --contract contract.NOPE@x: no such published contract; use one of "
     "contract.code_review@1.0.0, contract.module_quality@1.0.0, contract.schema_design@1.0.0, "
     "contract.unit_tests@1.0.0 (the version is optional)"),
    (("agent", "list", "--contract", "contract.nope"), None),
    (("agent", "list", "--contract", "contract.code_review@9.9.9"), None),
    (("agent", "rank", "--contract", "not a ref"),
     "aismm: --contract not a ref: no such published contract; use one of "
     "contract.code_review@1.0.0, contract.module_quality@1.0.0, contract.schema_design@1.0.0, "
     "contract.unit_tests@1.0.0 (the version is optional)"),
    (("agent", "list", "--role", "king"),
     "aismm: --role king: not a role; use one of client, specialist, reviewer, orchestrator, "
     "arbiter, platform"),
    (("mission", "list", "--state", "bogus"),
     "aismm: --state bogus: not a mission state; use one of assigned, in_review, failed, "
     "rework, awaiting_acceptance, escalated, accepted, settled, refunded, expired"),
    (("mission", "list", "--agent", "nobody"),
     "aismm: nobody: unknown actor; register it with `aismm actor add`"),
])
def test_unknown_filter_values_are_bad_input(cli: Callable[..., Result], args: tuple[str, ...],
                                             line: str | None) -> None:
    got = one_line(cli(*args, "--json"), 2, line)
    assert "use one of" in got or "unknown actor" in got


def test_known_filter_values_still_answer_in_json(cli: Callable[..., Result], delivered: str) -> None:
    for args in (("agent", "list", "--contract", CONTRACT, "--role", "specialist"),
                 ("agent", "list", "--contract", f"{CONTRACT}@1.0.0"),
                 ("agent", "rank", "--contract", CONTRACT),
                 ("mission", "list", "--state", "in_review"),
                 ("mission", "list", "--state", "settled", "--agent", "bob")):
        done = cli(*args, "--json")
        assert done.code == 0, (args, done.err)
        assert isinstance(json.loads(done.out), list), args
    bobs = cli("mission", "list", "--agent", "bob", "--json").json
    assert delivered in {row["id"] for row in bobs}


# -- 4. serve --interval ---------------------------------------------------------------------
@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf", "-inf", "1e300", "86401"])
def test_serve_interval_must_be_a_positive_finite_number(cli: Callable[..., Result], kit: Kit,
                                                         value: str) -> None:
    before = listing(kit.hub.run_dir)
    got = one_line(cli("serve", "--once", "--interval", value), 2)
    assert got.startswith("aismm: --interval ") and got.endswith(
        ": not a positive number of seconds up to 86400 (a day); give one like 5 or 0.5"), got
    assert listing(kit.hub.run_dir) == before  # no socket, no lock: the server never started


# -- 5. a refused write leaves no object behind -------------------------------------------------
def test_a_refused_accept_leaves_no_dangling_commit(cli: Callable[..., Result], kit: Kit,
                                                    delivered: str) -> None:
    bare = kit.hub.mission_path(delivered)
    before, fsck_before = hub_state(kit), dangling(bare)
    refused = cli("mission", "accept", delivered, "--attempt", "bob")
    assert refused.code == 1, (refused.out, refused.err)
    assert refused.err_lines and all(x.startswith("aismm: refs/heads/accepted: ")
                                     for x in refused.err_lines), refused.err
    assert hub_state(kit) == before  # refs, `git count-objects -v`, files, ledger
    assert dangling(bare) == fsck_before
    assert not list((bare / "objects").glob("tmp_objdir-*"))  # the quarantine is gone too


def test_a_refused_registry_write_leaves_no_object(kit: Kit) -> None:
    bare = kit.hub.registry_path
    before, fsck_before = repo_state(bare), dangling(bare)
    with pytest.raises(GateRejection):  # alice may not write the registry
        registrar.commit_files(kit.hub, {"actors/mallory.yaml": b"id: mallory\n"},
                              "Add mallory\n", "alice")
    assert repo_state(bare) == before and dangling(bare) == fsck_before


def test_the_quarantine_keeps_what_the_block_wrote_only_when_it_ends_cleanly(
        tmp_path: Path, kit: Kit) -> None:
    bare = tmp_path / "r.git"
    run_git("init", "-q", "--bare", str(bare))
    repo = Repo(bare)
    empty = repo_state(bare)
    with pytest.raises(RuntimeError), repo.quarantine():
        blob = repo.write_blob(b"refused\n")
        assert repo.exists(blob)  # readable inside the block (the gate judges it there)
        raise RuntimeError("refused")
    assert not repo.exists(blob) and repo_state(bare) == empty
    with repo.quarantine():
        kept = repo.write_blob(b"kept\n")
        again = repo.write_blob(b"kept\n")
    assert kept == again and repo.exists(kept)
    assert repo_state(bare).objects["count"] == "1"
    with repo.quarantine():  # an object the store has is not written again
        assert repo.write_blob(b"kept\n") == kept
    assert repo_state(bare).objects["count"] == "1"
    assert not list((bare / "objects").glob("tmp_objdir-*"))


# -- and the commands touched here still answer in JSON on success ------------------------------
def test_touched_commands_still_print_json(cli: Callable[..., Result], kit: Kit,
                                          tmp_path: Path) -> None:
    made = cli("hub", "init", str(tmp_path / "a" / "hub"), "--json")
    assert made.code == 0, made.err
    assert made.json["hub"] == str(tmp_path / "a" / "hub")
    key = kit.external["stranger"].with_suffix(".pub")
    added = cli("actor", "add", "newcomer", "--role", "client", "--pubkey", str(key), "--json")
    assert added.code == 0, added.err
    assert added.json["id"] == "newcomer" and added.json["hosted"] is False
    created = kit.mission(("bob",), tier="T1")
    clone = kit.clone(created, "attempts/bob")
    clone.deliver(kit.key("bob"), data=findings(1))
    clone.land("attempts/bob")
    asked = cli("mission", "rework", created.doc.id, "--attempt", "bob", "--reason",
                "x" * 4000, "--json")
    assert asked.code == 0, asked.err
    assert asked.json["action"] == "rework" and asked.json["lines"][0].startswith(
        "aismm: alice filed requests/001-rework.yaml on attempts/bob")
    assert not list((created.path / "objects").glob("tmp_objdir-*"))
    assert dangling(created.path) == ""
