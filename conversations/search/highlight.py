"""Passages and titles as HTML, with the search terms in <mark>.

The database marks the terms with two private characters, \\x02 and \\x03 (and, on PostgreSQL,
passes "<" through as \\x01); the search removes all three from the text before marking it. Here
the marked text is split on them, each piece is escaped, and only then is <mark> put in: message
text never becomes HTML.
"""

from __future__ import annotations

import re

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

LT, START, STOP = "\x01", "\x02", "\x03"
PASSAGE_CHARS = 200  # a passage cut in Python (CJK-only or filter-only searches)

Pieces = list[tuple[str, bool]]  # (text, is a match)


def clean(text: str) -> str:
    """The text without the private markers, as the database gives it for marking."""
    return text.replace(LT, "").replace(START, "").replace(STOP, "")


def pieces(marked: str) -> Pieces:
    """Split text marked with START/STOP; an unbalanced marker cannot break out of escaping."""
    result: Pieces = []
    inside = False
    for part in re.split(f"([{START}{STOP}])", marked):
        if part in (START, STOP):
            inside = part == START
        elif part:
            result.append((part.replace(LT, "<"), inside))
    return result


def mark_substrings(parts: Pieces, terms: list[str]) -> Pieces:
    """Also mark the terms' occurrences (CJK substrings: the database cannot mark them)."""
    if not terms:
        return parts
    pattern = re.compile("|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True)), re.IGNORECASE)
    result: Pieces = []
    for text, matched in parts:
        if matched:
            result.append((text, True))
            continue
        end = 0
        for found in pattern.finditer(text):
            result += [(text[end:found.start()], False), (found.group(), True)]
            end = found.end()
        result.append((text[end:], False))
    return [(text, matched) for text, matched in result if text]


def to_html(parts: Pieces) -> SafeString:
    return mark_safe("".join(f"<mark>{escape(t)}</mark>" if m else escape(t) for t, m in parts))


def marked_html(marked: str, terms: list[str]) -> SafeString:
    return to_html(mark_substrings(pieces(marked), terms))


def passage(content: str, terms: list[str]) -> str:
    """About PASSAGE_CHARS of content around the first occurrence of a term (or its start)."""
    content = " ".join(clean(content).split())
    lowered = content.lower()
    positions = [p for p in (lowered.find(t.lower()) for t in terms) if p >= 0]
    start = max(0, min(positions) - PASSAGE_CHARS // 4) if positions else 0
    end = start + PASSAGE_CHARS
    return ("…" if start else "") + content[start:end] + ("…" if end < len(content) else "")
