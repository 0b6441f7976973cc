"""Search on SQLite: FTS5 (see migration 0002_search), bm25 ranking, snippet() passages.

The FTS5 query is built from the parsed terms, each one a quoted string, so nothing typed can be
read as FTS5 syntax. The owner is a column of the message index: `owner : "42"` makes FTS5
intersect one person's entries with the terms' instead of ranking everyone's matches.
"""

from __future__ import annotations

from conversations.search.query import Query
from conversations.search.sql import (
    RANKED_MATCHES,
    Part,
    every_title,
    message_filters,
    page_sql,
    searches_messages,
    searches_titles,
    title_filters,
)

TRIGRAM = 3  # the trigram index finds substrings of at least three characters
MARK = "char(2), char(3)"  # the private highlight markers (see highlight.py)


def fts_string(text: str) -> str:
    """An FTS5 string: a word or a phrase, tokenized like the text, never an operator."""
    return '"' + text.replace('"', '""') + '"'


def words_match(query: Query) -> str:
    """'"deploy" AND "exact phrase" NOT ("helm")', or '' without words."""
    expression = " AND ".join(fts_string(t) for t in query.words + query.phrases)
    if expression and query.excluded:
        expression += " NOT (" + " OR ".join(fts_string(t) for t in query.excluded) + ")"
    return expression


def message_match(owner_id: int, query: Query) -> str:
    owner = f'owner : "{int(owner_id)}"'
    if query.words or query.phrases:
        return f"{owner} AND content : ({words_match(query)})"
    if query.excluded:
        return f"{owner} NOT content : (" + " OR ".join(fts_string(t) for t in query.excluded) + ")"
    return owner


def hits(owner_id: int, query: Query) -> Part:
    filters = message_filters(query, "LIKE")
    joins = """
        JOIN conversations_conversation c ON c.id = m.conversation_id
        LEFT JOIN conversations_model cm ON cm.id = c.model_id"""
    long_cjk = [t for t in query.cjk if len(t) >= TRIGRAM]
    if query.has_words or not query.cjk:
        # Words, exclusions or filters alone: the word index, scoped to the owner.
        sql = f"""
            SELECT m.id AS message_id, m.conversation_id, m.id AS score
            FROM conversations_message_fts
            JOIN conversations_message m ON m.id = conversations_message_fts.rowid {joins}
            WHERE conversations_message_fts MATCH %s AND c.owner_id = %s {filters.sql}
            ORDER BY conversations_message_fts.rowid DESC LIMIT {RANKED_MATCHES}"""
        candidates = Part(sql, [message_match(owner_id, query), owner_id, *filters.params])
        return ranked(candidates, query) if query.has_words else candidates
    if long_cjk:
        # CJK substrings: trigram candidates (the LIKE filters check the shorter ones).
        sql = f"""
            SELECT m.id AS message_id, m.conversation_id, m.id AS score
            FROM conversations_message_cjk
            JOIN conversations_message m ON m.id = conversations_message_cjk.rowid {joins}
            WHERE conversations_message_cjk MATCH %s AND c.owner_id = %s {filters.sql}
            ORDER BY conversations_message_cjk.rowid DESC LIMIT {RANKED_MATCHES}"""
        match = " AND ".join(fts_string(t) for t in long_cjk)
        return Part(sql, [match, owner_id, *filters.params])
    # One or two CJK characters have no trigram: LIKE over the owner's own messages only.
    sql = f"""
        SELECT m.id AS message_id, m.conversation_id, m.id AS score
        FROM conversations_conversation c
        JOIN conversations_message m ON m.conversation_id = c.id
        LEFT JOIN conversations_model cm ON cm.id = c.model_id
        WHERE c.owner_id = %s {filters.sql}
        ORDER BY m.id DESC LIMIT {RANKED_MATCHES}"""
    return Part(sql, [owner_id, *filters.params])


