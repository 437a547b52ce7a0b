"""aismm.infra.loose against aismm.infra.git.Repo (pygit2), the reference: on the same objects
every answer is the same, and whatever is not plain enough is Unsure, never a different answer.

The repository is built with the real ``git`` binary: odd names (non-UTF-8, spaces, dots),
executables, symbolic links, gitlinks, files that become folders and back, deletions, deep
nesting, a signed history and a merge.
"""

from __future__ import annotations

import os
import shutil
import zlib
from pathlib import Path

import pytest

from aismm.infra.git import Repo
from aismm.infra.loose import Loose, Unsure, count_paths
from tests import hubkit
from tests.hubkit import run_git

ENV = {**hubkit.GIT_ENV, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
       "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}


def git(*args: str | bytes, cwd: Path, input: bytes | None = None) -> str:
    return run_git(*args, cwd=cwd, env=ENV, input=input).stdout.decode().strip()


def mktree(repo: Path, entries: list[tuple[str, bytes, str]]) -> str:
    """A tree of ``(mode, name, object id)`` entries (git mktree sorts them)."""
    kinds = {"040000": "tree", "160000": "commit"}
    data = b"".join(f"{mode} {kinds.get(mode, 'blob')} {oid}\t".encode() + name + b"\0"
                    for mode, name, oid in entries)
    return git("mktree", "-z", "--missing", cwd=repo, input=data)


def blob(repo: Path, data: bytes) -> str:
    return git("hash-object", "-w", "--stdin", cwd=repo, input=data)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], Path]:
    """A bare repository with a linear signed history of varied trees; (path, commits, key)."""
    root = tmp_path_factory.mktemp("loose")
    bare = root / "r.git"
    run_git("init", "-q", "--bare", str(bare), cwd=root, env=ENV)
    key = hubkit.ssh_keygen(root / "key" / "id_ed25519")
    a, b, c = (blob(bare, x) for x in (b"a\n", b"b\n", b"#!/bin/sh\n"))
    deep = mktree(bare, [("100644", b"leaf.txt", a)])
    for level in range(6):
        deep = mktree(bare, [("040000", f"d{level}".encode(), deep), ("100644", b"f", b)])
    trees = [
        mktree(bare, [("100644", b"README", a)]),
        mktree(bare, [("100644", b"README", a), ("100755", b"run.sh", c),
                      ("100644", b"with space.txt", b), ("100644", b"caf\xc3\xa9", a)]),
        mktree(bare, [("100644", b"README", b), ("120000", b"link", a),
                      ("160000", b"sub", "1" * 40), ("100644", b"bad\xffname", a)]),
        mktree(bare, [("040000", b"README", mktree(bare, [("100644", b"x", a)])),
                      ("040000", b"deep", deep), ("100644", b".hidden", c)]),
        mktree(bare, [("100644", b"README", a), ("040000", b"deep", deep)]),
        mktree(bare, [("100755", b"README", a)]),
    ]
    commits: list[str] = []
    for i, tree in enumerate(trees):
        args = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={key}", "commit-tree", tree,
                "-m", f"step {i}\n\nbody line\n"]
        if commits:
            args += ["-p", commits[-1]]
        if i % 2 == 0:
            args.append("-S")
        commits.append(git(*args, cwd=bare))
    run_git("update-ref", "refs/heads/main", commits[-1], cwd=bare, env=ENV)
    run_git("update-ref", "refs/heads/attempts/x", commits[2], cwd=bare, env=ENV)
    return bare, commits, key


def test_one_memo_serves_every_cap_and_depth(history: tuple[Path, list[str], Path]) -> None:
    """The gate shares one count memo across its caps (the registry's whole tree, then each
    new commit's): a memo filled under other caps and depths gives what a fresh count gives."""
    bare, commits, _key = history
    repo, loose = Repo(bare), Loose(bare)
    asks = [(oid, cap, depth) for oid in commits for cap in (1 << 40, 1, 3, 9, 10, 1000)
            for depth in (1 << 20, 24, 8, 5, 2, 1)]
    shared: dict[tuple[str, int], int] = {}
    for ask in [*asks, *reversed(asks)]:
        oid, cap, depth = ask
        fresh = repo.count_paths(oid, cap, depth)
        assert repo.count_paths(oid, cap, depth, shared) == fresh, ask
        assert loose.count_paths(repo.tree_of(oid), cap, depth, shared) == fresh, ask


