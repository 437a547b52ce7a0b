"""A git repository read from its files, without libgit2: the lean hook path's object reader.

Importing pygit2 costs a hook run without ``aismm serve`` more than judging a delivery does. For
:mod:`aismm.state.lean` this module reads what it needs from git's on-disk format: refs (the
files backend), loose objects (zlib, each checked against its id) and the plainest commits and
trees. It answers exactly as :class:`aismm.infra.git.Repo` would, or raises :class:`Unsure`:
an object that is packed or absent, a commit with any header beyond tree, one parent, author,
committer and one ``gpgsig`` (or an ident git would not write, or a NUL), a tree entry with a
mode git would not write itself, a tree out of git's order or naming an entry twice, a history
with a merge, a missing subtree. The caller then lets the full path (pygit2) judge.
(``tests/test_hookpath_loose.py`` compares it with :class:`aismm.infra.git.Repo`.)
"""

from __future__ import annotations

import hashlib
import os
import re
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Entry", "Loose", "Unsure", "read_refs"]

_OID = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
_HEX40 = re.compile(rb"[0-9a-f]{40}")
# an author or committer line as git writes it, which libgit2 surely parses (it refuses a
# malformed e-mail or date outright: the gate then refuses the commit it cannot read)
_IDENT = re.compile(rb"[^<>\n]* <[^<>\n]*> [0-9]{1,15} [+-](?:0[0-9]|1[0-4])[0-5][0-9]")
MODE_TREE = 0o040000
_MODES = {b"40000": MODE_TREE, b"100644": 0o100644, b"100755": 0o100755, b"120000": 0o120000,
          b"160000": 0o160000}  # the modes git writes, which libgit2 reports unchanged
_LIMIT = 64 << 20  # a loose object larger than this is left to pygit2


class Unsure(Exception):
    """Not plain enough to answer here with certainty; the full path (pygit2) decides."""


@dataclass(frozen=True)
class Entry:
    """A non-tree entry of a flattened tree (as :class:`aismm.infra.git.Entry`)."""

    path: str
    mode: int
    oid: str


def _oid(text: str) -> bool:
    return _OID.fullmatch(text) is not None


def read_refs(path: Path | str) -> dict[str, str] | None:
    """The direct refs under ``refs/`` of the repository at ``path``, read from its files
    (``packed-refs`` and loose refs) without opening it: what :meth:`Repo.refs` returns, at a
    fraction of the cost. None when the layout is anything but the files backend as git writes
    it (reftable, an unreadable or unexpected file): then ask :meth:`Repo.refs`."""
    out: dict[str, str] = {}
    top = os.fspath(path)  # (a reftable repository has a file refs/heads: not a ref, so None)
    try:
        with open(os.path.join(top, "packed-refs"), encoding="ascii") as handle:
            for line in handle:
                if line.startswith(("#", "^")):
                    continue
                oid, _, name = line.rstrip("\n").partition(" ")
                if not _oid(oid) or not name.startswith("refs/"):
                    return None
                out[name] = oid
    except FileNotFoundError:
        pass
    except (OSError, UnicodeDecodeError):
        return None
    try:
        if not _loose(os.path.join(top, "refs"), "refs/", out):
            return None
    except (OSError, UnicodeDecodeError):
        return None
    return out


def _loose(folder: str, prefix: str, out: dict[str, str]) -> bool:
    """Read the loose refs under ``folder`` into ``out``; False at a file that is not a ref."""
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if not _loose(entry.path, f"{prefix}{entry.name}/", out):
                    return False
                continue
            if entry.name.endswith(".lock"):
                continue  # a ref being written: its value is still the file without .lock
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                text = os.read(fd, 100).decode("ascii").rstrip("\n")
            finally:
                os.close(fd)
            if text.startswith("ref: "):
                out.pop(prefix + entry.name, None)  # symbolic: not a direct ref
            elif _oid(text):
                out[prefix + entry.name] = text
            else:
                return False
    return True


