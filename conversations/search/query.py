"""The search box's little language, parsed into terms and filters.

    deploy kubernetes "exact phrase" -helm model:gpt role:user before:2025-01-31 after:2024-12-31 in:title

Words must all match (stemmed for English), quoted phrases match as written, `-word` excludes.
Chinese, Japanese and Korean runs become substring terms: word tokenizers keep a whole run of
CJK characters as one token, so they are matched by trigrams / LIKE instead.

The parser never fails: whatever is typed becomes terms, filters or notices. The backends build
their own query syntax from these parts, quoting each term, and never see the raw input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.utils import timezone

MAX_QUERY_CHARS = 500
MAX_TERMS = 16

# Hiragana, Katakana, CJK ideographs (and extension A, compatibility), Hangul syllables. The
# same ranges are spelled in the migration (SQLite GLOB, PostgreSQL regex): keep them in step.
CJK_CLASS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
CJK_RUN = re.compile(f"[{CJK_CLASS}]+")
_WORDISH = re.compile(r"\w")  # a term with no letter or digit tokenizes to nothing: dropped
_TOKEN = re.compile(r'(-?)"([^"]*)(?:"|$)|(\S+)')
# Control characters: FTS5 strings end at NUL, and \x02/\x03 are the highlight markers.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_FILTER = re.compile(r"^(model|role|before|after|in):(.*)$", re.IGNORECASE)
ROLES = ("user", "assistant")


@dataclass
class Query:
    words: list[str] = field(default_factory=list)  # each must match, stemmed
    phrases: list[str] = field(default_factory=list)  # each must match as a phrase
    excluded: list[str] = field(default_factory=list)  # words or phrases that must not match
    cjk: list[str] = field(default_factory=list)  # CJK substrings that must appear
    cjk_excluded: list[str] = field(default_factory=list)
    model: str = ""
    role: str = ""
    before: datetime | None = None  # created strictly before this instant
    after: datetime | None = None  # created at or after this instant (the day after the one typed)
    in_title: bool = False
    notices: list[str] = field(default_factory=list)  # what was ignored, and why

    @property
    def has_text(self) -> bool:
        """Something to look for, as opposed to only filters or exclusions."""
        return bool(self.words or self.phrases or self.cjk)

    @property
    def has_words(self) -> bool:
        """Terms for the word index (as opposed to CJK substrings only)."""
        return bool(self.words or self.phrases)

    @property
    def is_empty(self) -> bool:
        return not (self.has_text or self.excluded or self.cjk_excluded or self.model or self.role
                    or self.before or self.after)

    @property
    def highlight_terms(self) -> list[str]:
        """The substrings to mark in passages that the database did not mark (CJK)."""
        return self.cjk


def parse(text: str) -> Query:
    query = Query()
    count = 0
    text = _CONTROL.sub(" ", (text or "")[:MAX_QUERY_CHARS])
    for match in _TOKEN.finditer(text):
        if count >= MAX_TERMS:
            query.notices.append(f"Only the first {MAX_TERMS} terms are used.")
            break
        negated, quoted, bare = match.group(1) == "-", match.group(2), match.group(3)
        if quoted is not None:
            count += _add_phrase(query, quoted, negated)
            continue
        negated = bare.startswith("-")
        bare = bare.lstrip("-").replace('"', "")
        if (found := _FILTER.match(bare)) and found.group(2):
            if negated:
                query.notices.append(f"Ignored “-{bare}”: filters cannot be negated.")
            else:
                _add_filter(query, found.group(1).lower(), found.group(2))
            continue
        count += _add_word(query, bare, negated)
    return query


def _add_phrase(query: Query, phrase: str, negated: bool) -> int:
    phrase = " ".join(phrase.split())
    if CJK_RUN.search(phrase):
        # A quoted phrase with CJK in it is matched as written, as a substring.
        (query.cjk_excluded if negated else query.cjk).append(phrase)
        return 1
    if not _WORDISH.search(phrase):
        return 0
    (query.excluded if negated else query.phrases).append(phrase)
    return 1


def _add_word(query: Query, word: str, negated: bool) -> int:
    # "Python教程" is two terms: a word for the word index and a CJK run for substrings.
    added = 0
    for run in CJK_RUN.findall(word):
        (query.cjk_excluded if negated else query.cjk).append(run)
        added += 1
    for part in CJK_RUN.split(word):
        if _WORDISH.search(part):
            (query.excluded if negated else query.words).append(part)
            added += 1
    return added


def _add_filter(query: Query, name: str, value: str) -> None:
    if name == "model":
        query.model = value
    elif name == "role":
        if value.lower() in ROLES:
            query.role = value.lower()
        else:
            query.notices.append(f"Ignored “role:{value}”: use role:user or role:assistant.")
    elif name == "in":
        if value.lower() == "title":
            query.in_title = True
        else:
            query.notices.append(f"Ignored “in:{value}”: only in:title is known.")
    else:
        day = _date(value)
        if day is None:
            query.notices.append(f"Ignored “{name}:{value}”: dates are written YYYY-MM-DD.")
        elif name == "before":
            query.before = _start_of(day)
        else:
            query.after = _start_of(day + timedelta(days=1))


def _date(value: str) -> date | None:
    # Years far out would overflow once shifted a day or into UTC; nobody's history is there.
    if not re.fullmatch(r"(19|2\d)\d\d-\d\d-\d\d", value):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def _start_of(day: date) -> datetime:
    """Midnight in the site's time zone: what a person means by a date."""
    return timezone.make_aware(datetime.combine(day, time.min))
