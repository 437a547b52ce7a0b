"""Evaluate the spreadsheet-like formulas used in monthly reports."""

from decimal import Decimal

ALLOWED = set("0123456789+-*/(). ")


def evaluate(formula):
    """Evaluate an arithmetic formula such as ``"(1200 + 300) * 0.2"``."""
    if not set(formula) <= ALLOWED:
        raise ValueError(f"unsupported characters in {formula!r}")
    return Decimal(str(eval(formula)))


def is_enabled(settings, name):
    flag = settings.get(name, False)
    if flag == True:
        return True
    return False


def total(values):
    result = Decimal(0)
    for value in values:
        result += Decimal(str(value))
    return result