@dataclass(frozen=True)
class Commit:
    """A plain commit: its tree, its one parent, and the signature with what it signs."""

    tree: str
    parent: str
    signature: bytes | None
    payload: bytes


class Loose:
    """The loose objects of a bare repository (plus a push's quarantine folder)."""

    def __init__(self, git_dir: Path, extra: str | None = None) -> None:
        self.path = Path(git_dir)
        if (self.path / "objects" / "info" / "alternates").exists():
            raise Unsure  # objects elsewhere: pygit2 follows them
        self._dirs = [self.path / "objects", *([Path(extra)] if extra else [])]
        self._cache: dict[str, tuple[bytes, bytes]] = {}

    def refs(self, prefix: str = "refs/") -> dict[str, str]:
        found = read_refs(self.path)
        if found is None:
            raise Unsure
        return {name: oid for name, oid in found.items() if name.startswith(prefix)}

    def _object(self, oid: str) -> tuple[bytes, bytes]:
        """(type, body) of a loose object, checked against its id."""
        hit = self._cache.get(oid)
        if hit is not None:
            return hit
        if len(oid) != 40 or not _OID.fullmatch(oid):
            raise Unsure
        for folder in self._dirs:
            try:
                with open(folder / oid[:2] / oid[2:], "rb") as handle:
                    if os.fstat(handle.fileno()).st_size > _LIMIT:
                        raise Unsure  # (read(_LIMIT) would reserve _LIMIT bytes each time)
                    packed = handle.read()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise Unsure from exc
            stream = zlib.decompressobj()
            try:
                raw = stream.decompress(packed, _LIMIT + 64)
            except zlib.error as exc:
                raise Unsure from exc
            if not stream.eof or stream.unused_data or stream.unconsumed_tail:
                raise Unsure  # truncated, too large, or trailing bytes git would complain of
            header, nul, body = raw.partition(b"\0")
            kind, _, size = header.partition(b" ")
            if not nul or kind not in (b"commit", b"tree", b"blob") or not size.isdigit() or \
                    int(size) != len(body) or hashlib.sha1(raw).hexdigest() != oid:
                raise Unsure
            self._cache[oid] = (kind, body)
            return kind, body
        raise Unsure  # packed, elsewhere or absent

    def size(self, oid: str) -> int:
        """A blob's size as its header declares it, read without inflating the rest (as
        libgit2's ``read_header``); :meth:`blob` checks it against the object's id."""
        hit = self._cache.get(oid)
        if hit is not None:
            if hit[0] != b"blob":
                raise Unsure
            return len(hit[1])
        if len(oid) != 40 or not _OID.fullmatch(oid):
            raise Unsure
        for folder in self._dirs:
            try:
                with open(folder / oid[:2] / oid[2:], "rb") as handle:
                    start = handle.read(4096)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise Unsure from exc
            try:
                head = zlib.decompressobj().decompress(start, 64)
            except zlib.error as exc:
                raise Unsure from exc
            header, nul, _rest = head.partition(b"\0")
            kind, _, size = header.partition(b" ")
            if not nul or kind != b"blob" or not size.isdigit():
                raise Unsure
            return int(size)
        raise Unsure  # packed, elsewhere or absent

    def exists(self, oid: str) -> bool:
        self._object(oid)
        return True

    def object_type(self, oid: str) -> str:
        return self._object(oid)[0].decode()

    def blob(self, oid: str) -> bytes:
        kind, body = self._object(oid)
        if kind != b"blob":
            raise Unsure
        return body

    def commit(self, oid: str) -> Commit:
        """A commit whose headers are exactly tree, one parent, author, committer and at most
        one ``gpgsig``; the signature and payload as libgit2 splits them."""
        kind, body = self._object(oid)
        if kind != b"commit" or b"\0" in body:
            raise Unsure  # libgit2 reads a commit, and what it signs, up to a NUL only
        head, sep, _message = body.partition(b"\n\n")
        if not sep:
            raise Unsure
        lines = head.split(b"\n")
        if len(lines) < 4 or not (lines[0].startswith(b"tree ") and
                                  lines[1].startswith(b"parent ") and
                                  lines[2].startswith(b"author ") and
                                  lines[3].startswith(b"committer ") and
                                  _IDENT.fullmatch(lines[2], 7) and
                                  _IDENT.fullmatch(lines[3], 10)):
            raise Unsure
        tree, parent = lines[0][5:], lines[1][7:]
        if not (_HEX40.fullmatch(tree) and _HEX40.fullmatch(parent)):
            raise Unsure
        rest = lines[4:]
        signature = None
        if rest:
            if not rest[0].startswith(b"gpgsig ") or \
                    not all(line.startswith(b" ") for line in rest[1:]):
                raise Unsure
            signature = b"\n".join([rest[0][7:], *(line[1:] for line in rest[1:])]) + b"\n"
        payload = b"\n".join(lines[:4]) + b"\n" + body[len(head) + 1:]
        return Commit(tree.decode(), parent.decode(), signature, payload)

    def tree_of(self, commit: str) -> str:
        """The tree of any commit (a root one included): its first header, as git writes it."""
        kind, body = self._object(commit)
        if kind != b"commit" or not body.startswith(b"tree ") or body[45:46] != b"\n" or \
                not _HEX40.fullmatch(body[5:45]):
            raise Unsure
        return body[5:45].decode()

    def tree(self, oid: str) -> list[tuple[bytes, int, str]]:
        """(name, mode, id) of each entry, in stored order: git's order, each name once and
        without a slash (libgit2 looks names up by bisection; another tree is Unsure)."""
        kind, body = self._object(oid)
        if kind != b"tree":
            raise Unsure
        out = []
        names: set[bytes] = set()
        last = b""
        at = 0
        while at < len(body):
            space, nul = body.find(b" ", at), body.find(b"\0", at)
            if not 0 <= space < nul:
                raise Unsure
            mode = _MODES.get(body[at:space])
            name = body[space + 1:nul]
            if mode is None or nul + 21 > len(body) or not name or b"/" in name or \
                    name in names:
                raise Unsure
            key = name + b"/" if mode == MODE_TREE else name  # git sorts a tree as name/
            if key <= last:
                raise Unsure
            names.add(name)
            last = key
            out.append((name, mode, body[nul + 1:nul + 21].hex()))
            at = nul + 21
        return out

    def _subtree(self, entry: tuple[bytes, int, str]) -> str | None:
        """The tree an entry names (None: not a tree entry); Unsure when it is missing."""
        if entry[1] != MODE_TREE:
            return None
        if self.object_type(entry[2]) != "tree":
            raise Unsure
        return entry[2]

    def subtree_id(self, commit: str, name: str) -> str | None:
        """The tree id at top-level ``name`` of a commit, or None."""
        for raw, mode, oid in self.tree(self.tree_of(commit)):
            if raw == name.encode():
                return self._subtree((raw, mode, oid))
        return None

    def read(self, commit: str, path: str) -> bytes | None:
        """A file's bytes at a commit, or None (as :meth:`Repo.read`)."""
        tree = self.tree_of(commit)
        parts = path.encode().split(b"/")
        for depth, part in enumerate(parts):
            entry = next((e for e in self.tree(tree) if e[0] == part), None)
            if entry is None:
                return None
            if depth == len(parts) - 1:
                if entry[1] == 0o160000:
                    raise Unsure  # a gitlink: what pygit2 makes of it is not this module's call
                return self.blob(entry[2]) if entry[1] != MODE_TREE else None
            sub = self._subtree(entry)
            if sub is None:
                return None
            tree = sub
        return None

    def flatten(self, tree: str, prefix: str = "") -> dict[str, Entry]:
        out: dict[str, Entry] = {}
        for raw, mode, oid in self.tree(tree):
            path = prefix + raw.decode("utf-8", "surrogateescape")
            sub = self._subtree((raw, mode, oid))
            if sub is None:
                out[path] = Entry(path, mode, oid)
            else:
                out.update(self.flatten(sub, path + "/"))
        return out

    def count_paths(self, tree: str, cap: int, depth: int, memo: dict[tuple[str, int], int]
                    ) -> int:
        """As :meth:`Repo.count_paths` (``cap + 1`` past ``cap``, -1 past ``depth``)."""
        return count_paths(tree, lambda t: (self._subtree(e) for e in self.tree(t)), cap, depth,
                           memo)

    def diff_trees(self, old: str | None, new: str | None, prefix: str = ""
                   ) -> dict[str, tuple[Entry | None, Entry | None]]:
        """As :meth:`Repo.diff_trees`: paths that differ, identical subtrees skipped by id."""
        a = {e[0]: e for e in self.tree(old)} if old else {}
        b = {e[0]: e for e in self.tree(new)} if new else {}
        out: dict[str, tuple[Entry | None, Entry | None]] = {}
        for raw in sorted(set(a) | set(b)):
            ea, eb = a.get(raw), b.get(raw)
            if ea is not None and eb is not None and ea[2] == eb[2] and ea[1] == eb[1]:
                continue
            path = prefix + raw.decode("utf-8", "surrogateescape")
            sub_a = self._subtree(ea) if ea is not None else None
            sub_b = self._subtree(eb) if eb is not None else None
            if sub_a is not None or sub_b is not None:
                out.update(self.diff_trees(sub_a, sub_b, path + "/"))
            left = Entry(path, ea[1], ea[2]) if ea is not None and sub_a is None else None
            right = Entry(path, eb[1], eb[2]) if eb is not None and sub_b is None else None
            if left or right:
                out[path] = (left, right)
        return out

    def chain(self, tip: str, base: str, limit: int = 100_000) -> list[str]:
        """The commits from ``base`` (excluded) to ``tip``, oldest first, along single parents:
        what :meth:`Repo.new_commits` gives for a linear history (``base`` an ancestor of
        ``tip``). Unsure when ``base`` is not reached that way."""
        out: list[str] = []
        at = tip
        while at != base:
            if len(out) >= limit:
                raise Unsure
            out.append(at)
            at = self.commit(at).parent
        out.reverse()
        return out


