"""The checks of an unpacked export (or a fresh snapshot of a live hub), stage by stage.

``git`` (bundles unpack, refs, fsck), ``signatures`` (every commit and tag, stock git on the
tips), ``gate`` (the ref-state log replayed through the gate), ``ledger`` and ``reputation``;
:mod:`aismm.services.verify` runs them after the envelope and the inventory. A check raises
:class:`Failed` naming the object and what is wrong.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aismm import gate
from aismm.core.errors import AismmError, GateRejection, SignatureError
from aismm.core.model import load_yaml
from aismm.core.refs import ACCEPTED, MAIN, REFUNDED, SETTLED
from aismm.core.signing import verify as verify_signature
from aismm.infra import bundle
from aismm.infra.git import ZERO, Repo
from aismm.infra.hub import HubConfig
from aismm.infra.ledger import Ledger
from aismm.services import export

__all__ = ["Failed", "Stage", "StageRunner", "allowed_keys", "check_folder",
           "check_repo_signatures", "ndjson_rows", "unpacked"]

_MISSION_REPO = re.compile(r"missions/[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.git")


class Failed(Exception):
    """One stage found a problem: the object it concerns and what is wrong."""

    def __init__(self, obj: str, what: str) -> None:
        super().__init__(f"{obj}: {what}")
        self.obj, self.what = obj, what


@dataclass
class Stage:
    """One stage's outcome: ``ok``, ``failed`` or ``skipped``, what it counted, a failure."""

    id: str
    status: str = "skipped"
    counts: dict[str, int] = field(default_factory=dict)
    failure: dict[str, str] | None = None
    note: str = ""

    def line(self) -> str:
        if self.failure is not None:
            return f"{self.id}: FAILED {self.failure['object']}: {self.failure['what']}"
        counted = ", ".join(f"{n} {k}" for k, n in self.counts.items())
        text = f"{self.id}: {self.status}" + (f" ({counted})" if counted else "")
        return text + (f"; {self.note}" if self.note else "")


StageRunner = Callable[[str, Callable[[Stage], None]], None]


def check_folder(run: StageRunner, folder: Path, manifest: export.ExportManifest) -> None:
    """The stages after the inventory, on an unpacked (or freshly snapshotted) export:
    ``run(stage_id, check)`` runs each check in order."""
    repos: dict[str, Repo] = {}
    keys: list[tuple[str, str, dt.datetime | None]] = []
    run("git", lambda st: _stage_git(st, folder, manifest, repos))
    run("signatures", lambda st: _stage_signatures(st, folder, repos, keys))
    run("gate", lambda st: _stage_gate(st, folder, manifest, repos))
    run("ledger", lambda st: _stage_ledger(st, folder, manifest, repos, keys))
    run("reputation", lambda st: _stage_reputation(st, folder, manifest))


def unpacked(folder: Path, name: str) -> Path:
    """Where the git stage unpacks a repository of the export."""
    return folder / ".git" / name


