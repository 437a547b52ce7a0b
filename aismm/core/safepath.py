"""What a path inside a mission or registry repository may look like."""

from __future__ import annotations

import unicodedata

__all__ = ["FORBIDDEN_NAMES", "case_collisions", "path_problem", "printable"]

_BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
FORBIDDEN_NAMES = {".gitmodules", ".gitattributes", ".gitignore", ".mailmap"}
# Characters a terminal (or git's ``remote:`` relay) must never receive raw: C0/C1 controls (ESC
# starts CSI/OSC sequences, BEL ends OSC, a bare CR overwrites the line), format characters
# (bidirectional overrides, zero-width), surrogates, and line/paragraph separators.
_UNPRINTABLE = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def printable(text: object, *, keep: str = "", limit: int | None = None) -> str:
    """Text from an agent (or any outsider) made safe to print or to store in a terminal line.

    Every control, format, surrogate and separator character becomes a visible escape
    (``\\x1b``, ``\\u202e``, ``\\n``), so the result is one line unless ``keep`` lists
    characters to leave alone (e.g. ``"\\n"`` for multi-line file content). Idempotent: the
    escapes are plain ASCII. ``limit`` cuts the result to that many characters (``…`` marks the
    cut), never inside an escape.
    """
    pieces = [ch if ch in keep or unicodedata.category(ch) not in _UNPRINTABLE
              else ch.encode("unicode_escape").decode("ascii") for ch in str(text)]
    if limit is None or sum(map(len, pieces)) <= limit:
        return "".join(pieces)
    out, size = [], 0
    for piece in pieces:
        if size + len(piece) > limit - 1:
            break
        out.append(piece)
        size += len(piece)
    return "".join(out) + "…"


def _is_dotgit(component: str) -> bool:
    # NTFS and HFS+ ignore trailing dots/spaces, case and some zero-width characters.
    if not component.isascii():  # format characters (Cf) are never ASCII
        component = "".join(ch for ch in component if unicodedata.category(ch) != "Cf")
    folded = component.rstrip(". ").casefold()
    return folded == ".git" or folded.startswith("git~")


def path_problem(path: str, max_length: int = 255, max_depth: int = 12) -> str | None:
    """Why a repository path is unsafe, or None when it is fine."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "name is not valid UTF-8; rename it to UTF-8"
    if path.isascii():  # the usual name, checked at C speed: ASCII is NFC, has no
        if not path.isprintable():  # bidirectional controls, and its only Cc are C0 and DEL
            return "name contains a control character; rename it"
    else:
        if unicodedata.normalize("NFC", path) != path:
            return "name is not in Unicode NFC form; rename it (NFC-normalise the name)"
        if any(unicodedata.category(ch) == "Cc" for ch in path):  # C0, DEL and C1 (8-bit CSI)
            return "name contains a control character; rename it"
        if any(ch in _BIDI for ch in path):
            return ("name contains a bidirectional-text control (it can disguise the name); "
                    "rename it")
    if "\\" in path:
        return "name contains a backslash; use forward slashes only"
    if path.startswith("/"):
        return "path is absolute; use a relative path"
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "path has an empty, '.' or '..' component; use a plain relative path"
    if any(_is_dotgit(p) for p in parts):
        return "path names .git (in some spelling); git metadata cannot be committed"
    forbidden = [p for p in parts if p.casefold() in FORBIDDEN_NAMES]
    if forbidden:
        return (f"{forbidden[0]} is not allowed (git attribute, ignore, module and mailmap files "
                "are refused); remove it")
    if len(path.encode("utf-8")) > max_length:
        return f"path is longer than {max_length} bytes; shorten it"
    if len(parts) > max_depth:
        return f"path is deeper than {max_depth} levels; flatten it"
    return None


def case_collisions(paths: list[str]) -> list[tuple[str, str]]:
    """Pairs of paths that differ only in case (they collide on macOS and Windows).

    Folders count too: ``a/B`` (a file) and ``a/b/c`` collide on ``a/B`` versus ``a/b``.
    """
    names = set(paths)
    for path in paths:
        parts = path.split("/")
        names.update("/".join(parts[:i]) for i in range(1, len(parts)))
    seen: dict[str, str] = {}
    out = []
    for path in sorted(names):
        key = unicodedata.normalize("NFC", path).casefold()
        if key in seen:
            out.append((seen[key], path))
        else:
            seen[key] = path
    return out