def count_paths(tree: str, subtrees: Callable[[str], Iterable[str | None]], cap: int, depth: int,
                memo: dict[tuple[str, int], int]) -> int:
    """How many paths the tree ``tree`` names, for both readers (:meth:`Loose.count_paths` and
    :meth:`aismm.infra.git.Repo.count_paths`): ``subtrees(t)`` gives, per entry of tree ``t``,
    the id of the tree it names or None for any other entry. The count stops at ``cap + 1``
    past ``cap``, and is -1 when a path would be deeper than ``depth`` components.

    ``memo`` keeps the exact count of each distinct subtree counted to its end at a depth
    (never a stopped or too-deep one), so each is read once however often it repeats, and one
    memo serves any ``cap``: a subtree without a too-deep path gives ``min(count, cap + 1)``
    whatever the order of its entries."""
    key = (tree, depth)
    known = memo.get(key)
    if known is not None:
        return known if known <= cap else cap + 1
    total = 0
    for sub in subtrees(tree):
        if depth < 1:
            return -1  # a path would be deeper than allowed
        if sub is None:
            total += 1  # a file, link or gitlink
        else:
            inner = count_paths(sub, subtrees, cap, depth - 1, memo)
            if inner < 0:
                return -1
            total += inner
        if total > cap:
            return cap + 1
    memo[key] = total
    return total
