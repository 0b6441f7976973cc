"""Search on PostgreSQL: tsvector + GIN, websearch_to_tsquery, ts_rank_cd, ts_headline, pg_trgm.

The websearch query is rebuilt from the parsed terms, each one quoted, so a word like "or" or a
stray "-" stays a word. The indexes (migration 0002_search) lead with the owner's id: GIN reads
one person's matches rather than everyone's.
"""

from __future__ import annotations

from conversations.search.query import CJK_CLASS, Query
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

TSQUERY = "websearch_to_tsquery('english', %s)"
# The partial trigram index's predicate, written exactly as in the migration so the planner can
# use that index for CJK substrings.
HAS_CJK = f"m.content ~ '[{CJK_CLASS}]'"
MARKERS = "StartSel=\x02, StopSel=\x03"  # the private highlight markers (see highlight.py)
PASSAGE = f"{MARKERS}, MaxWords=35, MinWords=15"
HEADLINE_CHARS = 4000
# ts_headline drops whatever its parser takes for an HTML tag, so "<" goes through it as \x01
# (highlight.py puts it back); the private characters already in the text are removed.
PRIVATE = "translate({}, E'<\\x01\\x02\\x03', E'\\x01')"


def websearch(query: Query, *, negated: bool = True) -> str:
    """'"deploy" "exact phrase" -"helm"': every term quoted, so none is read as an operator."""
    terms = [_quoted(t) for t in query.words + query.phrases]
    if negated:
        terms += ["-" + _quoted(t) for t in query.excluded]
    return " ".join(terms)


def _quoted(term: str) -> str:
    return '"' + term.replace('"', " ") + '"'  # the parser leaves no quote in a term; be sure


def hits(owner_id: int, query: Query) -> Part:
    filters = message_filters(query, "ILIKE")
    # The cast makes the owner an index key: btree_gin has no int4 = int8 operator.
    owner = "m.search_owner_id = %s::bigint"
    score, score_params = "message_id", []
    if query.has_words:
        # Cover density, divided by 1 + log(length): more matches and closer ones rank higher
        # without long messages winning by length alone (plain ts_rank ranks "a pear" above
        # "pear, pear, the best pear").
        score, score_params = f"ts_rank_cd(vector, {TSQUERY}, 1)", [websearch(query)]
    # The conversation (and its model) only for a model: filter. The owner is search_owner_id,
    # which the triggers keep (the index relies on it too), and the page's join checks it
    # again; joining every match's conversation cost a hash of all of a member's
    # conversations (18 ms of 128 for "server error query" in a history of 1,000,000).
    joins = """
            JOIN conversations_conversation c ON c.id = m.conversation_id
            LEFT JOIN conversations_model cm ON cm.id = c.model_id""" if query.model else ""
    # The owner's messages newest first, filtered: an index on (search_owner_id, id DESC).
    latest = Part(f"""
        SELECT m.id AS message_id, m.conversation_id, m.search_vector AS vector
        FROM conversations_message m {joins}
        WHERE {owner} {filters.sql} ORDER BY m.id DESC""", [owner_id, *filters.params])
    if not (query.has_words or query.excluded):
        # CJK or filters alone: the trigram index (HAS_CJK lets the planner use it), or the
        # owner's newest messages.
        if query.cjk:
            latest.sql = latest.sql.replace(owner, f"{owner} AND {HAS_CJK}")
        return Part(f"""SELECT message_id, conversation_id, {score} AS score
            FROM ({latest.sql} LIMIT {RANKED_MATCHES}) recent""", latest.params)
    matches = Part(f"""
        SELECT m.id AS message_id, m.conversation_id, m.search_vector AS vector
        FROM conversations_message m {joins}
        WHERE {owner} AND m.search_vector @@ {TSQUERY} {filters.sql}
        ORDER BY m.id DESC LIMIT {RANKED_MATCHES}""", [owner_id, websearch(query), *filters.params])
    return _recent_matches(latest, matches, websearch(query), score, score_params)


# The newest matches are first looked for among the owner's newest RECENT_WINDOW messages when
# at least 1 in RECENT_WINDOW / RANKED_MATCHES of the newest PROBE match (see _recent_matches).
RECENT_WINDOW = 20_000
PROBE = 2_000