def test_a_tree_bomb_is_counted_reading_each_subtree_once(tmp_path: Path) -> None:
    """Twelve levels of a tree naming the next ten times over ten files: 10^13 paths from 14
    objects. Counting stops past the cap, and no tree is read twice, whatever the memo holds."""
    bare = tmp_path / "bomb.git"
    run_git("init", "-q", "--bare", str(bare), env=ENV)

    def made(*args: str, data: bytes) -> str:
        return run_git(*args, cwd=bare, env=ENV, input=data).stdout.decode().strip()

    blob = made("hash-object", "-w", "--stdin", data=b"x")
    tree = made("mktree", data=b"".join(f"100644 blob {blob}\tf{i}\n".encode()
                                        for i in range(10)))
    for _ in range(12):
        tree = made("mktree", data=b"".join(f"040000 tree {tree}\td{i}\n".encode()
                                            for i in range(10)))
    loose = Loose(bare)
    reads: list[str] = []

    def subtrees(t: str) -> list[str | None]:
        reads.append(t)
        return [loose._subtree(e) for e in loose.tree(t)]

    memo: dict[tuple[str, int], int] = {}
    for cap, count in ((10**4, 10**4 + 1), (10**6, 10**6 + 1), (10**13, 10**13),
                       (10**12, 10**12 + 1), (10**13, 10**13)):
        reads.clear()
        assert count_paths(tree, subtrees, cap, 64, memo) == count
        assert len(reads) == len(set(reads)) <= 13
    assert reads == []  # the last count was the memo's alone
    assert count_paths(tree, subtrees, 10**13, 12, {}) == -1  # 13 components deep
    assert count_paths(tree, subtrees, 10**13, 13, {}) == 10**13
    assert Repo(bare).count_paths(tree, 10**5, 64) == 10**5 + 1


def test_every_answer_is_pygit2s(history: tuple[Path, list[str], Path]) -> None:
    bare, commits, _key = history
    repo, loose = Repo(bare), Loose(bare)
    odd = loose.flatten(loose.tree_of(commits[2]))
    assert {p: e.mode for p, e in odd.items()} == {
        "README": 0o100644, "link": 0o120000, "sub": 0o160000, "bad\udcffname": 0o100644}
    assert loose.commit(commits[2]).signature and loose.commit(commits[1]).signature is None
    assert loose.count_paths(loose.tree_of(commits[3]), 1000, 24, {}) == 9
    assert loose.refs() == repo.refs() and loose.refs("refs/heads/attempts/") == \
        repo.refs("refs/heads/attempts/")
    for i, oid in enumerate(commits):
        tree = repo.tree_of(oid)
        assert loose.tree_of(oid) == tree and loose.object_type(oid) == repo.object_type(oid)
        assert {p: (e.mode, e.oid) for p, e in loose.flatten(tree).items()} == \
            {p: (e.mode, e.oid) for p, e in repo.flatten(oid).items()}
        for cap in (1, 3, 10, 1000):
            for depth in (1, 2, 5, 8, 24):
                assert loose.count_paths(tree, cap, depth, {}) == \
                    repo.count_paths(oid, cap, depth), (i, cap, depth)
        for name in ("README", "deep", "missing", "sub"):
            assert loose.subtree_id(oid, name) == repo.subtree_id(oid, name)
        for path in ("README", "run.sh", "link", "deep/f", "deep/d5/f", "README/x", "nope"):
            assert loose.read(oid, path) == repo.read(oid, path), (i, path)
        if i:
            info = repo.commit(oid)
            mine = loose.commit(oid)
            assert (mine.tree, mine.parent) == (info.tree, info.parents[0])
            assert (mine.signature, mine.payload) == (info.signature, info.payload) or \
                (mine.signature is None and info.signature is None)
            before = repo.tree_of(commits[i - 1])
            ours = loose.diff_trees(before, tree)
            theirs = repo.diff_trees(before, tree)
            assert {p: tuple(e and (e.path, e.mode, e.oid) for e in pair)
                    for p, pair in ours.items()} == \
                {p: tuple(e and (e.path, e.mode, e.oid) for e in pair)
                 for p, pair in theirs.items()}
        for j in range(i + 1):
            assert loose.chain(oid, commits[j]) == repo.new_commits(oid, [commits[j]])


