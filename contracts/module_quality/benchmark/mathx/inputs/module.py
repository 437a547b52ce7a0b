"""Numeric helpers shared by the pricing and analytics jobs."""

import math


def clamp(x: float, lo: float, hi: float) -> float:
    """Limit ``x`` to the closed interval [lo, hi]."""
    if lo > hi:
        raise ValueError("lo must not exceed hi")
    return max(lo, min(x, hi))


def is_prime(n: int) -> bool:
    """Whether ``n`` is a prime number."""
    if n < 2:
        return False
    return all(n % d for d in range(2, math.isqrt(n) + 1))


def gcd_list(values: list[int]) -> int:
    """Greatest common divisor of all values (0 for no values)."""
    result = 0
    for value in values:
        result = math.gcd(result, value)
    return result


def mean(values: list[float]) -> float:
    """Arithmetic mean; refuses an empty list."""
    if not values:
        raise ValueError("mean of an empty list")
    return sum(values) / len(values)


def fibonacci(n: int) -> int:
    """The n-th Fibonacci number, with fibonacci(0) == 0 and fibonacci(1) == 1."""
    if n < 0:
        raise ValueError("n must be non-negative")
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def _cache_key(*parts: object) -> str:
    return "/".join(map(str, parts))
