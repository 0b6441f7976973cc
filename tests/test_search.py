"""Conversation history search: syntax, ranking, highlights, privacy, CJK, the index's upkeep.

Every test here runs on both backends (SQLite FTS5 on the default pass, PostgreSQL full-text on
the production pass): the behaviour must be the same.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conversations.models import Conversation, Message
from conversations.search import PAGE_SIZE, search
from conversations.search.highlight import marked_html
from conversations.search.query import parse
from tests.conftest import chain

pytestmark = pytest.mark.django_db


def say(conversation: Conversation, content: str, role: str = "user", **fields) -> Message:
    return Message.objects.create(conversation=conversation, role=role, content=content, **fields)


def chat(owner, title: str = "New chat", *contents: str, model=None) -> Conversation:
    conversation = Conversation.objects.create(owner=owner, title=title, model=model)
    for content in contents:
        say(conversation, content)
    return conversation


def found(user, text: str) -> list[int]:
    """The conversations a search finds, best first."""
    return [r.conversation_id for r in search(user, text).results]


# -- the syntax


def test_the_parser_reads_words_phrases_exclusions_and_filters():
    query = parse('deploy "blue green" -helm -"old way" model:gpt-4o role:Assistant '
                  "before:2025-02-01 after:2024-12-31 in:title")
    assert query.words == ["deploy"] and query.phrases == ["blue green"]
    assert query.excluded == ["helm", "old way"]
    assert query.model == "gpt-4o" and query.role == "assistant" and query.in_title
    assert query.before == datetime(2025, 2, 1, tzinfo=UTC)
    assert query.after == datetime(2025, 1, 1, tzinfo=UTC)  # after the day typed
    assert not query.notices


def test_the_parser_never_fails_and_says_what_it_ignored():
    query = parse('"unclosed phrase -x role:admin before:yesterday in:body -model:x "" - + ***')
    assert query.phrases == ["unclosed phrase -x role:admin before:yesterday in:body -model:x"]
    assert query.words == [] and query.excluded == []
    query = parse("role:admin before:2025-13-45 after:yesterday in:body -model:x c++ OR")
    assert query.words == ["c++", "OR"]
    assert len(query.notices) == 5
    assert parse("").is_empty and parse('  " " - -- ').is_empty


def test_the_parser_splits_cjk_runs_from_words():
    query = parse('Python教程 -广告 "数据库 设计" 日本語')
    assert query.words == ["Python"]
    assert query.cjk == ["教程", "数据库 设计", "日本語"]
    assert query.cjk_excluded == ["广告"]


# -- finding, ranking, filters


def test_words_all_match_and_are_stemmed(alice):
    both = chat(alice, "Ops", "We were deploying the databases on Friday.")
    chat(alice, "Ops 2", "Deploy only.")
    chat(alice, "Ops 3", "Nothing relevant here.")
    assert found(alice, "deploys database") == [both.id]
    assert found(alice, "DEPLOY") == sorted(found(alice, "deploy"), key=found(alice, "deploy").index)
    assert set(found(alice, "deploy")) == {both.id, both.id + 1}


def test_a_phrase_matches_only_as_written(alice):
    exact = chat(alice, "a", "Use a blue green deployment.")
    chat(alice, "b", "The green and blue deployment.")
    assert found(alice, '"blue green"') == [exact.id]


def test_excluded_words_rule_messages_out(alice):
    keep = chat(alice, "a", "Kubernetes with plain manifests.")
    chat(alice, "b", "Kubernetes with helm charts.")
    assert found(alice, "kubernetes -helm") == [keep.id]
    assert found(alice, 'kubernetes -"helm charts"') == [keep.id]
    assert keep.id in found(alice, "-helm")  # exclusions alone: everything else


def test_role_model_and_date_filters(alice, provider):
    from conversations.models import Model

    echo = Model.objects.get(name="echo")
    with_echo = chat(alice, "a", model=echo)
    say(with_echo, "The answer is quinoa.", role="assistant", model="echo")
    mine = chat(alice, "b", "I like quinoa.")
    old = chat(alice, "c")
    say(old, "Quinoa in the old days.")
    Message.objects.filter(conversation=old).update(created_at=datetime(2023, 5, 1, 12, tzinfo=UTC))

    assert found(alice, "quinoa role:assistant") == [with_echo.id]
    assert set(found(alice, "quinoa role:user")) == {mine.id, old.id}
    assert found(alice, "quinoa model:ECH") == [with_echo.id]
    assert found(alice, "quinoa before:2024-01-01") == [old.id]
    assert old.id not in found(alice, "quinoa after:2023-05-01")
    assert old.id in found(alice, "quinoa after:2023-04-30")
    assert set(found(alice, "role:assistant")) == {with_echo.id}  # filters alone


def test_titles_match_and_in_title_searches_only_them(alice):
    titled = chat(alice, "Holiday planning in Lisbon", "Where to eat?")
    talked = chat(alice, "Misc", "Lisbon has great trams.")
    assert set(found(alice, "lisbon")) == {titled.id, talked.id}
    assert found(alice, "lisbon in:title") == [titled.id]
    result = search(alice, "lisbon in:title").results[0]
    assert "<mark>Lisbon</mark>" in result.title and result.message_id is None


def test_more_matches_rank_higher_and_a_matching_title_adds(alice):
    once = chat(alice, "a", "Rust is a language. " + "Filler words here. " * 5)
    often = chat(alice, "b", "Rust, rust and more rust: rust everywhere. " + "Filler words. " * 4)
    assert found(alice, "rust") == [often.id, once.id]
    titled = chat(alice, "Rust notes", "Rust is a language. " + "Filler words here. " * 5)
    ranked = found(alice, "rust")
    assert ranked.index(titled.id) < ranked.index(once.id)


def test_a_result_has_its_passage_date_model_and_opens_at_the_message(alice):
    conversation = chat(alice, "Trip")
    say(conversation, "Intro " * 40 + "the museum opens at nine " + "outro " * 40, role="assistant", model="echo")
    message = conversation.messages.get()
    result = search(alice, "museum").results[0]
    assert "<mark>museum</mark>" in result.passage
    assert "outro" in result.passage and len(result.passage) < 400  # a passage, not all of it
    assert result.model == "echo" and result.date == message.created_at
    assert result.url == f"/c/{conversation.id}/?around={message.id}#msg-{message.id}"


def test_a_match_deep_in_a_long_message_is_still_marked(alice):
    chat(alice, "Long", "Filler sentence here. " * 400 + "And then a zebra appeared.")
    assert "<mark>zebra</mark>" in search(alice, "zebra").results[0].passage


def test_one_result_per_conversation_with_its_best_message(alice):
    conversation = chat(alice, "a", "A pear.", "Pear pear pear: the best pear.", "No fruit.")
    results = search(alice, "pear").results
    assert [r.conversation_id for r in results] == [conversation.id]
    assert results[0].message_id == conversation.messages.order_by("id")[1].id


def test_a_title_is_marked_only_when_it_counted_in_the_rank(alice):
    conversation = chat(alice, "Python tips", "Python decorators, explained.")
    assert "<mark>Python</mark>" in search(alice, "python").results[0].title
    # role: searches messages only, so the title did not count: it is shown as it is.
    result = search(alice, "python role:user").results[0]
    assert result.conversation_id == conversation.id
    assert str(result.title) == "Python tips" and "<mark>Python</mark>" in result.passage


# PostgreSQL's ways to the newest matches (search/postgres.py), in a long history: newest first
# through a window of the owner's messages; the window read without enough, then GIN; the word
# not common in the probe, GIN alone. In a short history: GIN alone.
@pytest.mark.parametrize(("window", "probe", "long_history"),
                         [(20_000, 2_000, 0), (4, 2, 0), (2, 2, 0), (20_000, 2_000, 10**9)])
def test_the_most_recent_matches_are_ranked_and_older_ones_left_out(alice, monkeypatch, window, probe,
                                                                   long_history):
    from conversations.search import postgres, sqlite

    monkeypatch.setattr(sqlite, "RANKED_MATCHES", 3)
    monkeypatch.setattr(postgres, "RANKED_MATCHES", 3)
    monkeypatch.setattr(postgres, "RECENT_WINDOW", window)
    monkeypatch.setattr(postgres, "PROBE", probe)
    monkeypatch.setattr(postgres, "LONG_HISTORY", long_history)
    older = [chat(alice, f"old {i}", "Mango mango mango mango, all mango.") for i in range(2)]
    once = chat(alice, "a", "A mango. " + "Filler words here. " * 5)
    chat(alice, "other", "Nothing to see.", "Nor here.")
    twice = chat(alice, "b", "Mango and mango. " + "Filler words here. " * 5)
    thrice = chat(alice, "c", "Mango, mango and mango. " + "Filler words here. " * 5)
    # The three newest matches, by relevance: the older, better ones are beyond the bound.
    assert found(alice, "mango") == [thrice.id, twice.id, once.id]
    assert not set(found(alice, "mango")) & {c.id for c in older}
    assert found(alice, "the") == []  # a stop word on PostgreSQL, in no message here


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_postgresql_finds_the_same_newest_matches_either_way_filters_included(alice, provider, monkeypatch):
    """Newest first (a long history, a common word) and GIN give the same rows, with each filter:
    the filters apply after the bounded read of the newest messages."""
    from conversations.models import Model
    from conversations.search import postgres

    monkeypatch.setattr(postgres, "RANKED_MATCHES", 2)
    monkeypatch.setattr(postgres, "RECENT_WINDOW", 50)
    monkeypatch.setattr(postgres, "PROBE", 50)
    echo = Model.objects.get(name="echo")
    for i in range(6):
        conversation = chat(alice, f"q{i}", f"Quinoa, take {i}.", model=echo if i % 2 else None)
        say(conversation, f"Quinoa answer {i}.", role="assistant", model="echo" if i % 2 else "other")
    Message.objects.filter(conversation__title__in=["q0", "q1"]).update(created_at=datetime(2023, 5, 1, tzinfo=UTC))

    def hits(text: str, long_history: int) -> list:
        monkeypatch.setattr(postgres, "LONG_HISTORY", long_history)
        part = postgres.hits(alice.pk, parse(text))
        with connection.cursor() as cursor:
            cursor.execute(part.sql, part.params)
            return sorted(cursor.fetchall())

    for text in ["quinoa", "quinoa role:assistant", "quinoa model:ECH", "quinoa before:2024-01-01",
                 "quinoa after:2024-01-01", "quinoa -answer"]:
        newest, gin = hits(text, 0), hits(text, 10**9)
        assert len(newest) == 2 and newest == gin, text


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_a_long_history_is_told_by_the_planners_statistics(alice, bob, django_user_model, monkeypatch):
    from conversations.search import postgres

    carol = django_user_model.objects.create_user("carol")  # no message

    chat(alice, "a", *[f"note {i}" for i in range(7)])
    chat(bob, "b", "one", "two")
    monkeypatch.setattr(postgres, "LONG_HISTORY", 5)

    def long(user) -> bool:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {postgres.long_history()}", [user.pk])
            return cursor.fetchone()[0]

    assert not long(alice)  # no statistics yet: short, the way that is right for any history
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE conversations_message")
    assert long(alice) and not long(bob) and not long(carol)


@pytest.mark.parametrize("bobs_between", [1, 12])  # alice's history dense in its span, or sparse
def test_other_members_matches_in_between_neither_show_nor_disturb_ranking_or_passages(alice, bob, bobs_between):
    mine = []
    for i in range(6):
        mine.append(chat(alice, f"mine {i}", f"Kiwi note {i}: " + "kiwi, " * i + "the end.",
                         "Plain words.", "More plain words.", "And more."))
        for j in range(bobs_between):
            chat(bob, f"bobs {i} {j}", f"Kiwi kiwi kiwi kiwi kiwi kiwi from bob {i}.")
    results = search(alice, "kiwi").results
    assert [r.conversation_id for r in results] == [c.id for c in reversed(mine)]
    for result, conversation in zip(results, reversed(mine), strict=True):
        number = conversation.title.split()[1]
        assert f"note {number}" in result.passage and "bob" not in result.passage
    assert found(bob, "kiwi") and not set(found(bob, "kiwi")) & {c.id for c in mine}
    assert found(alice, "kiwi bob") == []


@pytest.mark.skipif("connection.vendor != 'sqlite'")
@pytest.mark.parametrize("samples", [0, 1000])  # the terms alone always, or with the owner phrase
def test_sqlite_scores_are_fts5_bm25_with_the_owner_phrase(alice, bob, samples, monkeypatch):
    """The ranking leaves the owner phrase out of bm25()'s query where the member's messages
    are most of the span: its weight is 0, so the scores must be exactly those with it."""
    from conversations.search import sqlite

    monkeypatch.setattr(sqlite, "SAMPLES", samples)
    for i in range(8):
        chat(alice, f"t {i}", "Deploy the database. " * (i % 3 + 1) + "Words " * i,
             f"Database migration {i}, then deploy.")
        chat(bob, f"b {i}", "Deploy deploy database " * i)
    for text in ["deploy", "deploy database", '"database migration"', "deploy -migration"]:
        query = parse(text)
        part = sqlite.hits(alice.pk, query)
        with connection.cursor() as cursor:
            cursor.execute(part.sql, part.params)
            ours = {row[0]: row[2] for row in cursor.fetchall()}
            cursor.execute("""SELECT rowid, -bm25(conversations_message_fts, 0.0, 1.0)
                FROM conversations_message_fts WHERE conversations_message_fts MATCH %s""",
                           [sqlite.message_match(alice.pk, query)])
            with_owner = dict(cursor.fetchall())
        assert ours and ours == with_owner, text


# -- privacy and safety


def test_another_users_text_is_never_found(alice, bob):
    bobs = chat(bob, "Bob secret zanzibar", "zanzibar plans 秘密计划书 秘密", "Bob only")
    say(bobs, "zanzibar reply", role="assistant", model="echo")
    mine = chat(alice, "Mine", "Nothing to see.")
    for text in ["zanzibar", '"zanzibar plans"', "秘密计划书", "秘密", "计", "zanzibar in:title",
                 "-nothing", "role:assistant", "model:echo", "bob", "after:2000-01-01"]:
        ids = found(alice, text)
        assert bobs.id not in ids, text
    assert found(alice, "after:2000-01-01") == [mine.id]
    assert found(bob, "zanzibar") == [bobs.id]


def test_highlights_escape_the_text_before_marking_it(alice):
    chat(alice, "<b>Title</b> evil", "Say <script>alert(1)</script> evil \x02<img src=x>\x03 ok")
    result = search(alice, "evil").results[0]
    assert "<script>" not in result.passage and "&lt;script&gt;alert(1)&lt;/script&gt;" in result.passage
    assert "<img" not in result.passage and "&lt;img src=x&gt; ok" in result.passage
    assert "<mark>evil</mark>" in result.passage
    assert "<b>" not in result.title and "&lt;b&gt;" in result.title
    assert str(marked_html("a \x02<i>b\x03 \x03c", [])) == "a <mark>&lt;i&gt;b</mark> c"


@pytest.fixture
def searcher(client, alice):
    client.force_login(alice)
    chat(alice, "Something", "Something to find, maybe or not.")
    return client


@given(text=st.text(max_size=80))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_input_gives_a_page(searcher, text):
    assert searcher.get("/search/", {"q": text}).status_code == 200


@pytest.mark.parametrize("text", [
    '"', '""', '"unclosed', "-", "--", "-\"", "a:b:c", "NOT", "AND OR NOT", "NEAR(a b)", "owner:1",
    "content:x", "{owner}:1", "*", "a*", "^a", "(", ")", "'", "\\", "%", "_", "'; DROP TABLE x; --",
    "role:", "model:", "before:", "in:", "!!", "&", "|", "<->", ":*", "a & !b", "\x00", "\x02\x03",
    "c++", "find -", "find \"", "😀", "日", "日本", "model:%_\\", "to be or not to be",
])
def test_operators_and_stray_characters_never_give_an_error(searcher, text):
    response = searcher.get("/search/", {"q": text})
    assert response.status_code == 200


# -- the index follows every write


def test_a_reply_is_searchable_as_it_streams_and_once_it_is_saved(alice, conversation):
    reply = say(conversation, "", role="assistant", status="streaming")
    Message.objects.filter(pk=reply.pk).update(content="The first words about gazpacho")
    assert found(alice, "gazpacho") == [conversation.id]
    reply.refresh_from_db()
    reply.content = "Finally: salmorejo, not the soup from before."
    reply.status = "complete"
    reply.save(update_fields=["content", "status", "updated_at"])
    assert found(alice, "salmorejo") == [conversation.id]
    assert found(alice, "gazpacho") == []
    reply.delete()
    assert found(alice, "salmorejo") == []


def test_a_renamed_or_deleted_conversation_follows(alice):
    conversation = chat(alice, "Marmalade", "About oranges.")
    conversation.title = "Jam"
    conversation.save(update_fields=["title"])
    assert found(alice, "marmalade") == [] and found(alice, "jam") == [conversation.id]
    conversation.delete()
    assert found(alice, "jam") == [] and found(alice, "oranges") == []


# -- Chinese and Japanese


def test_a_few_chinese_or_japanese_characters_find_messages(alice):
    zh = chat(alice, "中文", "我们今天讨论数据库设计和索引优化。")
    ja = chat(alice, "日本語", "東京の天気は晴れです。")
    chat(alice, "en", "Plain English only.")
    assert found(alice, "数据库设计") == [zh.id]
    assert found(alice, "索引") == [zh.id]  # two characters: no trigram
    assert found(alice, "库") == [zh.id]
    assert found(alice, "天気") == [ja.id]
    assert found(alice, "東京の天気") == [ja.id]
    assert found(alice, "数据库 -索引") == []
    result = search(alice, "索引").results[0]
    assert "<mark>索引</mark>" in result.passage


def test_cjk_and_english_terms_together(alice):
    both = chat(alice, "mix", "Python 教程：如何使用装饰器")
    chat(alice, "zh only", "如何使用装饰器")
    chat(alice, "en only", "Python decorators")
    assert found(alice, "python 装饰器") == [both.id]
    assert found(alice, "Python教程") == [both.id]
    result = search(alice, "python 装饰器").results[0]
    assert "<mark>装饰器</mark>" in result.passage and "<mark>Python</mark>" in result.passage


# -- the pages


def test_the_search_box_is_on_every_page(client, alice, conversation):
    client.force_login(alice)
    for url in ["/", f"/c/{conversation.id}/", "/search/?q=x"]:
        page = client.get(url).content.decode()
        assert 'aria-label="Search conversations"' in page
        assert 'hx-get="/search/"' in page and "keyup changed delay:200ms" in page


def test_the_search_page_and_its_htmx_results(client, alice):
    client.force_login(alice)
    conversation = chat(alice, "Trip to Porto", "Porto wine cellars")
    page = client.get("/search/", {"q": "porto"}).content.decode()
    assert "<html" in page and f'href="/c/{conversation.id}/?around=' in page
    assert "<mark>Porto</mark>" in page
    partial = client.get("/search/", {"q": "porto"}, HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in partial and 'class="search-hit"' in partial
    assert "No conversations match." in client.get("/search/", {"q": "nothing-like-it"}).content.decode()


def test_results_are_paginated(client, alice):
    client.force_login(alice)
    for i in range(PAGE_SIZE + 5):
        chat(alice, f"Chat {i}", f"lentils number {i}")
    first = search(alice, "lentils", 1)
    second = search(alice, "lentils", 2)
    assert len(first.results) == PAGE_SIZE and first.has_next
    assert len(second.results) == 5 and not second.has_next
    assert not {r.conversation_id for r in first.results} & {r.conversation_id for r in second.results}
    more = client.get("/search/", {"q": "lentils"}, HTTP_HX_REQUEST="true").content.decode()
    assert "page=2" in more and "More results" in more


def test_the_search_page_runs_a_constant_number_of_queries(client, alice):
    client.force_login(alice)
    for i in range(2):
        chat(alice, f"Soup {i}", f"soup recipe {i}", f"more soup {i}")
    client.get("/search/", {"q": "soup"})  # the first request of a process checks for users
    with CaptureQueriesContext(connection) as few:
        client.get("/search/", {"q": "soup"})
    for i in range(40):
        chat(alice, f"Stew {i}", f"soup and stew {i}", f"soup again {i}", "and 数据库设计")
    for text in ["soup", "数据库设计", "数据", "role:user", "-stew", "soup in:title"]:
        with CaptureQueriesContext(connection) as many:
            client.get("/search/", {"q": text})
        assert len(many) == len(few), text


def test_a_search_result_opens_the_conversation_at_its_message(client, alice, conversation):
    client.force_login(alice)
    say(conversation, "the needle in the haystack")
    chain(conversation, [Message(role="user", content=f"hay {i}") for i in range(120)], conversation.messages.latest("id").pk)
    target = conversation.messages.get(content__contains="needle")
    url = search(alice, "needle").results[0].url
    page = client.get(url).content.decode()
    assert f'id="msg-{target.id}"' in page
    assert ">hay 119<" in page  # down to the latest
    assert 'hx-trigger="intersect once"' not in page  # the needle is the first message
    far = say(conversation, "a second needle")
    chain(conversation, [Message(role="user", content=f"straw {i}") for i in range(100)], far.pk)
    page = client.get(f"/c/{conversation.id}/?around={far.id}").content.decode()
    assert f'id="msg-{far.id}"' in page and ">straw 99<" in page
    assert ">hay 50<" not in page and 'hx-trigger="intersect once"' in page  # earlier ones on scroll


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_in_a_browser_results_show_as_you_type_and_the_keyboard_opens_one(page, site_server, alice):
    from playwright.sync_api import expect

    from tests.conftest import log_in

    conversation = chat(alice, "Garden", "Tomatoes need <b>sun</b>.", "Water them in the morning.")
    target = conversation.messages.order_by("id").first()
    log_in(page, site_server.url, "alice", "alice-password")
    box = page.get_by_label("Search conversations")
    box.press_sequentially("tomato")
    hit = page.locator("#search-results a.search-hit")
    expect(hit).to_have_count(1)
    expect(hit.locator("mark")).to_have_text("Tomatoes")
    expect(hit).to_contain_text("<b>sun</b>")  # shown as text, not HTML
    box.press("ArrowDown")
    expect(hit).to_be_focused()
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/c/{conversation.id}/?around={target.id}#msg-{target.id}")
    expect(page.locator(f"#msg-{target.id}")).to_be_in_viewport()
