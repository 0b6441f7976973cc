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
    columns = "m.id AS message_id, m.conversation_id, m.search_vector AS vector"
    if not (query.has_words or query.excluded):
        # CJK or filters alone: the trigram index (HAS_CJK lets the planner use it), or the
        # owner's newest messages.
        cjk = f" AND {HAS_CJK}" if query.cjk else ""
        return Part(f"""SELECT message_id, conversation_id, {score} AS score FROM (
            SELECT {columns} FROM conversations_message m {joins}
            WHERE {owner}{cjk} {filters.sql} ORDER BY m.id DESC LIMIT {RANKED_MATCHES}) recent""",
                    [owner_id, *filters.params])

    def matching(source: Part, limit: int) -> Part:
        """The owner's newest `limit` matches among the messages of `source` (`m`)."""
        return Part(f"""
            SELECT {columns} FROM {source.sql} {joins}
            WHERE {owner} AND m.search_vector @@ {TSQUERY} {filters.sql}
            ORDER BY m.id DESC LIMIT {limit}""", [*source.params, owner_id, websearch(query), *filters.params])

    def latest(count: int) -> Part:
        """The owner's newest `count` messages (an index on owner and id), whatever the filters."""
        return Part(f"""(SELECT * FROM conversations_message WHERE search_owner_id = %s::bigint
            ORDER BY id DESC LIMIT {count}) m""", [owner_id])

    common = max(1, RANKED_MATCHES * PROBE // RECENT_WINDOW)
    return _recent_matches(owner_id, newest=matching(latest(RECENT_WINDOW), RANKED_MATCHES),
                           probe=matching(latest(PROBE), common), common=common,
                           everywhere=matching(Part("conversations_message m"), RANKED_MATCHES),
                           score=Part(score, score_params))


# In a history of LONG_HISTORY messages or more, the newest matches are first looked for among
# the owner's newest RECENT_WINDOW messages when at least 1 in RECENT_WINDOW / RANKED_MATCHES
# of the newest PROBE match (see _recent_matches).
LONG_HISTORY = 50_000
RECENT_WINDOW = 20_000
PROBE = 2_000


def long_history() -> str:
    """SQL: whether the owner (a parameter) has LONG_HISTORY messages or more, as the planner's
    statistics say (0.5 ms): their share of the table among its most common owners (the 100
    largest histories, by default), times its rows. A history grown since the last ANALYZE
    (autovacuum runs it as a table grows) counts as short, which is only slower."""
    return f"""(SELECT coalesce(sum(owners.freq), 0) * (
            SELECT reltuples FROM pg_class WHERE oid = 'conversations_message'::regclass)
        FROM pg_stats, unnest(most_common_vals::text::bigint[], most_common_freqs) owners(id, freq)
        WHERE schemaname = current_schema() AND tablename = 'conversations_message'
            AND attname = 'search_owner_id' AND owners.id = %s) >= {LONG_HISTORY}"""


def _recent_matches(owner_id: int, newest: Part, probe: Part, common: int, everywhere: Part,
                    score: Part) -> Part:
    """The owner's RANKED_MATCHES most recent matches, scored (reading a tsvector to rank it is
    the cost that grows with a long history: a common word matches tens of thousands).

    `everywhere` asks GIN for all of the owner's matches and keeps the newest: fast for rarer
    words, but for a common word in a long history it fetches and sorts every match (a phrase
    in 6.5 % of 1,000,000 messages: 780 ms). So in a long history where the word is common,
    `newest` reads the owner's messages newest first instead, until RANKED_MATCHES
    match, at most RECENT_WINDOW of them (1 to 5 µs each, more for long messages): the phrase,
    30 ms. Common means enough matches among the newest PROBE (read until there are enough: a
    common word's look costs little); where it is not, or RECENT_WINDOW was read without
    enough, GIN is asked. In a shorter history GIN is the faster way (python in a history of
    10,000 long messages: 55 ms newest first, about 25 with GIN). Both ways give the same rows.
    """
    sql = f"""
        WITH newest AS MATERIALIZED (
            SELECT * FROM ({newest.sql}) newest
            WHERE CASE WHEN {long_history()}
                THEN (SELECT count(*) FROM ({probe.sql}) probe) = {common} END
        ), recent AS (
            SELECT * FROM newest WHERE (SELECT count(*) FROM newest) = {RANKED_MATCHES}
            UNION ALL
            SELECT * FROM ({everywhere.sql}) older WHERE (SELECT count(*) FROM newest) < {RANKED_MATCHES}
        )
        SELECT message_id, conversation_id, {score.sql} AS score FROM recent"""
    return Part(sql, [*newest.params, owner_id, *probe.params, *everywhere.params, *score.params])


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
