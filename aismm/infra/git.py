"""The git layer: the only module that imports pygit2 and turns its errors into ours."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pygit2
from pygit2.enums import FileMode, ObjectType, RepositoryOpenFlag, SortMode

from aismm.core.errors import ConflictError, RepositoryError
from aismm.core.signing import PrivateKey, sign, split_armored
from aismm.infra.loose import count_paths, read_refs  # read_refs: re-exported

__all__ = ["MODE_EXEC", "MODE_FILE", "ZERO", "CommitInfo", "Entry", "Identity", "Repo", "TagInfo",
           "read_refs", "ref_files", "ref_stamp", "stamp_newest"]

ZERO = "0" * 40
MODE_FILE = 0o100644
MODE_EXEC = 0o100755
MODE_TREE = 0o040000


@dataclass(frozen=True)
class Identity:
    """A name and e-mail written into author/committer/tagger fields (they grant nothing)."""

    name: str
    email: str


@dataclass(frozen=True)
class Entry:
    """A non-tree entry of a flattened tree: path, file mode and object id."""

    path: str
    mode: int
    oid: str


@dataclass(frozen=True)
class CommitInfo:
    """What the gate needs to know about a commit."""

    id: str
    tree: str
    parents: tuple[str, ...]
    message: str
    author: str
    time: int
    signature: bytes | None
    payload: bytes | None


@dataclass(frozen=True)
class TagInfo:
    """An annotated tag: its target, name, message and signature."""

    id: str
    name: str
    target: str
    message: str
    signature: bytes | None
    payload: bytes | None


def _settle_file(source: Path, target: Path) -> None:
    """Put ``source`` at ``target`` unless something is there already (as git's
    finalize_object_file: a hard link, or a rename where links are not supported)."""
    try:
        os.link(source, target)
    except FileExistsError:
        pass
    except OSError:
        if not target.exists():
            os.rename(source, target)


def _migrate(incoming: Path, objects: Path) -> None:
    """Move a quarantine's objects into the store: loose objects (an object the store got
    meanwhile is kept as it is), then packs with their ``.idx`` last, as git does."""
    try:
        for fan in sorted(incoming.iterdir()):
            if fan.name == "pack" or not fan.is_dir():
                continue
            for loose in sorted(fan.iterdir()):
                (objects / fan.name).mkdir(exist_ok=True)
                _settle_file(loose, objects / fan.name / loose.name)
        packs = incoming / "pack"
        if packs.is_dir():
            for part in sorted(packs.iterdir(), key=lambda p: (p.suffix == ".idx", p.name)):
                _settle_file(part, objects / "pack" / part.name)
    except OSError as exc:
        raise RepositoryError(f"{objects}: cannot move new objects in ({exc.strerror or exc}); "
                              "check the disk and permissions, then retry") from exc


def _raw_name(entry: pygit2.Object) -> bytes:
    """A tree entry's name as stored (bytes: git names need not be UTF-8)."""
    raw = entry.raw_name if hasattr(entry, "raw_name") else None
    if raw is None:
        if entry.name is None:
            raise RepositoryError(f"{entry.id}: a tree entry without a name; the repository "
                                  "is corrupt, restore it from a backup")
        raw = entry.name.encode()
    return raw


def _sig(who: Identity, when: dt.datetime) -> pygit2.Signature:
    return pygit2.Signature(who.name, who.email, int(when.timestamp()), 0)