def ranked(candidates: Part, query: Query) -> Part:
    """The candidates (the owner's most recent matches), each scored by bm25().

    The score is FTS5's bm25 of the candidate for the terms alone, `content : (...)` without the
    owner phrase: that phrase has weight 0.0, so it adds nothing to a score, but bm25() reads
    every phrase's whole doclist once to count its documents, and the owner's doclist is every
    message the member has (78 ms of the 80 for "python" in a history of 200,000). The scores are
    the same to the last bit. Without the owner phrase FTS5 cannot skip other members' rows, so
    it reads the terms' matches between the oldest and the newest candidate only (a rowid range),
    and bm25() is called for the candidates alone: never a lookup per candidate (each a new FTS5
    query, about 0.5 ms).
    """
    sql = f"""
        WITH candidates AS MATERIALIZED ({candidates.sql}), scores AS MATERIALIZED (
            SELECT rowid AS message_id, -bm25(conversations_message_fts, 0.0, 1.0) AS score
            FROM conversations_message_fts
            WHERE conversations_message_fts MATCH %s {_among("candidates")}
        )
        SELECT candidates.message_id, candidates.conversation_id, scores.score
        FROM candidates JOIN scores ON scores.message_id = candidates.message_id"""
    return Part(sql, [*candidates.params, f"content : ({words_match(query)})"])


def _among(rows: str) -> str:
    """Conditions keeping an FTS5 scan to the message ids in the CTE `rows`: the range they span
    (FTS5 seeks to it; 0 to -1, nothing, when there are none: FTS5 reads a NULL bound as no
    bound) and membership, checked by SQLite on each row (the + keeps the IN from being given
    to FTS5 as a lookup per id)."""
    return f"""
        AND rowid BETWEEN coalesce((SELECT min(message_id) FROM {rows}), 0)
                      AND coalesce((SELECT max(message_id) FROM {rows}), -1)
        AND +rowid IN (SELECT message_id FROM {rows})"""


def titles(owner_id: int, query: Query) -> Part:
    filters = title_filters(query, "LIKE")
    if query.has_words:
        sql = f"""
            SELECT c.id AS conversation_id, -bm25(conversations_conversation_fts) AS score
            FROM conversations_conversation_fts
            JOIN conversations_conversation c ON c.id = conversations_conversation_fts.rowid
            LEFT JOIN conversations_model cm ON cm.id = c.model_id
            WHERE conversations_conversation_fts MATCH %s AND c.owner_id = %s {filters.sql}"""
        return Part(sql, [words_match(query), owner_id, *filters.params])
    return every_title(owner_id, filters)


def page(owner_id: int, query: Query, limit: int, offset: int) -> Part:
    passages = None
    if query.has_words:
        # Marked by FTS5 for the page's rows only. A title is marked when it counted in the
        # rank (one lookup in the small title index); the passages in one scan of the terms'
        # matches over the page's messages (see ranked()).
        positive = " AND ".join(fts_string(t) for t in query.words + query.phrases)
        title_marked = Part(f"""CASE WHEN page.title_hit = 1 THEN (
            SELECT highlight(conversations_conversation_fts, 0, {MARK})
            FROM conversations_conversation_fts
            WHERE conversations_conversation_fts MATCH %s AND rowid = page.conversation_id) END""",
                            [positive])
        passage = None
        passages = Part(f"""
            SELECT rowid AS message_id, snippet(conversations_message_fts, 1, {MARK}, '…', 24) AS passage
            FROM conversations_message_fts
            WHERE conversations_message_fts MATCH %s {_among("page")}""", [f"content : ({positive})"])
    else:
        # CJK or filters only: the passage is cut around the first match in Python.
        title_marked, passage = Part("NULL"), Part("m.content")
    return page_sql(
        owner_id,
        hits(owner_id, query) if searches_messages(query) else None,
        titles(owner_id, query) if searches_titles(query) else None,
        title_marked, passage, limit, offset, passages,
    )
