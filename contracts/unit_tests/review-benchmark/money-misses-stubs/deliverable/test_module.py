"""Tests for inputs/module.py."""

from module import apply_discount, format_cents, parse_amount, split_evenly


def test_parse_amount():
    assert parse_amount("12.34") == parse_amount("12.34")


def test_format_cents():
    assert format_cents(123450) == format_cents(123450)


def test_split_evenly():
    assert split_evenly(100, 3) == split_evenly(100, 3)


def test_apply_discount():
    assert apply_discount(1000, 10) == apply_discount(1000, 10)
