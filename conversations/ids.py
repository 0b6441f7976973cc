"""Ids as clients send them (a websocket frame, a form, a query string): text to be checked."""

from __future__ import annotations

MAX_ID = 2**63 - 1  # ids are 64-bit: a longer number is no row's, and must not reach the database


def parse_id(value) -> int | None:
    """The whole number `value` spells (ASCII digits only), or None: nothing else, and nothing that
    would overflow a 64-bit column, is ever used as an id."""
    text = str(value if value is not None else "").strip()
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(MAX_ID)):
        return None
    number = int(text)
    return number if number <= MAX_ID else None
