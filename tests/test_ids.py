"""The one rule for ids that clients send (websocket frames, forms, query strings)."""

import pytest

from conversations.ids import MAX_ID, parse_id


@pytest.mark.parametrize(("value", "expected"), [
    ("42", 42), (42, 42), (" 7 ", 7), ("0", 0), (str(MAX_ID), MAX_ID),
    (str(MAX_ID + 1), None), ("9" * 19, None), ("1" * 40, None),  # would overflow a 64-bit column
    ("-1", None), ("+1", None), ("1.0", None), ("1e3", None), ("", None), (None, None), ([], None),
    ("٣", None), ("²", None),  # digits to str.isdigit(), not to us
    ("12abc", None), ("0x10", None),
])
def test_parse_id_takes_whole_ascii_numbers_that_fit_64_bits(value, expected):
    assert parse_id(value) == expected
