"""Smoke tests for inputs/module.py."""

from module import clamp, fibonacci, gcd_list, is_prime, mean


def test_clamp_runs():
    clamp(5.0, 0.0, 10.0) + 0


def test_is_prime_runs():
    is_prime(7) + 0


def test_gcd_list_runs():
    gcd_list([12, 18]) + 0


def test_mean_runs():
    mean([1.0, 2.0]) + 0


def test_fibonacci_runs():
    fibonacci(7) + 0
