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
        return ranked(owner_id, candidates, query) if query.has_words else candidates
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


def ranked(owner_id: int, candidates: Part, query: Query) -> Part:
    """The candidates (the owner's most recent matches), each scored by bm25().

    The candidates are found first, without bm25(): bm25() reads each phrase's whole doclist
    once to count its documents, and the owner phrase's doclist is every message the member
    has. Then one FTS5 scan over them scores them (see over()).
    """
    scores = over("candidates", "rowid AS message_id, -bm25(conversations_message_fts, 0.0, 1.0) AS score",
                  owner_id, words_match(query))
    sql = f"""
        WITH candidates AS MATERIALIZED ({candidates.sql}), scores AS MATERIALIZED ({scores.sql})
        SELECT candidates.message_id, candidates.conversation_id, scores.score
        FROM candidates JOIN scores ON scores.message_id = candidates.message_id"""
    return Part(sql, [*candidates.params, *scores.params])


SAMPLES = 32  # messages looked at to tell a member's share of a span of message ids


def over(rows: str, columns: str, owner_id: int, content: str) -> Part:
    """SELECT `columns` (bm25(), snippet()) from one FTS5 scan of `content : (content)` over the
    messages whose ids are in the CTE `rows` (message_id): the owner's matches.

    FTS5 reads the range of ids they span (0 to -1, nothing, when there are none: it takes a
    NULL bound as none), and SQLite keeps the rows in `rows` (the + keeps that IN from being
    given to FTS5 as a lookup per id, each a new FTS5 query of about 0.5 ms). In that range,
    when most messages are the owner's (a long history), the terms alone are matched: the
    owner phrase would make bm25() read the member's whole doclist (16 of 33 ms for "python" in
    a history of 200,000) for a phrase of weight 0.0, which adds nothing to a score. When they
    are mostly other members' (a shorter history, spread among everyone's), the owner phrase
    stays, so that FTS5 skips their rows. bm25() and snippet() give the same either way: the
    owner phrase has no hits in the content column. The share is that of SAMPLES messages
    spread evenly over the range (a primary key lookup each).
    """
    sql = f"""
        WITH RECURSIVE span AS MATERIALIZED (
            SELECT coalesce(min(message_id), 0) AS lo, coalesce(max(message_id), -1) AS hi
            FROM {rows}
        ), sample(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM sample WHERE i < {SAMPLES - 1}),
        mine AS MATERIALIZED (
            -- A subquery per sample, not a join: for a join SQLite may build a Bloom filter
            -- of a whole table first (3 ms for the conversations, 100 for the messages).
            SELECT count(*) AS n FROM span CROSS JOIN sample WHERE (
                SELECT c.owner_id FROM conversations_message m
                JOIN conversations_conversation c ON c.id = m.conversation_id
                WHERE m.id = span.lo + (span.hi - span.lo) * sample.i / {SAMPLES - 1}) = %s
        )
        SELECT {columns} FROM conversations_message_fts
        WHERE conversations_message_fts MATCH
                CASE WHEN (SELECT n FROM mine) * 2 >= {SAMPLES} THEN %s ELSE %s END
            AND rowid BETWEEN (SELECT lo FROM span) AND (SELECT hi FROM span)
            AND +rowid IN (SELECT message_id FROM {rows})"""
    return Part(sql, [owner_id, f"content : ({content})",
                      f'owner : "{int(owner_id)}" AND content : ({content})'])


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
        # rank (one lookup in the small title index); the passages in one FTS5 scan over the
        # page's messages (see over()).
        positive = " AND ".join(fts_string(t) for t in query.words + query.phrases)
        title_marked = Part(f"""CASE WHEN page.title_hit = 1 THEN (
            SELECT highlight(conversations_conversation_fts, 0, {MARK})
            FROM conversations_conversation_fts
            WHERE conversations_conversation_fts MATCH %s AND rowid = page.conversation_id) END""",
                            [positive])
        passage = None
        passages = over("page", f"rowid AS message_id, snippet(conversations_message_fts, 1, {MARK}, '…', 24) AS passage",
                        owner_id, positive)
    else:
        # CJK or filters only: the passage is cut around the first match in Python.
        title_marked, passage = Part("NULL"), Part("m.content")
    return page_sql(
        owner_id,
        hits(owner_id, query) if searches_messages(query) else None,
        titles(owner_id, query) if searches_titles(query) else None,
        title_marked, passage, limit, offset, passages,
    )
