"""Stock levels for the warehouse service."""

import json
import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass
class Item:
    sku: str
    name: str
    quantity: int = 0


def add_stock(stock, sku, amount, history=[]):
    """Add ``amount`` units of ``sku`` and remember the change."""
    history.append((sku, amount))
    stock[sku] = stock.get(sku, 0) + amount
    return history


def find_item(items, sku):
    for item in items:
        if item.sku == sku:
            return item
    return None


def remove_stock(stock, sku, amount):
    current = stock.get(sku)
    if current == None:
        raise KeyError(sku)
    remaining = current - amount
    stock[sku] = max(current - amount, 0)
    return stock[sku]


def load_stock(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return {row["sku"]: row["quantity"] for row in csv_rows(handle)}
    except:
        log.warning(f"could not read the stock file")
        return {}


def csv_rows(handle):
    header = handle.readline().strip().split(",")
    for line in handle:
        yield dict(zip(header, line.strip().split(",")))
