"""``aismm verify``: the hostile corpus, each copy failing at its named stage with exit 1.

One export of the source hub (tests/test_export.py) is made per module; every case changes a
copy. Cases past the envelope are re-signed with the platform's own key (an attacker who holds
it), so each deeper stage is shown to stand on its own.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aismm.core.clock import iso
from aismm.core.model import dump_yaml
from aismm.core.refs import ACCEPTED, ATTEMPT, MAIN
from aismm.core.signing import PrivateKey, generate_key
from aismm.infra import bundle
from aismm.infra.git import Repo
from aismm.services import export
from aismm.state.registry import identity
from tests.hubkit import copy_hub
from tests.settlekit import AGENT, Site
from tests.test_export import build_source, cli, rebuild

Mutation = Callable[[Path, dict[str, Any]], None]


@pytest.fixture(scope="module")
def source(settle_template: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> tuple[Site, dict[str, str]]:
    return build_source(settle_template, tmp_path_factory.mktemp("verify-src") / "src")


@pytest.fixture(scope="module")
def archive(source: tuple[Site, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
            ) -> Path:
    dest = tmp_path_factory.mktemp("verify-archive") / "hub.tar.gz"
    export.export_hub(source[0].hub, dest)
    return dest


def _rewrite_repo(folder: Path, manifest: dict[str, Any], name: str,
                  change: Callable[[Repo], None]) -> None:
    """Unpack one bundle, let ``change`` move its refs, bundle it again, record the refs."""
    work = folder.parent / f"{folder.name}-{name.replace('/', '_')}"
    target = folder / export.bundle_path(name)
    bundle.clone_bundle(target, work)
    repo = Repo(work)
    change(repo)
    target.unlink()
    bundle.create(work, target)
    manifest["repos"][name]["refs"] = repo.refs()


def _flip_byte(mid: str) -> Mutation:
    def mutate(folder: Path, manifest: dict[str, Any]) -> None:
        path = folder / f"repos/missions/{mid}.bundle"
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
    return mutate


def _grow(rel: str) -> Mutation:
    def mutate(folder: Path, manifest: dict[str, Any]) -> None:
        with (folder / rel).open("ab") as out:
            out.write(b"\0" * 4096)  # more than the manifest declares: refused before unpacking
    return mutate


def _remove(rel: str) -> Mutation:
    return lambda folder, manifest: (folder / rel).unlink()


def _add(rel: str) -> Mutation:
    return lambda folder, manifest: (folder / rel).write_text("hello\n")


def _move_ref(mid: str) -> Mutation:
    def mutate(folder: Path, manifest: dict[str, Any]) -> None:
        refs = dict(manifest["repos"][f"missions/{mid}.git"]["refs"])
        _rewrite_repo(folder, manifest, f"missions/{mid}.git",
                      lambda repo: repo.update_ref(ACCEPTED, repo.ref(MAIN) or "",
                                                   repo.ref(ACCEPTED)))
        manifest["repos"][f"missions/{mid}.git"]["refs"] = refs  # the manifest keeps its word
    return mutate


def _resign(mid: str) -> Mutation:
    def change(repo: Repo) -> None:
        tip = repo.ref(f"{ATTEMPT}{AGENT}") or ""
        info = repo.commit(tip)
        forged = repo.write_commit(tree=info.tree, parents=list(info.parents),
                                   message=info.message, key=generate_key(),
                                   who=identity(AGENT), when=_when(info.time))
        repo.update_ref(f"{ATTEMPT}{AGENT}", forged, tip)

    return lambda folder, manifest: _rewrite_repo(folder, manifest, f"missions/{mid}.git",
                                                  change)


def _when(epoch: int) -> Any:
    import datetime as dt
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


def _stale_verdict(site: Site, mid: str) -> Mutation:
    reviewer = "ref-reviewer"

    def mutate(folder: Path, manifest: dict[str, Any]) -> None:
        moved: dict[str, str] = {}

        def change(repo: Repo) -> None:
            tip = repo.ref(f"{ATTEMPT}{AGENT}") or ""
            stale = repo.tree_of(repo.ref(MAIN) or "")  # not the deliverable under review
            doc = {"schema_version": 1, "mission": mid, "reviewer": reviewer,
                   "deliverable_tree": stale, "verdict": "pass", "score": 99,
                   "rubric": {"correctness": 99, "coverage": 99, "actionability": 99},
                   "checks": [], "comments": ""}
            tree = repo.build_tree(repo.tree_of(tip), {
                f"verdicts/{reviewer}.yaml": dump_yaml(doc).encode()})
            forged = repo.write_commit(tree=tree, parents=[tip], message="Verdict\n",
                                       key=site.hub.hosted_key(reviewer),
                                       who=identity(reviewer), when=site.clock.now())
            repo.update_ref(f"{ATTEMPT}{AGENT}", forged, tip)
            moved.update(old=tip, new=forged)

        _rewrite_repo(folder, manifest, f"missions/{mid}.git", change)
        log = folder / "state/log.ndjson"
        rows = [json.loads(line) for line in log.read_text().splitlines()]
        rows.append({"id": rows[-1]["id"] + 1, "repo": f"missions/{mid}.git",
                     "ref": f"{ATTEMPT}{AGENT}", "old": moved["old"], "new": moved["new"],
                     "pusher": reviewer, "created": iso(site.clock.now())})
        log.write_bytes(export.ndjson(rows))
    return mutate


def _ledger_rows(change: Callable[[list[dict[str, Any]], list[dict[str, Any]]], None],
                 rehash: bool) -> Mutation:
    def mutate(folder: Path, manifest: dict[str, Any]) -> None:
        paths = [folder / "ledger/transfers.ndjson", folder / "ledger/closures.ndjson"]
        transfers, closures = ([json.loads(line) for line in p.read_text().splitlines()]
                               for p in paths)
        change(transfers, closures)
        paths[0].write_bytes(export.ndjson(transfers))
        paths[1].write_bytes(export.ndjson(closures))
        if rehash:
            manifest["ledger"]["sha256"] = hashlib.sha256(
                paths[0].read_bytes() + paths[1].read_bytes()).hexdigest()
    return mutate


def _bump_first_amount(transfers: list[dict[str, Any]], closures: list[dict[str, Any]]
                       ) -> None:
    transfers[0]["amount"] += 1


def _shave_settlement(transfers: list[dict[str, Any]], closures: list[dict[str, Any]]
                      ) -> None:
    leg = next(t for t in transfers if t["action"] == "settle" and
               t["credit"].startswith("provider:"))
    leg["amount"] -= 1


def _cite_main(main: str) -> Callable[[list[dict[str, Any]], list[dict[str, Any]]], None]:
    def change(transfers: list[dict[str, Any]], closures: list[dict[str, Any]]) -> None:
        closure = next(c for c in closures if c["kind"] == "settled")
        closure["cause"] = main
    return change


def _newer_format(folder: Path, manifest: dict[str, Any]) -> None:
    manifest["format"] = export.FORMAT + 1


def _nothing(folder: Path, manifest: dict[str, Any]) -> None:
    pass


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tuple[
        tuple[tarfile.TarInfo, bytes], ...]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, 0 if kind != tarfile.REGTYPE else 3
    return ((info, b"hi\n"),)


CASES = ["flipped-byte", "grown-file", "missing-file", "extra-file", "symlink", "dotdot", "moved-ref",
         "resigned-commit", "stale-verdict", "altered-row", "unbalanced", "no-merge",
         "wrong-key", "newer-format"]


def _case(name: str, site: Site, missions: dict[str, str]
          ) -> tuple[PrivateKey | None, Mutation, tuple[tuple[tarfile.TarInfo, bytes], ...],
                     str, str]:
    """(signing key, mutation, extra members, the stage that fails, text of the failure)."""
    platform = site.hub.hosted_key(site.hub.config.platform)
    settled, open_ = missions["settled"], missions["open"]
    main = site.refs(settled)[MAIN]
    return {
        "flipped-byte": (None, _flip_byte(settled), (), "inventory", "sha256 differs"),
        "grown-file": (None, _grow("ledger/transfers.ndjson"), (), "inventory",
                       "ledger/transfers.ndjson: size differs from the manifest"),
        "missing-file": (None, _remove("ledger/closures.ndjson"), (), "inventory",
                         "ledger/closures.ndjson: listed in the manifest but missing"),
        "extra-file": (None, _add("notes.txt"), (), "inventory",
                       "notes.txt: extra file the manifest does not list"),
        "symlink": (None, _nothing, _member("evil", tarfile.SYMTYPE, "/etc/passwd"),
                    "inventory", "evil: not a regular file"),
        "dotdot": (None, _nothing, _member("../escape.txt"), "inventory",
                   "../escape.txt: unsafe entry name"),
        "moved-ref": (platform, _move_ref(settled), (), "git",
                      "bundle refs differ from the manifest"),
        "resigned-commit": (platform, _resign(open_), (), "signatures",
                            "signed by a key allowed_signers does not hold valid"),
        "stale-verdict": (platform, _stale_verdict(site, open_), (), "gate",
                          "the gate refuses it"),
        "altered-row": (platform, _ledger_rows(_bump_first_amount, rehash=False), (), "ledger",
                        "rows do not hash to the manifest's ledger hash"),
        "unbalanced": (platform, _ledger_rows(_shave_settlement, rehash=True), (), "ledger",
                       f"escrow:{settled}: settled but still holds 1"),
        "no-merge": (platform, _ledger_rows(_cite_main(main), rehash=True), (), "ledger",
                     "settled without the acceptance merge"),
        "wrong-key": (generate_key(), _nothing, (), "envelope",
                      "no valid signature by the platform key"),
        "newer-format": (platform, _newer_format, (), "envelope",
                         f"format {export.FORMAT + 1} is newer than this aismm reads"),
    }[name]


def test_an_untouched_export_passes_every_stage(archive: Path) -> None:
    done = cli("verify", str(archive), "--json")
    assert done.returncode == 0, done.stderr + done.stdout
    report = json.loads(done.stdout)
    assert [(s["id"], s["status"]) for s in report["stages"]] == [
        (stage, "ok") for stage in ("envelope", "inventory", "git", "signatures", "gate",
                                    "ledger", "reputation")]
    assert report["first_failure"] is None
    counts = {s["id"]: s["counts"] for s in report["stages"]}
    assert counts["git"]["repos"] == 4 and counts["signatures"]["tags"] == 2
    assert counts["ledger"]["closures"] == 2 and counts["gate"]["updates"] > 30


@pytest.mark.parametrize("case", CASES)
def test_a_hostile_copy_fails_at_its_stage(source: tuple[Site, dict[str, str]], archive: Path,
                                           tmp_path: Path, case: str) -> None:
    key, mutate, extra, stage, text = _case(case, *source)
    bad = rebuild(archive, tmp_path / "bad.tar.gz", key, mutate, extra)
    done = cli("verify", str(bad))
    assert done.returncode == 1, done.stdout + done.stderr
    failed = [line for line in done.stdout.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and failed[0].startswith(f"{stage}: FAILED "), done.stdout
    assert text in failed[0], failed[0]
    assert done.stderr.splitlines() == [f"aismm: verify: {failed[0].replace(': FAILED', ':', 1)}"
                                        "; do not trust this copy"]
    later = done.stdout.splitlines()[done.stdout.splitlines().index(failed[0]) + 1:]
    assert all(line.endswith("not run: an earlier stage failed") for line in later)


def test_pinning_the_platform_key_refuses_a_self_consistent_forgery(
        source: tuple[Site, dict[str, str]], archive: Path, tmp_path: Path) -> None:
    """A forger who replaces allowed_signers with its own key passes the self-check but not
    ``--trust-key`` with the real platform key."""
    site, _ = source
    mine = generate_key()

    def swap(folder: Path, manifest: dict[str, Any]) -> None:
        path = folder / "roster/allowed_signers"
        real = site.hub.hosted_key("platform").public_line
        path.write_text(path.read_text().replace(real, mine.public_line))
        manifest["platform_key"] = mine.public_line

    bad = rebuild(archive, tmp_path / "bad.tar.gz", mine, swap)
    pub = tmp_path / "platform.pub"
    pub.write_text(site.hub.hosted_key("platform").public_line + "\n")
    done = cli("verify", str(bad), "--trust-key", str(pub))
    assert done.returncode == 1
    assert done.stdout.splitlines()[0].startswith("envelope: FAILED manifest.dsse.json: ")
    assert cli("verify", str(archive), "--trust-key", str(pub)).returncode == 0


def test_a_live_hub_and_a_mission_clone_verify(source: tuple[Site, dict[str, str]],
                                               tmp_path: Path) -> None:
    site, missions = source
    before = {mid: site.refs(mid) for mid in missions.values()}
    done = cli("verify", str(site.root))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[0] == "envelope: skipped; a live hub has no envelope"
    assert {mid: site.refs(mid) for mid in missions.values()} == before  # no side effects
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--mirror",
                    str(site.hub.mission_path(missions["settled"])), str(clone)], check=True)
    done = cli("verify", str(clone), "--allowed-signers", str(site.hub.allowed_signers_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "signatures: ok" in done.stdout and "gate: skipped" in done.stdout


def test_bad_input_is_exit_2(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not an archive")
    done = cli("verify", str(junk))
    assert done.returncode == 2
    assert done.stderr.startswith(f"aismm: {junk}: not a gzip'd tar archive (")
    assert len(done.stderr.splitlines()) == 1
    done = cli("verify", str(tmp_path / "missing"))
    assert (done.returncode, done.stderr.splitlines()) == (2, [
        f"aismm: {tmp_path / 'missing'}: no such file or folder; pass an export archive, a hub "
        "folder or a mission clone"])


def test_a_move_that_skipped_the_gate_fails_a_live_hub_and_is_put_back_by_export(
        source: tuple[Site, dict[str, str]], tmp_path: Path) -> None:
    site = Site(copy_hub(source[0].root, tmp_path / "hub", clock=source[0].clock),
                source[0].clock)
    mid = source[1]["open"]
    ref = f"{ATTEMPT}{AGENT}"
    logged = site.refs(mid)[ref]
    site.git(mid, "update-ref", ref, site.refs(mid)[MAIN])  # no hook, no log
    done = cli("verify", str(site.root))
    assert done.returncode == 1
    failed = [line for line in done.stdout.splitlines() if "FAILED" in line]
    # the logged tip is no longer reachable, so the copy lacks it: the replay stops there
    assert len(failed) == 1 and failed[0].startswith("gate: FAILED log event "), done.stdout
    assert f"(missions/{mid}.git {ref}): the gate refuses it: aismm: {ref}: ref: new value" \
        in failed[0] and "is not an object in this repository" in failed[0]
    assert site.refs(mid)[ref] == site.refs(mid)[MAIN]  # verify changed nothing
    exported = cli("export", str(tmp_path / "e.tar.gz"), hub=site.root)
    assert exported.returncode == 0, exported.stderr
    assert site.refs(mid)[ref] == logged  # judged and put back before the snapshot
    assert cli("verify", str(tmp_path / "e.tar.gz")).returncode == 0


def test_the_json_report_names_the_first_failure(source: tuple[Site, dict[str, str]],
                                                 archive: Path, tmp_path: Path) -> None:
    key, mutate, extra, _stage, _text = _case("altered-row", *source)
    bad = rebuild(archive, tmp_path / "bad.tar.gz", key, mutate, extra)
    done = cli("verify", str(bad), "--json")
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["ok"] is False
    assert report["first_failure"] == {
        "stage": "ledger", "object": "ledger",
        "what": "rows do not hash to the manifest's ledger hash"}
    assert [s["status"] for s in report["stages"]] == [
        "ok", "ok", "ok", "ok", "ok", "failed", "skipped"]
    assert report["hub_id"] == _manifest_of(archive)["hub_id"]


def _manifest_of(path: Path) -> dict[str, Any]:
    with tarfile.open(path, "r:gz") as tar:
        handle = tar.extractfile(export.MANIFEST)
        assert handle is not None
        data: dict[str, Any] = json.loads(handle.read())
    return data
