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
        score = "-bm25(conversations_message_fts, 0.0, 1.0)" if query.has_words else "m.id"
        sql = f"""
            SELECT m.id AS message_id, m.conversation_id, {score} AS score
            FROM conversations_message_fts
            JOIN conversations_message m ON m.id = conversations_message_fts.rowid {joins}
            WHERE conversations_message_fts MATCH %s AND c.owner_id = %s {filters.sql}
            ORDER BY conversations_message_fts.rowid DESC LIMIT {RANKED_MATCHES}"""
        return Part(sql, [message_match(owner_id, query), owner_id, *filters.params])
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
    if query.has_words:
        # Marked by FTS5 for the page's rows only: a MATCH on one rowid is a lookup.
        positive = " AND ".join(fts_string(t) for t in query.words + query.phrases)
        title_marked = Part(f"""(SELECT highlight(conversations_conversation_fts, 0, {MARK})
            FROM conversations_conversation_fts
            WHERE conversations_conversation_fts MATCH %s AND rowid = page.conversation_id)""",
                            [positive])
        passage = Part(f"""(SELECT snippet(conversations_message_fts, 1, {MARK}, '…', 24)
            FROM conversations_message_fts
            WHERE conversations_message_fts MATCH %s AND rowid = page.message_id)""",
                       [f"content : ({positive})"])
    else:
        # CJK or filters only: the passage is cut around the first match in Python.
        title_marked, passage = Part("NULL"), Part("m.content")
    return page_sql(
        owner_id,
        hits(owner_id, query) if searches_messages(query) else None,
        titles(owner_id, query) if searches_titles(query) else None,
        title_marked, passage, limit, offset,
    )
