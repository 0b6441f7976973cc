"""The SQL both backends share: filters, and grouping matching messages into ranked conversations.

A backend supplies two SELECTs: `hits` (message_id, conversation_id, score) for the owner's
matching messages and `titles` (conversation_id, score) for the owner's matching titles, where a
higher score is better; the conversation's score is its best message's plus its title's. It also
supplies what marks the title and the passage for the page's rows only, so a passage is computed
20 times, not once per match: an expression per row, or a SELECT over the CTE `page` that marks
all of the page's passages at once (`passages`: message_id, passage).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from conversations.search.query import Query

# A message search ranks the owner's most recent matches, at most this many (both backends): a
# common word can match tens of thousands of messages in a long history, and ranking reads each.
# Beyond them, results would be older and lower-ranked pages that nobody reaches.
RANKED_MATCHES = 1000


@dataclass
class Part:
    """A piece of SQL and its parameters, in order."""

    sql: str
    params: list = field(default_factory=list)


def like_pattern(text: str) -> str:
    """A LIKE pattern for a substring typed by a user: % and _ are literal."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def message_filters(query: Query, like: str) -> Part:
    """The filters on a matching message `m` (its conversation is `c`, their model `cm`)."""
    part = Part("")
    if query.role:
        _and(part, "m.role = %s", query.role)
    if query.model:
        # The model that wrote the message, or the conversation's: user messages have none.
        _and(part, f"(m.model {like} %s ESCAPE '\\' OR cm.name {like} %s ESCAPE '\\')",
             like_pattern(query.model), like_pattern(query.model))
    if query.before:
        _and(part, "m.created_at < %s", query.before)
    if query.after:
        _and(part, "m.created_at >= %s", query.after)
    for term in query.cjk:
        _and(part, f"m.content {_like(like, term)} %s ESCAPE '\\'", like_pattern(term))
    for term in query.cjk_excluded:
        _and(part, f"m.content NOT {_like(like, term)} %s ESCAPE '\\'", like_pattern(term))
    return part


def title_filters(query: Query, like: str) -> Part:
    """The same filters for a conversation `c` matched by its title."""
    part = Part("")
    if query.model:
        _and(part, f"cm.name {like} %s ESCAPE '\\'", like_pattern(query.model))
    if query.before:
        _and(part, "c.created_at < %s", query.before)
    if query.after:
        _and(part, "c.created_at >= %s", query.after)
    for term in query.cjk:
        _and(part, f"c.title {_like(like, term)} %s ESCAPE '\\'", like_pattern(term))
    for term in query.cjk_excluded:
        _and(part, f"c.title NOT {_like(like, term)} %s ESCAPE '\\'", like_pattern(term))
    return part


def _like(like: str, term: str) -> str:
    """LIKE for a term without upper/lower case (CJK): PostgreSQL's ILIKE lowercases every row."""
    return like if term.lower() != term.upper() else "LIKE"


def _and(part: Part, sql: str, *params) -> None:
    part.sql += f" AND {sql}"
    part.params.extend(params)


def searches_messages(query: Query) -> bool:
    return not query.in_title


def searches_titles(query: Query) -> bool:
    """Titles have no role, and a title alone cannot satisfy "everything except X"."""
    return query.has_text and not query.role


def page_sql(owner_id: int, hits: Part | None, titles: Part | None, title_marked: Part,
             passage: Part | None, limit: int, offset: int, passages: Part | None = None) -> Part:
    """The page of conversations: each with its best message, best first.

    `title_marked` and `passage` are expressions over a page row (`page`, `c`, `m`); `passages`,
    instead of `passage`, a SELECT of (message_id, passage) that may read `page`.
    """
    # MATERIALIZED: each branch runs as written. SQLite cannot call bm25() once its SELECT
    # is flattened into the grouping query, and PostgreSQL gains nothing from inlining them.
    ctes, branches, params = [], [], []
    if hits:
        ctes.append(f"hits AS MATERIALIZED ({hits.sql})")
        branches.append("""
            SELECT conversation_id, message_id, score, 0 AS title_hit FROM (
                SELECT conversation_id, message_id, score, row_number() OVER (
                    PARTITION BY conversation_id ORDER BY score DESC, message_id DESC) AS n
                FROM hits
            ) ranked WHERE n = 1""")
        params += hits.params
    if titles:
        ctes.append(f"titles AS MATERIALIZED ({titles.sql})")
        branches.append("""
            SELECT conversation_id, CAST(NULL AS bigint) AS message_id, score, 1 AS title_hit
            FROM titles""")
        params += titles.params
    sql = f"""
        WITH {", ".join(ctes)}, found AS (
            SELECT conversation_id, max(message_id) AS message_id, sum(score) AS score,
                   max(title_hit) AS title_hit
            FROM ({" UNION ALL ".join(branches)}) branches
            GROUP BY conversation_id
        ), page AS MATERIALIZED (
            SELECT * FROM found ORDER BY score DESC, conversation_id DESC LIMIT %s OFFSET %s
        ){f", passages AS MATERIALIZED ({passages.sql})" if passages else ""}
        SELECT page.conversation_id, page.message_id, c.title, {title_marked.sql},
               m.role, m.model, cm.name, m.created_at, c.updated_at,
               {"passages.passage" if passages else passage.sql}
        FROM page
        JOIN conversations_conversation c ON c.id = page.conversation_id AND c.owner_id = %s
        LEFT JOIN conversations_message m ON m.id = page.message_id
        LEFT JOIN conversations_model cm ON cm.id = c.model_id
        {"LEFT JOIN passages ON passages.message_id = page.message_id" if passages else ""}
        ORDER BY page.score DESC, page.conversation_id DESC
    """
    params += [limit, offset] + (passages.params if passages else [])
    return Part(sql, params + title_marked.params + ([] if passages else passage.params) + [owner_id])


# The columns of page_sql's rows, in order.
COLUMNS = ("conversation_id", "message_id", "title", "title_marked", "role", "message_model",
           "conversation_model", "message_created_at", "conversation_updated_at", "passage")


def every_title(owner_id: int, filters: Part) -> Part:
    """The owner's conversations, unranked: a search by filters alone (no words), same on both backends."""
    sql = f"""
        SELECT c.id AS conversation_id, 0 AS score
        FROM conversations_conversation c LEFT JOIN conversations_model cm ON cm.id = c.model_id
        WHERE c.owner_id = %s {filters.sql}"""
    return Part(sql, [owner_id, *filters.params])