class Repo:
    """A git repository (bare for everything the hub owns)."""

    def __init__(self, path: Path | str, *, from_env: bool = False) -> None:
        try:
            if from_env:
                self._r = pygit2.Repository(str(path), RepositoryOpenFlag.FROM_ENV)
            else:
                self._r = pygit2.Repository(str(path), RepositoryOpenFlag.NO_SEARCH)
        except (pygit2.GitError, KeyError) as exc:
            raise RepositoryError(f"{path}: not a git repository ({exc}); check the path") from exc
        self.path = Path(self._r.path)

    @classmethod
    def init_bare(cls, path: Path) -> Repo:
        """Create a bare repository (refusing an existing one)."""
        if path.exists():
            raise RepositoryError(f"{path}: already exists; choose another path")
        try:
            pygit2.init_repository(str(path), bare=True, initial_head="main")
        except pygit2.GitError as exc:
            raise RepositoryError(f"{path}: cannot create repository ({exc})") from exc
        return cls(path)

    def add_objects(self, object_dir: str) -> None:
        """Also read objects from another directory (a push's quarantine)."""
        self._r.odb.add_disk_alternate(object_dir)

    # -- config ---------------------------------------------------------------------------
    def set_config(self, key: str, value: str | int | bool) -> None:
        self._r.config[key] = value

    def set_configs(self, values: dict[str, str | int | bool]) -> None:
        """Set several keys of the repository's own config in one write (each
        :meth:`set_config` rewrites the file under its lock). For a repository this process
        just created and nobody else writes yet: the entries are appended as git writes them,
        and the file is replaced by a rename (a reader sees the old or the new one)."""
        if not values:
            return
        sections: dict[str, list[str]] = {}
        for key, value in values.items():
            section, _, name = key.rpartition(".")
            head, _, sub = section.partition(".")
            if not _CONFIG_NAME.fullmatch(name) or not _CONFIG_NAME.fullmatch(head) or \
                    any(c in sub for c in '"\\\n'):
                raise RepositoryError(f"{key}: not a config key this writer handles; use "
                                      "set_config")
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
            if "\n" in text or "\0" in text:
                raise RepositoryError(f"{key}: a config value holds a line break; use one line")
            quoted = text.replace("\\", "\\\\").replace('"', '\\"')
            title = f'[{head} "{sub}"]' if sub else f"[{head}]"
            sections.setdefault(title, []).append(f'\t{name} = "{quoted}"\n')
        config = self.path / "config"
        body = config.read_bytes() if config.exists() else b""
        if body and not body.endswith(b"\n"):
            body += b"\n"
        body += "".join(f"{title}\n{''.join(lines)}" for title, lines in sections.items()).encode()
        tmp = self.path / "config.lock"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(body)
            os.replace(tmp, config)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    # -- refs -----------------------------------------------------------------------------
    def ref(self, name: str) -> str | None:
        """The object a ref points at, or None."""
        try:
            return str(self._r.references[name].target)
        except (KeyError, pygit2.InvalidSpecError):
            return None

    def refs(self, prefix: str = "refs/") -> dict[str, str]:
        """Every ref under ``prefix`` with its target."""
        out = {}
        for name in self._r.references:
            if name.startswith(prefix):
                ref = self._r.references[name]
                if ref.type == pygit2.enums.ReferenceType.DIRECT:
                    out[name] = str(ref.target)
        return out

    def update_ref(self, name: str, new: str, old: str | None, message: str = "aismm") -> None:
        """Compare-and-swap a ref: move it from ``old`` (None = must not exist) to ``new``."""
        for attempt in range(40):
            try:
                loaded = self._r.references.get(name)
                current = str(loaded.target) if loaded is not None else None
                if current != old:
                    raise ConflictError(
                        f"{name}: moved to {current or 'nothing'} while we expected "
                        f"{old or 'nothing'}; re-read the repository and retry"
                    )
                if loaded is None:
                    self._r.create_reference_direct(name, pygit2.Oid(hex=new), False, message)
                else:
                    # libgit2 moves the ref only if it still holds the value we loaded and
                    # compared above (compare-and-swap); otherwise it raises and we re-check.
                    loaded.set_target(pygit2.Oid(hex=new), message)
                return
            except (pygit2.GitError, OSError, pygit2.AlreadyExistsError) as exc:
                if attempt == 39:
                    raise RepositoryError(f"{name}: cannot update ref ({exc}); retry") from exc
                time.sleep(0.005 * (attempt + 1))

    def delete_ref(self, name: str, expected: str) -> None:
        """Delete a ref that still points at ``expected`` (used only to undo forged refs)."""
        ref = self._r.references.get(name)
        if ref is not None and str(ref.target) == expected:
            ref.delete()

    # -- objects --------------------------------------------------------------------------
    def exists(self, oid: str) -> bool:
        try:
            return oid in self._r.odb
        except ValueError:
            return False

    def object_type(self, oid: str) -> str | None:
        try:
            obj = self._r.get(oid)
        except ValueError:
            return None
        return None if obj is None else obj.type_str

    def commit(self, oid: str) -> CommitInfo:
        """Read a commit, with its signature and the payload that was signed."""
        try:
            obj = self._r[oid]
        except (KeyError, ValueError) as exc:
            raise RepositoryError(f"{oid}: no such object; fetch it first") from exc
        if not isinstance(obj, pygit2.Commit):
            raise RepositoryError(f"{oid}: is a {obj.type_str}, not a commit")
        signature, payload = obj.gpg_signature
        if signature is not None:  # each gpgsig line with its newline, as git hands it over
            signature += b"\n"
        return CommitInfo(
            id=str(obj.id), tree=str(obj.tree_id),
            parents=tuple(str(p) for p in obj.parent_ids),
            message=obj.message, author=f"{obj.author.name} <{obj.author.email}>",
            time=obj.commit_time, signature=signature, payload=payload,
        )

    def tag(self, oid: str) -> TagInfo:
        """Read an annotated tag object and split off its signature."""
        obj = self._r.get(oid)
        if not isinstance(obj, pygit2.Tag):
            raise RepositoryError(f"{oid}: not an annotated tag")
        raw = self._r.odb.read(oid)[1]
        split = split_armored(raw)
        return TagInfo(
            id=oid, name=obj.name, target=str(obj.target), message=obj.message or "",
            signature=split[1] if split else None, payload=split[0] if split else None,
        )

    def blob(self, oid: str) -> bytes:
        obj = self._r[oid]
        if not isinstance(obj, pygit2.Blob):
            raise RepositoryError(f"{oid}: not a blob")
        return bytes(obj.data)

    def blob_size(self, oid: str) -> int:
        return int(self._r.odb.read_header(oid)[1]) if hasattr(self._r.odb, "read_header") \
            else len(self.blob(oid))

    def tree_of(self, commit: str) -> str:
        obj = self._r[commit]
        if not isinstance(obj, pygit2.Commit):
            raise RepositoryError(f"{commit}: is a {obj.type_str}, not a commit")
        return str(obj.tree_id)

    def _tree(self, oid: str | pygit2.Oid) -> pygit2.Tree:
        """The tree ``oid`` names (KeyError when the store lacks it)."""
        obj = self._r[oid]
        if not isinstance(obj, pygit2.Tree):
            raise RepositoryError(f"{oid}: is a {obj.type_str}, not a tree")
        return obj

    def _tree_if_present(self, oid: pygit2.Oid | str) -> pygit2.Tree | None:
        """The tree ``oid`` names, or None when the store lacks it."""
        obj = self._r.get(oid)
        if obj is not None and not isinstance(obj, pygit2.Tree):
            raise RepositoryError(f"{oid}: is a {obj.type_str}, not a tree")
        return obj

    def _root(self, tree_or_commit: str) -> pygit2.Tree:
        """The tree ``tree_or_commit`` names, or the tree of the commit it names."""
        obj = self._r[tree_or_commit]
        tree = obj.tree if isinstance(obj, pygit2.Commit) else obj
        if not isinstance(tree, pygit2.Tree):
            raise RepositoryError(f"{tree_or_commit}: is a {obj.type_str}, not a tree or a commit")
        return tree

    def subtree_id(self, commit: str, path: str) -> str | None:
        """The tree id at ``path`` in a commit (e.g. the deliverable tree), or None."""
        tree = self._r[commit].tree
        try:
            entry = tree[path]
        except KeyError:
            return None
        return str(entry.id) if entry.type_str == "tree" else None

    def read(self, commit: str, path: str) -> bytes | None:
        """A file's bytes at a commit, or None."""
        tree = self._r[commit].tree
        try:
            entry = tree[path]
        except KeyError:
            return None
        return bytes(entry.data) if isinstance(entry, pygit2.Blob) else None

    def flatten(self, tree_or_commit: str, prefix: str = "") -> dict[str, Entry]:
        """Every non-tree entry under a tree (raw bytes names decoded with surrogateescape)."""
        out: dict[str, Entry] = {}
        self._walk(self._root(tree_or_commit), prefix, out)
        return out

    def flatten_folder(self, commit: str, folder: str) -> dict[str, Entry]:
        """:meth:`flatten` of the folder ``folder`` of a commit, paths named from the commit's
        root (``folder/...``): the entries of the whole tree that start with ``folder/``, read
        without walking the rest of it. Empty when the commit has no such folder."""
        out: dict[str, Entry] = {}
        tree = self.subtree_id(commit, folder)  # a missing commit raises KeyError, as in flatten
        sub = None if tree is None else self._tree_if_present(tree)
        if sub is not None:
            self._walk(sub, f"{folder}/", out)
        return out

    def count_paths(self, tree_or_commit: str, cap: int, max_depth: int,
                    memo: dict[tuple[str, int], int] | None = None) -> int:
        """How many paths :meth:`flatten` would return, without walking them: each distinct
        subtree is read once however often it repeats (a 7-object tree can name 10^14 paths).

        Counting stops early: the result is ``cap + 1`` as soon as it exceeds ``cap``, and
        ``-1`` when some path is deeper than ``max_depth`` components. ``memo`` (exact counts
        of subtrees) may be shared across calls, whatever their ``cap``.
        """
        return count_paths(str(self._root(tree_or_commit).id), self._subtrees, cap, max_depth,
                           {} if memo is None else memo)

    def _subtrees(self, tree: str) -> Iterator[str | None]:
        """Per entry of ``tree``, the tree it names, or None (a file, link, gitlink, or a
        missing tree: :meth:`flatten` lists it)."""
        found = self._r.get(tree)
        for entry in found if isinstance(found, pygit2.Tree) else ():
            sub = self._r.get(entry.id) if entry.filemode == FileMode.TREE else None
            yield str(sub.id) if isinstance(sub, pygit2.Tree) else None

    def _walk(self, tree: pygit2.Tree, prefix: str, out: dict[str, Entry]) -> None:
        for entry in tree:
            name = _raw_name(entry).decode("utf-8", "surrogateescape")
            path = f"{prefix}{name}"
            if entry.filemode == FileMode.TREE:
                sub = self._tree_if_present(entry.id)
                if sub is None:
                    out[path + "/"] = Entry(path + "/", MODE_TREE, str(entry.id))
                else:
                    self._walk(sub, path + "/", out)
            else:
                out[path] = Entry(path, int(entry.filemode), str(entry.id))

    def diff_trees(self, old_tree: str | None, new_tree: str, prefix: str = ""
                   ) -> dict[str, tuple[Entry | None, Entry | None]]:
        """Paths that differ between two trees, skipping identical subtrees by id."""
        out: dict[str, tuple[Entry | None, Entry | None]] = {}
        self._diff(self._tree(old_tree) if old_tree else None, self._tree(new_tree), prefix, out)
        return out

    def _entries(self, tree: pygit2.Tree | None) -> dict[bytes, pygit2.Object]:
        if tree is None:
            return {}
        return {_raw_name(e): e for e in tree}

    def _diff(self, old: pygit2.Tree | None, new: pygit2.Tree | None, prefix: str,
              out: dict[str, tuple[Entry | None, Entry | None]]) -> None:
        a, b = self._entries(old), self._entries(new)
        for raw in sorted(set(a) | set(b)):
            ea, eb = a.get(raw), b.get(raw)
            if ea is not None and eb is not None and ea.id == eb.id and \
                    ea.filemode == eb.filemode:
                continue
            path = prefix + raw.decode("utf-8", "surrogateescape")
            a_tree = ea is not None and ea.filemode == FileMode.TREE
            b_tree = eb is not None and eb.filemode == FileMode.TREE
            if a_tree or b_tree:
                sub_a = self._tree_if_present(ea.id) if a_tree and ea is not None else None
                sub_b = self._tree_if_present(eb.id) if b_tree and eb is not None else None
                self._diff(sub_a, sub_b, path + "/", out)
            if not a_tree or not b_tree:
                left = Entry(path, int(ea.filemode), str(ea.id)) if ea is not None and \
                    not a_tree else None
                right = Entry(path, int(eb.filemode), str(eb.id)) if eb is not None and \
                    not b_tree else None
                if left or right:
                    out[path] = (left, right)

    def new_commits(self, new: str, known: list[str]) -> list[str]:
        """Commits reachable from ``new`` but from none of ``known``, oldest first."""
        walker = self._r.walk(new, SortMode.TOPOLOGICAL | SortMode.REVERSE)
        for oid in known:
            if oid and oid != ZERO and self.exists(oid):
                walker.hide(oid)
        return [str(c.id) for c in walker]

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        if ancestor == descendant:
            return True
        return bool(self._r.descendant_of(descendant, ancestor))

    def iter_commits(self, tip: str) -> Iterator[CommitInfo]:
        """Every commit reachable from ``tip``, oldest first."""
        for c in self._r.walk(tip, SortMode.TOPOLOGICAL | SortMode.REVERSE):
            yield self.commit(str(c.id))

    def export(self, commit: str, dest: Path) -> dict[str, str]:
        """Write a commit's regular files under ``dest`` (a checkout without .git); path -> oid."""
        files = {}
        top = os.fspath(dest)
        made: set[str] = set()  # folders made so far (relative; "" is dest): each made once
        for path, entry in self.flatten(commit).items():
            if entry.mode not in (MODE_FILE, MODE_EXEC) or ".." in path.split("/"):
                continue
            folder = path.rpartition("/")[0]
            if folder not in made:
                os.makedirs(os.path.join(top, folder), exist_ok=True)
                made.add(folder)
            target = os.path.join(top, path)
            with open(target, "wb") as out:
                out.write(self.blob(entry.oid))
            if entry.mode == MODE_EXEC:
                os.chmod(target, 0o755)
            files[path] = entry.oid
        return files

    # -- writing --------------------------------------------------------------------------
    @contextlib.contextmanager
    def quarantine(self) -> Iterator[None]:
        """Objects written in this block stay out of the object store until it ends cleanly.

        Like git's receive quarantine: for the block, this Repo writes new objects into a
        temporary directory beside ``objects/`` (reading the store through it as an
        alternate), so the gate can judge them. When the block ends without an exception they
        move into the store (before any ref may name them); when it raises (the gate refused,
        a conflict, an interrupt) the directory is deleted and the repository holds exactly
        the objects it held before, not even a dangling commit. Objects the store already has
        are never written again, so nothing that existed before is ever touched.
        """
        objects = Path(self._r.path) / "objects"
        outer = self._r
        try:
            incoming = Path(tempfile.mkdtemp(prefix="tmp_objdir-aismm-", dir=objects))
        except OSError as exc:
            raise RepositoryError(f"{objects}: cannot make a quarantine ({exc.strerror or exc}); "
                                  "check the disk and permissions") from exc
        try:
            try:
                inner = pygit2.Repository(str(self.path), RepositoryOpenFlag.NO_SEARCH)
                odb = pygit2.Odb(str(incoming))
                odb.add_disk_alternate(str(objects))
                inner.set_odb(odb)
            except pygit2.GitError as exc:
                raise RepositoryError(f"{self.path}: cannot open a quarantine ({exc}); "
                                      "retry") from exc
            self._r = inner
            try:
                yield
            finally:
                self._r = outer
            _migrate(incoming, objects)
        finally:
            shutil.rmtree(incoming, ignore_errors=True)

    def write_blob(self, data: bytes) -> str:
        return str(self._r.create_blob(data))

    def build_tree(self, base: str | None, changes: dict[str, bytes | None]) -> str:
        """A tree: ``base`` (a tree id or None) with files set (bytes) or removed (None)."""
        base_tree = self._tree(base) if base else None
        return str(self._build(base_tree, changes))

    def _build(self, base: pygit2.Tree | None, changes: dict[str, bytes | None]) -> pygit2.Oid:
        builder = self._r.TreeBuilder(base) if base is not None else self._r.TreeBuilder()
        nested: dict[str, dict[str, bytes | None]] = {}
        for path, data in changes.items():
            head, sep, rest = path.partition("/")
            if sep:
                nested.setdefault(head, {})[rest] = data
            elif data is None:
                if builder.get(head) is not None:
                    builder.remove(head)
            else:
                builder.insert(head, self._r.create_blob(data), FileMode.BLOB)
        for head, sub in nested.items():
            existing = builder.get(head)
            sub_base = self._tree(existing.id) if existing is not None and \
                existing.filemode == FileMode.TREE else None
            oid = self._build(sub_base, sub)
            if len(self._tree(oid)) == 0:
                if existing is not None:
                    builder.remove(head)
            else:
                builder.insert(head, oid, FileMode.TREE)
        return builder.write()

    def write_commit(
        self, *, tree: str, parents: list[str], message: str, key: PrivateKey,
        who: Identity, when: dt.datetime,
    ) -> str:
        """Write an SSH-signed commit object (no ref moves)."""
        sig = _sig(who, when)
        # pygit2's stub says Oid; create_commit_string returns the commit object's text
        content = cast(str, self._r.create_commit_string(
            sig, sig, message, pygit2.Oid(hex=tree), [pygit2.Oid(hex=p) for p in parents]
        ))
        # Without its final newline, as git writes the gpgsig header: libgit2 would add a
        # blank continuation line, a second encoding of the same signature.
        signature = sign(key, content.encode("utf-8")).removesuffix("\n")
        return str(self._r.create_commit_with_signature(content, signature))

    def write_tag(
        self, *, target: str, name: str, message: str, key: PrivateKey,
        who: Identity, when: dt.datetime,
    ) -> str:
        """Write an SSH-signed annotated tag object pointing at a commit (no ref moves)."""
        body = (
            f"object {target}\ntype commit\ntag {name}\n"
            f"tagger {who.name} <{who.email}> {int(when.timestamp())} +0000\n\n"
            f"{message.rstrip()}\n"
        ).encode()
        data = body + sign(key, body).encode()
        return str(self._r.odb.write(ObjectType.TAG, data))