def _stage_git(st: Stage, folder: Path, manifest: export.ExportManifest,
               repos: dict[str, Repo]) -> None:
    entries = manifest.repos
    if "registry.git" not in entries:
        raise Failed("registry.git", "missing from the export")

    def unpack(item: tuple[str, export.RepoEntry]) -> tuple[str, Repo]:
        name, entry = item
        if name != "registry.git" and not _MISSION_REPO.fullmatch(name):
            raise Failed(name, "not a repository name an AISMM hub has")
        path = folder / entry.bundle
        if entry.bundle != export.bundle_path(name) or not path.is_file():
            raise Failed(entry.bundle, "bundle missing")
        heads = bundle.heads(path)
        if heads != entry.refs:
            moved = sorted(set(heads.items()) ^ set(entry.refs.items()))
            raise Failed(name, f"bundle refs differ from the manifest (first: {moved[0][0]})")
        dest = unpacked(folder, name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            bundle.clone_bundle(path, dest)
        except AismmError as exc:
            raise Failed(entry.bundle, f"does not unpack ({exc})") from exc
        problems = bundle.fsck(dest)
        if problems:
            raise Failed(name, f"git fsck: {problems[0]}")
        repo = Repo(dest)
        if repo.refs() != entry.refs:
            raise Failed(name, "unpacked refs differ from the manifest")
        return name, repo

    # git does the work, one repository per core; the first failure in name order is told
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for name, repo in pool.map(unpack, sorted(entries.items())):
            repos[name] = repo
            st.counts["repos"] = len(repos)
            st.counts["refs"] = st.counts.get("refs", 0) + len(entries[name].refs)


_SIGNER_LINE = re.compile(r'^(\S+)\s+(\S+)\s+(ssh-ed25519\s+\S+)\s*$')


def allowed_keys(text: str) -> list[tuple[str, str, dt.datetime | None]]:
    """The (key line, principal, valid-before or None) entries of an allowed-signers file."""
    out = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        found = _SIGNER_LINE.match(line)
        if found is None:
            raise Failed("roster/allowed_signers", f"unreadable line {line[:60]!r}")
        who, options, key = found.groups()
        until = re.search(r'valid-before="(\d{14})Z"', options)
        out.append((" ".join(key.split()), who, dt.datetime.strptime(
            until.group(1), "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC) if until else None))
    return out


def _signer(keys: list[tuple[str, str, dt.datetime | None]], key: str, when: int) -> str | None:
    moment = dt.datetime.fromtimestamp(when, dt.UTC)
    return next((who for k, who, until in keys if k == key and (until is None or
                                                                moment < until)), None)


def _stage_signatures(st: Stage, folder: Path, repos: dict[str, Repo],
                      keys: list[tuple[str, str, dt.datetime | None]]) -> None:
    signers_file = folder / "roster/allowed_signers"
    keys += allowed_keys(signers_file.read_text())
    def one(item: tuple[str, Repo]) -> Stage:
        own = Stage(item[0])  # counted apart, added up in name order below
        check_repo_signatures(own, item[1], keys, signers_file.resolve(), item[0])
        return own

    # one repository per core (git and ssh-keygen do most of it); the first failure in name
    # order is the one told
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for done in pool.map(one, sorted(repos.items())):
            for what, n in done.counts.items():
                st.counts[what] = st.counts.get(what, 0) + n


def check_repo_signatures(st: Stage, repo: Repo, keys: list[tuple[str, str, dt.datetime | None]],
                          signers_file: Path, name: str) -> None:
    """Every commit and tag of one repository signed by a key valid at its time; stock git
    agrees on every ref tip."""
    found = bundle.objects(repo.path)
    for oid in found["commit"]:
        info = repo.commit(oid)
        _signed(name, "commit", oid, info.signature, info.payload, info.time, keys)
    for oid in found["tag"]:
        tag = repo.tag(oid)
        target_time = repo.commit(tag.target).time if repo.object_type(tag.target) == \
            "commit" else 0
        _signed(name, "tag", oid, tag.signature, tag.payload, target_time, keys)
    by_kind: dict[str, list[tuple[str, str]]] = {"commit": [], "tag": []}
    for ref, tip in sorted(repo.refs().items()):
        by_kind["tag" if ref.startswith("refs/tags/") else "commit"].append((ref, tip))
    for kind, tips in by_kind.items():
        if bundle.verify_signed(repo.path, kind, [tip for _ref, tip in tips], signers_file):
            st.counts["git-verified"] = st.counts.get("git-verified", 0) + len(tips)
            continue
        for ref, tip in tips:  # name the one stock git refuses
            if not bundle.verify_signed(repo.path, kind, [tip], signers_file):
                raise Failed(f"{name} {ref}", f"stock git verify-{kind} refuses {tip[:12]}")
    st.counts["commits"] = st.counts.get("commits", 0) + len(found["commit"])
    st.counts["tags"] = st.counts.get("tags", 0) + len(found["tag"])


def _signed(name: str, kind: str, oid: str, signature: bytes | None, payload: bytes | None,
            when: int, keys: list[tuple[str, str, dt.datetime | None]]) -> None:
    if signature is None or payload is None:
        raise Failed(f"{name} {kind} {oid[:12]}", "not signed")
    try:
        key = verify_signature(signature, payload)
    except SignatureError as exc:
        raise Failed(f"{name} {kind} {oid[:12]}", str(exc)) from exc
    if _signer(keys, key, when) is None:
        raise Failed(f"{name} {kind} {oid[:12]}", "signed by a key allowed_signers does not "
                     "hold valid at its time")


def ndjson_rows(path: Path) -> list[dict[str, Any]]:
    """The objects of an NDJSON file, one a line."""
    rows = []
    for n, line in enumerate(path.read_bytes().splitlines(), 1):
        row = json.loads(line)
        if not isinstance(row, dict):
            raise Failed(f"{path.name}:{n}", "not a JSON object")
        rows.append(row)
    return rows


def _stage_gate(st: Stage, folder: Path, manifest: export.ExportManifest, repos: dict[str, Repo]
                ) -> None:
    log = ndjson_rows(folder / "state/log.ndjson")
    config = HubConfig.model_validate(load_yaml((folder / "hub.yaml").read_text(), "hub.yaml"))
    closures = {c["mission"]: c for c in ndjson_rows(folder / "ledger/closures.ndjson")}
    # the replay runs on the unpacked repositories themselves: every ref is taken away and
    # the log puts them back one judged update at a time; a clean replay ends exactly where
    # the export's refs are (checked below), so they are left as they came
    replay: dict[str, Repo] = dict(repos)
    for repo in replay.values():
        for ref, oid in repo.refs().items():
            repo.delete_ref(ref, oid)
    registry = replay["registry.git"]
    batches: list[list[dict[str, Any]]] = []
    for event in log:
        if event["repo"] not in replay:
            raise Failed(f"log event {event['id']}", f"names {event['repo']!r}, which the "
                         "export lacks")
        last = batches[-1][-1] if batches else None
        if last is not None and (last["repo"], last["created"], last["pusher"]) == (
                event["repo"], event["created"], event["pusher"]) and \
                event["ref"] not in {e["ref"] for e in batches[-1]}:
            batches[-1].append(event)
        else:
            batches.append([event])
    seeded: set[tuple[str, str]] = set()
    for batch in batches:
        name, repo = batch[0]["repo"], replay[batch[0]["repo"]]
        when = dt.datetime.fromisoformat(batch[0]["created"].replace("Z", "+00:00"))
        for event in batch:  # a ref older than the log starts as the log first saw it
            if (name, event["ref"]) not in seeded:
                seeded.add((name, event["ref"]))
                if event["old"] != ZERO and repo.ref(event["ref"]) is None:
                    _seed(repo, name, event, config, when)

        def closure(mission: str, when: dt.datetime = when) -> str | None:
            c = closures.get(mission)
            at = dt.datetime.fromisoformat(c["at"].replace("Z", "+00:00")) if c else None
            return c["kind"] if c and at is not None and at <= when else None

        ctx = gate.Context(registry=registry, limits=config.limits, platform=config.platform,
                           now=when, closure=closure)
        updates = [(None if e["old"] == ZERO else e["old"], e["new"], e["ref"]) for e in batch]
        where = f"log event {batch[0]['id']} ({name} {batch[0]['ref']})"
        for old, _new, ref in updates:
            if repo.ref(ref) != old:
                raise Failed(where, f"{ref} was {(repo.ref(ref) or 'absent')[:12]} before this "
                             f"update, not {(old or 'absent')[:12]}: the log is not continuous")
        is_registry = name == "registry.git"
        creating = not is_registry and any(r == MAIN and o is None for o, _n, r in updates)
        try:
            gate.judge(ctx, repo, [(o, n, r) for o, n, r in updates if n != ZERO],
                       pusher=batch[0]["pusher"], creating=creating,
                       bootstrap=is_registry and updates[0][0] is None)
        except GateRejection as exc:
            first = exc.problems[0] if exc.problems else None
            raise Failed(where, f"the gate refuses it: {first}" if first else
                         "the gate refuses it") from exc
        for old, new, ref in updates:
            if new == ZERO:
                repo.delete_ref(ref, str(old))
            else:
                repo.update_ref(ref, new, old, "aismm verify: replay")
        st.counts["updates"] = st.counts.get("updates", 0) + len(updates)
    logged = {e["repo"] for e in log}
    for name, repo in sorted(replay.items()):
        exported = manifest.repos[name].refs
        if name not in logged and name == "registry.git" and MAIN in exported:
            # a registry the log never saw move: its whole chain is judged as a bootstrap
            _seed(repo, name, {"old": exported[MAIN], "ref": MAIN}, config,
                  dt.datetime.fromtimestamp(manifest.position.time, dt.UTC))
        elif name not in logged:
            raise Failed(name, "no update of it is in the ref-state log: the gate never "
                         "judged it")
        if repo.refs() != exported:
            diff = sorted(set(repo.refs().items()) ^ set(exported.items()))
            raise Failed(f"{name} {diff[0][0]}", "exported value is not the one the ref-state "
                         "log ends with (a move the gate never judged)")
    st.counts["repos"] = len(replay)


def _seed(repo: Repo, name: str, event: dict[str, Any], config: HubConfig, when: dt.datetime
          ) -> None:
    """Start a ref at the value the log first names; the registry's first value must be the
    root commit the gate allows as its bootstrap."""
    if name == "registry.git":
        ctx = gate.Context(registry=repo, limits=config.limits, platform=config.platform,
                           now=when)
        try:
            gate.judge(ctx, repo, [(None, event["old"], event["ref"])], bootstrap=True)
        except GateRejection as exc:
            raise Failed(f"{name} {event['old'][:12]}", f"not a root the gate allows "
                         f"({exc.problems[0] if exc.problems else 'refused'})") from exc
    repo.update_ref(event["ref"], event["old"], None, "aismm verify: as the log first saw it")


def _stage_ledger(st: Stage, folder: Path, manifest: export.ExportManifest,
                  repos: dict[str, Repo],
                  keys: list[tuple[str, str, dt.datetime | None]]) -> None:
    raw = (folder / "ledger/transfers.ndjson").read_bytes() + \
        (folder / "ledger/closures.ndjson").read_bytes()
    if hashlib.sha256(raw).hexdigest() != manifest.ledger.sha256:
        raise Failed("ledger", "rows do not hash to the manifest's ledger hash")
    transfers = ndjson_rows(folder / "ledger/transfers.ndjson")
    closures = ndjson_rows(folder / "ledger/closures.ndjson")
    db = folder / ".ledger.db"
    db.unlink(missing_ok=True)
    with Ledger(db) as ledger:
        try:
            ledger.restore(transfers, closures)
        except AismmError as exc:
            raise Failed("ledger", str(exc)) from exc
        problems = ledger.check()
        balances = ledger.balances()
    if problems:
        raise Failed("ledger", problems[0])
    if balances != manifest.ledger.balances:
        acct = sorted(set(balances.items()) ^ set(manifest.ledger.balances.items()))
        raise Failed(f"ledger {acct[0][0]}", "recomputed balance differs from the manifest's")
    platform = f"{manifest.platform}@aismm.invalid"
    for c in closures:
        name = f"missions/{c['mission']}.git"
        repo = repos.get(name)
        if repo is None:
            raise Failed(f"escrow:{c['mission']}", f"{c['kind']} but the mission is not in "
                         "the export")
        tag_ref = SETTLED if c["kind"] == "settled" else REFUNDED
        tag = repo.ref(tag_ref)
        if tag is None or repo.object_type(tag) != "tag":
            raise Failed(f"escrow:{c['mission']}", f"{c['kind']} without its {tag_ref} tag")
        info = repo.tag(tag)
        key = verify_signature(info.signature or b"", info.payload or b"")
        if not any(k == key and who == platform for k, who, _u in keys):
            raise Failed(f"{name} {tag_ref}", "not signed by the platform")
        if c["kind"] == "settled":
            merge = repo.ref(ACCEPTED)
            if merge is None or merge != c["cause"] or info.target != merge or \
                    len(repo.commit(merge).parents) != 2:
                raise Failed(f"escrow:{c['mission']}", "settled without the acceptance merge "
                             "it cites (refs/heads/accepted, the settled tag's target)")
    st.counts.update(transfers=len(transfers), closures=len(closures), accounts=len(balances))


def _stage_reputation(st: Stage, folder: Path, manifest: export.ExportManifest) -> None:
    execs = ndjson_rows(folder / "state/executions.ndjson")
    when = dt.datetime.fromtimestamp(manifest.position.time, dt.UTC)
    mine = json.loads(export.canonical(export.reputation_json(export.reputations(execs, when))))
    theirs = json.loads((folder / "roster/reputation.json").read_bytes())
    if mine != theirs:
        agent = sorted(set(mine) ^ set(theirs)) or sorted(a for a in mine if mine[a] !=
                                                         theirs.get(a))
        raise Failed(f"reputation {agent[0] if agent else '?'}", "recomputed from the "
                     "execution records, it differs from the exported figure")
    st.counts.update(executions=len(execs), agents=len(mine))
