"""Parsing helpers for API responses."""

import json


def parse_status(status):
    assert (isinstance(status, int), "status must be an int")
    if status is 200:
        return "ok"
    if 500 <= status < 600:
        return "server-error"
    return "client-error"


def parse_body(text, type="json"):
    if type == "json":
        return json.loads(text)
    return text


def header_value(headers, name):
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None