def test_what_is_not_plain_is_unsure(history: tuple[Path, list[str], Path],
                                     tmp_path: Path) -> None:
    bare, commits, _key = history
    loose = Loose(bare)
    with pytest.raises(Unsure):
        loose.commit(commits[0])  # a root commit (no parent line)
    with pytest.raises(Unsure):
        loose.chain(commits[3], commits[-1])  # not an ancestor: the walk reaches the root
    merge = git("commit-tree", loose.tree_of(commits[1]), "-p", commits[1], "-p", commits[2],
                "-m", "merge", cwd=bare)
    with pytest.raises(Unsure):
        loose.commit(merge)
    raw = f"tree {loose.tree_of(commits[1])}\nparent {commits[1]}\nauthor t <t> 1 +0000\n" \
          f"committer t <t> 1 +0000\nencoding ISO-8859-1\n\nodd\n".encode()
    odd = git("hash-object", "-t", "commit", "-w", "--stdin", cwd=bare, input=raw)
    assert Repo(bare).commit(odd).parents == (commits[1],)  # pygit2 reads it; this module not
    with pytest.raises(Unsure):
        loose.commit(odd)
    with pytest.raises(Unsure):
        loose.exists("f" * 40)  # absent (or packed): not this module's call
    # everything packed: nothing is read here any more
    copy = tmp_path / "packed.git"
    run_git("clone", "-q", "--bare", "--no-local", str(bare), str(copy), cwd=tmp_path, env=ENV)
    assert not [p for p in (copy / "objects").iterdir() if len(p.name) == 2]
    with pytest.raises(Unsure):
        Loose(copy).commit(commits[1])
    # a damaged loose object (its bytes no longer hash to its id) is not read
    damaged = tmp_path / "damaged.git"
    shutil.copytree(bare, damaged)
    victim = damaged / "objects" / commits[1][:2] / commits[1][2:]
    os.chmod(victim, 0o644)
    victim.write_bytes(zlib.compress(zlib.decompress(victim.read_bytes()) + b"x"))
    assert Loose(bare).commit(commits[1]).parent == commits[0]
    with pytest.raises(Unsure):
        Loose(damaged).commit(commits[1])
    trailing = damaged / "objects" / commits[2][:2] / commits[2][2:]
    os.chmod(trailing, 0o644)
    trailing.write_bytes(trailing.read_bytes() + b"junk")  # the object itself still intact
    with pytest.raises(Unsure):
        Loose(damaged).commit(commits[2])


def test_alternates_and_a_quarantine(history: tuple[Path, list[str], Path],
                                     tmp_path: Path) -> None:
    """Objects of a push's quarantine folder are read beside the repository's; a repository
    borrowing objects through alternates is left to pygit2."""
    bare, _commits, _key = history
    quarantine = tmp_path / "incoming"
    new_blob = b"only in the quarantine\n"
    oid = git("hash-object", "--stdin", cwd=bare, input=new_blob)
    data = f"blob {len(new_blob)}\0".encode() + new_blob
    (quarantine / oid[:2]).mkdir(parents=True)
    (quarantine / oid[:2] / oid[2:]).write_bytes(zlib.compress(data))
    assert Loose(bare, str(quarantine)).blob(oid) == new_blob
    with pytest.raises(Unsure):
        Loose(bare).blob(oid)
    borrowed = tmp_path / "borrowed.git"
    run_git("clone", "-q", "--bare", "--shared", str(bare), str(borrowed), cwd=tmp_path,
            env=ENV)
    with pytest.raises(Unsure):
        Loose(borrowed)


def test_a_folder_flattened_alone_is_what_the_whole_tree_holds_under_it(
        history: tuple[Path, list[str], Path]) -> None:
    """Repo.flatten_folder (the registry reads actors/, agents/, contracts/ with it) against
    Repo.flatten of the whole tree: every folder at every depth, a file's name, a missing name."""
    bare, commits, _ = history
    repo = Repo(bare)
    checked = 0
    for commit in commits:
        whole = repo.flatten(commit)
        folders = {"absent", "absent/deeper"} | {path.rsplit("/", 1)[0] for path in whole}
        folders |= {"/".join(p.split("/")[:n]) for p in whole for n in range(1, p.count("/") + 1)}
        folders |= {path for path in whole if not path.endswith("/")}  # files: nothing under them
        for folder in folders:
            expected = {p: e for p, e in whole.items()
                        if p.startswith(f"{folder}/") and p != f"{folder}/"}
            assert repo.flatten_folder(commit, folder) == expected, (commit, folder)
            checked += bool(expected)
    assert checked > 10
    # a commit the store lacks is an error, as for flatten (never an empty folder: the registry
    # would cache an empty snapshot under that commit)
    for read in (lambda: repo.flatten("1" * 40), lambda: repo.flatten_folder("1" * 40, "a")):
        with pytest.raises(KeyError):
            read()
