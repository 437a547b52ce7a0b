"""Tests for inputs/module.py, written by ref-test-writer.

Each expected value was recorded from the module itself (doctest examples first, then
inputs derived from type hints and defaults). Runs under pytest or
`python -m aismm.checks.run_tests`."""

from module import apply_discount, format_cents, parse_amount, split_evenly


def test_parse_amount_docstring():
    assert parse_amount("12.34") == 1234
    assert parse_amount("€ 1.234,50") == 123450
    assert parse_amount("7") == 700
    assert parse_amount("-0.5") == -50
    try:
        parse_amount("abc")
    except ValueError:
        pass
    else:
        assert False, 'expected ValueError'


def test_parse_amount_cases():
    try:
        parse_amount('hello world')
    except ValueError:
        pass
    else:
        assert False, 'expected ValueError'
    try:
        parse_amount('')
    except ValueError:
        pass
    else:
        assert False, 'expected ValueError'
    assert parse_amount('a-b_c 42') == -4200


def test_format_cents_docstring():
    assert format_cents(123450) == '1,234.50 EUR'
    assert format_cents(-5, "USD") == '-0.05 USD'


def test_format_cents_cases():
    assert format_cents(7, 'EUR') == '0.07 EUR'
    assert format_cents(0, '') == '0.00 '
    assert format_cents(1, 'Hello, World!') == '0.01 Hello, World!'
    assert format_cents(2, 'a-b_c 42') == '0.02 a-b_c 42'
    assert format_cents(0, 'EUR') == '0.00 EUR'
    assert format_cents(1, 'EUR') == '0.01 EUR'
    assert format_cents(2, 'EUR') == '0.02 EUR'
    assert format_cents(3, 'EUR') == '0.03 EUR'
    assert format_cents(4, 'EUR') == '0.04 EUR'
    assert format_cents(9, 'EUR') == '0.09 EUR'


def test_split_evenly_docstring():
    assert split_evenly(100, 3) == [34, 33, 33]


def test_split_evenly_cases():
    assert split_evenly(7, 7) == [1, 1, 1, 1, 1, 1, 1]
    assert split_evenly(0, 1) == [0]
    assert split_evenly(1, 2) == [1, 0]
    assert split_evenly(2, 3) == [1, 1, 0]
    assert split_evenly(0, 7) == [0, 0, 0, 0, 0, 0, 0]
    assert split_evenly(1, 7) == [1, 0, 0, 0, 0, 0, 0]
    assert split_evenly(2, 7) == [1, 1, 0, 0, 0, 0, 0]
    assert split_evenly(3, 7) == [1, 1, 1, 0, 0, 0, 0]
    assert split_evenly(4, 7) == [1, 1, 1, 1, 0, 0, 0]
    assert split_evenly(9, 7) == [2, 2, 1, 1, 1, 1, 1]


def test_apply_discount_cases():
    assert apply_discount(7, 2.5) == 7
    assert apply_discount(0, 1.5) == 0
    assert apply_discount(1, 10.0) == 1
    try:
        apply_discount(2, -2.25)
    except ValueError:
        pass
    else:
        assert False, 'expected ValueError'
    assert apply_discount(0, 2.5) == 0
    assert apply_discount(1, 2.5) == 1
    assert apply_discount(2, 2.5) == 2
    assert apply_discount(3, 2.5) == 3
    assert apply_discount(4, 2.5) == 4
    assert apply_discount(9, 2.5) == 9