def _recent_matches(latest: Part, matches: Part, tsquery: str, score: str, score_params: list) -> Part:
    """The owner's RANKED_MATCHES most recent matches, scored (reading a tsvector to rank it is
    the cost that grows with a long history: a common word matches tens of thousands).

    `matches` asks GIN for all of the owner's matches and keeps the newest: fast for rarer
    words, but for a common word in a long history it fetches and sorts every match (a phrase
    in 6.5 % of 1,000,000 messages: 780 ms). So where the word is common, `newest` reads the
    owner's messages newest first instead (`latest`), until RANKED_MATCHES match, at most
    RECENT_WINDOW of them (about 1 µs each): the phrase, 30 ms. Common means enough matches
    among the newest PROBE; where it is not, or RECENT_WINDOW was read without enough, GIN is
    asked. Both ways give the same rows. (A query of stop words only matches nothing.)
    """
    sql = f"""
        WITH newest AS MATERIALIZED (
            SELECT * FROM ({latest.sql} LIMIT {RECENT_WINDOW}) m
            WHERE m.vector @@ {TSQUERY} AND (
                SELECT count(*) FROM ({latest.sql} LIMIT {PROBE}) probe
                WHERE probe.vector @@ {TSQUERY}
            ) * {RECENT_WINDOW} >= {RANKED_MATCHES * PROBE}
            ORDER BY message_id DESC LIMIT {RANKED_MATCHES}
        ), recent AS (
            SELECT * FROM newest WHERE (SELECT count(*) FROM newest) = {RANKED_MATCHES}
            UNION ALL
            SELECT * FROM ({matches.sql}) older WHERE (SELECT count(*) FROM newest) < {RANKED_MATCHES}
        )
        SELECT message_id, conversation_id, {score} AS score FROM recent"""
    return Part(sql, [*latest.params, tsquery, *latest.params, tsquery, *matches.params, *score_params])


def titles(owner_id: int, query: Query) -> Part:
    filters = title_filters(query, "ILIKE")
    vector = "to_tsvector('english'::regconfig, c.title)"  # as in the index, to use it
    if query.has_words:
        sql = f"""
            SELECT c.id AS conversation_id, ts_rank_cd({vector}, {TSQUERY}, 1) AS score
            FROM conversations_conversation c LEFT JOIN conversations_model cm ON cm.id = c.model_id
            WHERE c.owner_id = %s AND {vector} @@ {TSQUERY} {filters.sql}"""
        return Part(sql, [websearch(query), owner_id, websearch(query), *filters.params])
    return every_title(owner_id, filters)


def page(owner_id: int, query: Query, limit: int, offset: int) -> Part:
    if query.has_words:
        # Marked for the page's rows only; the markers are removed from the text first.
        positive = websearch(query, negated=False)
        title_marked = Part(f"""CASE WHEN page.title_hit = 1 THEN ts_headline('english',
            {PRIVATE.format("c.title")}, {TSQUERY}, %s) END""",
                            [positive, f"{MARKERS}, HighlightAll=true"])
        # ts_headline parses the whole text, a few ms for a message of several pages: try the
        # first HEADLINE_CHARS, where a well-ranked message nearly always has a match, then all.
        headline = f"ts_headline('english', {PRIVATE}, {TSQUERY}, %s)"
        passage = Part(f"""(SELECT CASE
                WHEN strpos(head, E'\\x02') > 0 OR length(m.content) <= {HEADLINE_CHARS} THEN head
                ELSE {headline.format("m.content")} END
            FROM (SELECT {headline.format(f"left(m.content, {HEADLINE_CHARS})")} AS head) start)""",
                       [positive, PASSAGE, positive, PASSAGE])
    else:
        # CJK or filters only: the passage is cut around the first match in Python.
        title_marked, passage = Part("NULL"), Part("m.content")
    return page_sql(
        owner_id,
        hits(owner_id, query) if searches_messages(query) else None,
        titles(owner_id, query) if searches_titles(query) else None,
        title_marked, passage, limit, offset,
    )
