"""Money limits: tokens are whole numbers, bounded far below SQLite's 64-bit integers.

See "Money limits" in docs/protocol.md.
"""

from __future__ import annotations

__all__ = ["MAX_AMOUNT", "MAX_BALANCE"]

MAX_AMOUNT = 10**15  # the largest amount a caller may give, in tokens
MAX_BALANCE = 10**18  # the largest balance (and the most ever issued), in tokens
