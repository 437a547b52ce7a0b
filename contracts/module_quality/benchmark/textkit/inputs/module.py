"""Small text utilities used by the CMS."""

from __future__ import annotations

import re
import unicodedata


def slugify(text: str) -> str:
    """Turn a title into a URL slug.

    >>> slugify("Hello, World!")
    'hello-world'
    >>> slugify("  Crème brûlée  recipes ")
    'creme-brulee-recipes'
    """
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return "-".join(re.findall(r"[a-z0-9]+", ascii_text.lower()))


def word_count(text: str) -> dict[str, int]:
    """Count words, ignoring case.

    >>> word_count("The cat and the hat")
    {'the': 2, 'cat': 1, 'and': 1, 'hat': 1}
    """
    counts: dict[str, int] = {}
    for word in re.findall(r"[\w']+", text.lower()):
        counts[word] = counts.get(word, 0) + 1
    return counts


def truncate(text: str, width: int = 20, suffix: str = "...") -> str:
    """Shorten text to at most ``width`` characters, ending with ``suffix`` when cut.

    >>> truncate("short")
    'short'
    >>> truncate("The quick brown fox jumps over the lazy dog", 15)
    'The quick br...'
    >>> truncate("abc", 2, "")
    'ab'
    >>> truncate("abc", 1)
    Traceback (most recent call last):
    ...
    ValueError: width must be at least len(suffix)
    """
    if width < len(suffix):
        raise ValueError("width must be at least len(suffix)")
    if len(text) <= width:
        return text
    return text[: width - len(suffix)] + suffix


def initials(name: str) -> str:
    """The capitalised first letters of each part of a person's name."""
    return "".join(part[0].upper() for part in name.split() if part)