_CONFIG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]*")  # a config section's or variable's name


def ref_files(path: Path | str) -> list[str] | None:
    """What holds the refs of the repository at ``path``, relative to it: ``packed-refs`` (or
    the repository folder itself while there is none, as creating it changes the folder),
    ``refs`` and every folder and loose ref under it (lock files aside), for :func:`ref_stamp`.
    None when the layout is not the files backend (then read the refs every time)."""
    top = os.fspath(path)
    out = []
    try:
        packed = os.lstat(os.path.join(top, "packed-refs")).st_mode
    except FileNotFoundError:
        out.append(".")
    except OSError:
        return None
    else:
        if not stat.S_ISREG(packed):
            return None
        out.append("packed-refs")
    try:
        if not stat.S_ISDIR(os.lstat(os.path.join(top, "refs")).st_mode):
            return None  # a symbolic link: a change behind it would not show in the stamp
        out.append("refs")
        if not _ref_tree(os.path.join(top, "refs"), "refs/", out):
            return None
    except OSError:
        return None
    return out


def _ref_tree(folder: str, prefix: str, out: list[str]) -> bool:
    with os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.is_dir(follow_symlinks=False):
                out.append(prefix + entry.name)
                if not _ref_tree(entry.path, f"{prefix}{entry.name}/", out):
                    return False
            elif entry.is_file(follow_symlinks=False):
                if not entry.name.endswith(".lock"):
                    out.append(prefix + entry.name)
            else:
                return False  # a symbolic link or anything else: not a layout git writes
    return True


def ref_stamp(path: str, files: list[str], dir_fd: int | None = None) -> str | None:
    """The stamp of ``files`` (:func:`ref_files`) of the repository at ``path``: each one's
    inode, size and ctime (``ino:size:ctime_ns``, space-separated); None when one is missing.

    Git moves a ref by renaming a new file into place and packs by renaming a new
    ``packed-refs``, which changes the file and its folder; a file written in place changes
    its ctime, which no program can set back. So an equal stamp means equal refs, provided the
    stamp was taken when its newest ctime (:func:`stamp_newest`) was already older than the
    file system's timestamp granularity (a later write could otherwise land in the same tick):
    the caller keeps a stamp only then. With ``dir_fd``, ``path`` is relative to that folder
    (shorter lookups when many repositories of one folder are stamped).
    """
    lstat = os.lstat
    try:
        found = [lstat(f"{path}/{name}", dir_fd=dir_fd) for name in files]
    except OSError:
        return None
    return " ".join([f"{st.st_ino}:{st.st_size}:{st.st_ctime_ns}" for st in found])


def stamp_newest(stamp: str) -> int:
    """The newest ctime (ns) in a :func:`ref_stamp`."""
    return max(int(part.rpartition(":")[2]) for part in stamp.split(" "))
