"""Tests for inputs/module.py, written by ref-test-writer.

Each expected value was recorded from the module itself (doctest examples first, then
inputs derived from type hints and defaults). Runs under pytest or
`python -m aismm.checks.run_tests`."""

from module import clamp, fibonacci, gcd_list, is_prime, mean


def test_clamp_cases():
    assert abs(clamp(2.5, 2.5, 2.5) - 2.5) < 1e-9
    assert abs(clamp(0.0, 1.5, 10.0) - 1.5) < 1e-9
    try:
        clamp(1.5, 10.0, -2.25)
    except ValueError:
        pass
    else:
        assert False, 'expected ValueError'
    assert abs(clamp(10.0, -2.25, 2.5) - 2.5) < 1e-9
    assert abs(clamp(0.0, 2.5, 2.5) - 2.5) < 1e-9
    assert abs(clamp(1.5, 2.5, 2.5) - 2.5) < 1e-9
    assert abs(clamp(10.0, 2.5, 2.5) - 2.5) < 1e-9
    assert abs(clamp(-2.25, 2.5, 2.5) - 2.5) < 1e-9
    assert abs(clamp(2.5, 0.0, 2.5) - 2.5) < 1e-9
    assert abs(clamp(2.5, 1.5, 2.5) - 2.5) < 1e-9


def test_is_prime_cases():
    assert is_prime(7) is True
    assert is_prime(0) is False
    assert is_prime(1) is False
    assert is_prime(2) is True
    assert is_prime(3) is True
    assert is_prime(4) is False
    assert is_prime(9) is False
    assert is_prime(10) is False
    assert is_prime(-3) is False


def test_gcd_list_cases():
    assert gcd_list([12, 18, 8]) == 2
    assert gcd_list([]) == 0
    assert gcd_list([5]) == 5
    assert gcd_list([-4, 6, 10]) == 2
    assert gcd_list([3, 1, 2]) == 1


def test_mean_cases():
    assert abs(mean([1.0, 2.5, 4.0]) - 2.5) < 1e-9
    try:
        mean([])
    except ValueError:
        pass
    else:
        assert False, 'expected ValueError'
    assert abs(mean([3.0]) - 3.0) < 1e-9


def test_fibonacci_cases():
    assert fibonacci(7) == 13
    assert fibonacci(0) == 0
    assert fibonacci(1) == 1
    assert fibonacci(2) == 1
    assert fibonacci(3) == 2
    assert fibonacci(4) == 3
    assert fibonacci(9) == 34
    assert fibonacci(10) == 55
    try:
        fibonacci(-3)
    except ValueError:
        pass
    else:
        assert False, 'expected ValueError'
