"""Conversation search: the indexes and the triggers that keep them in step with the messages.

Nothing here is a Django model field: the search queries are raw SQL (conversations/search/),
and every index is maintained by the database itself, in the same transaction as the write
(triggers on SQLite; a generated column and a trigger on PostgreSQL), so a reply is searchable
the moment it is saved and the index cannot drift.
"""

from django.db import migrations

# Hiragana, Katakana, CJK ideographs (+ extension A, compatibility), Hangul: the same ranges as
# conversations.search.query.CJK_CLASS, spelled out because a migration must not change later.
CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"

# -- SQLite: FTS5 ---------------------------------------------------------------------------

SQLITE_FORWARD = [
    # What the word index reads back for snippet() and 'rebuild': the message with its owner's id
    # (so a search intersects the owner's entries with the terms inside FTS5), and the content
    # without \x01-\x03, the private characters search marks passages with.
    """
    CREATE VIEW conversations_message_search_source AS
    SELECT m.id, c.owner_id AS owner,
           replace(replace(replace(m.content, char(1), ''), char(2), ''), char(3), '') AS content
    FROM conversations_message m JOIN conversations_conversation c ON c.id = m.conversation_id
    """,
    # Serves: message_fts MATCH 'owner : "42" AND content : ("word" AND "a phrase") NOT ...',
    # ranked by bm25(), passages by snippet(). Porter stems English; external content: the text
    # is stored once, in conversations_message.
    """
    CREATE VIRTUAL TABLE conversations_message_fts USING fts5(
        owner, content,
        content='conversations_message_search_source', content_rowid='id',
        tokenize='porter unicode61 remove_diacritics 2'
    )
    """,
    # Serves: message_cjk MATCH '"数据库"' (CJK substrings of 3+ characters). Only messages with
    # CJK text are indexed (see the triggers), contentless: the trigram index of English text
    # would be large and never used.
    """
    CREATE VIRTUAL TABLE conversations_message_cjk USING fts5(
        content, content='', tokenize='trigram'
    )
    """,
    """
    CREATE VIEW conversations_conversation_search_source AS
    SELECT id, replace(replace(replace(title, char(1), ''), char(2), ''), char(3), '') AS title
    FROM conversations_conversation
    """,
    # Serves: conversation_fts MATCH '"word" AND "a phrase"' on titles, bm25(), highlight().
    """
    CREATE VIRTUAL TABLE conversations_conversation_fts USING fts5(
        title,
        content='conversations_conversation_search_source', content_rowid='id',
        tokenize='porter unicode61 remove_diacritics 2'
    )
    """,
    # The triggers: an external-content index must be told the exact old values to delete.
    f"""
    CREATE TRIGGER conversations_message_search_insert AFTER INSERT ON conversations_message BEGIN
        INSERT INTO conversations_message_fts(rowid, owner, content) VALUES (
            new.id,
            (SELECT owner_id FROM conversations_conversation WHERE id = new.conversation_id),
            new.content);
        INSERT INTO conversations_message_cjk(rowid, content)
            SELECT new.id, new.content WHERE new.content GLOB '*[{CJK}]*';
    END
    """,
    f"""
    CREATE TRIGGER conversations_message_search_delete AFTER DELETE ON conversations_message BEGIN
        INSERT INTO conversations_message_fts(conversations_message_fts, rowid, owner, content) VALUES (
            'delete', old.id,
            (SELECT owner_id FROM conversations_conversation WHERE id = old.conversation_id),
            old.content);
        INSERT INTO conversations_message_cjk(conversations_message_cjk, rowid, content)
            SELECT 'delete', old.id, old.content WHERE old.content GLOB '*[{CJK}]*';
    END
    """,
    # A streaming reply updates its content every second: the index follows each update.
    f"""
    CREATE TRIGGER conversations_message_search_update
    AFTER UPDATE OF content, conversation_id ON conversations_message
    WHEN old.content IS NOT new.content OR old.conversation_id IS NOT new.conversation_id BEGIN
        INSERT INTO conversations_message_fts(conversations_message_fts, rowid, owner, content) VALUES (
            'delete', old.id,
            (SELECT owner_id FROM conversations_conversation WHERE id = old.conversation_id),
            old.content);
        INSERT INTO conversations_message_fts(rowid, owner, content) VALUES (
            new.id,
            (SELECT owner_id FROM conversations_conversation WHERE id = new.conversation_id),
            new.content);
        INSERT INTO conversations_message_cjk(conversations_message_cjk, rowid, content)
            SELECT 'delete', old.id, old.content WHERE old.content GLOB '*[{CJK}]*';
        INSERT INTO conversations_message_cjk(rowid, content)
            SELECT new.id, new.content WHERE new.content GLOB '*[{CJK}]*';
    END
    """,
    """
    CREATE TRIGGER conversations_conversation_search_insert
    AFTER INSERT ON conversations_conversation BEGIN
        INSERT INTO conversations_conversation_fts(rowid, title) VALUES (new.id, new.title);
    END
    """,
    # Messages go first (Django deletes them before their conversation); any left are removed
    # here, while their owner can still be looked up for the index's 'delete'.
    """
    CREATE TRIGGER conversations_conversation_search_delete
    BEFORE DELETE ON conversations_conversation BEGIN
        DELETE FROM conversations_message WHERE conversation_id = old.id;
        INSERT INTO conversations_conversation_fts(conversations_conversation_fts, rowid, title)
            VALUES ('delete', old.id, old.title);
    END
    """,
    """
    CREATE TRIGGER conversations_conversation_search_update
    AFTER UPDATE OF title, owner_id ON conversations_conversation
    WHEN old.title IS NOT new.title OR old.owner_id IS NOT new.owner_id BEGIN
        INSERT INTO conversations_conversation_fts(conversations_conversation_fts, rowid, title)
            VALUES ('delete', old.id, old.title);
        INSERT INTO conversations_conversation_fts(rowid, title) VALUES (new.id, new.title);
        INSERT INTO conversations_message_fts(conversations_message_fts, rowid, owner, content)
            SELECT 'delete', id, old.owner_id, content FROM conversations_message
            WHERE conversation_id = old.id AND old.owner_id IS NOT new.owner_id;
        INSERT INTO conversations_message_fts(rowid, owner, content)
            SELECT id, new.owner_id, content FROM conversations_message
            WHERE conversation_id = old.id AND old.owner_id IS NOT new.owner_id;
    END
    """,
    # Index what is already there.
    "INSERT INTO conversations_message_fts(conversations_message_fts) VALUES ('rebuild')",
    "INSERT INTO conversations_conversation_fts(conversations_conversation_fts) VALUES ('rebuild')",
    f"""
    INSERT INTO conversations_message_cjk(rowid, content)
    SELECT id, content FROM conversations_message WHERE content GLOB '*[{CJK}]*'
    """,
]

SQLITE_BACKWARD = [
    "DROP TRIGGER conversations_conversation_search_update",
    "DROP TRIGGER conversations_conversation_search_delete",
    "DROP TRIGGER conversations_conversation_search_insert",
    "DROP TRIGGER conversations_message_search_update",
    "DROP TRIGGER conversations_message_search_delete",
    "DROP TRIGGER conversations_message_search_insert",
    "DROP TABLE conversations_conversation_fts",
    "DROP VIEW conversations_conversation_search_source",
    "DROP TABLE conversations_message_cjk",
    "DROP TABLE conversations_message_fts",
    "DROP VIEW conversations_message_search_source",
]

# -- PostgreSQL: tsvector + GIN, pg_trgm ----------------------------------------------------

POSTGRES_FORWARD = [
    # pg_trgm: trigram indexes for CJK substrings. btree_gin: an owner id and the text in one GIN
    # index, so a search reads one person's matches instead of filtering everyone's. Both are
    # "trusted" extensions (PostgreSQL 13+): a database owner may create them.
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE EXTENSION IF NOT EXISTS btree_gin",
    # search_vector: the stemmed words, computed by PostgreSQL on every write of content (the
    # first 300,000 characters: a tsvector is limited to 1 MB, and an error here would lose the
    # message). search_owner_id: the conversation's owner, copied by the trigger below.
    """
    ALTER TABLE conversations_message
        ADD COLUMN search_owner_id bigint,
        ADD COLUMN search_vector tsvector GENERATED ALWAYS AS
            (to_tsvector('english'::regconfig, left(content, 300000))) STORED
    """,
    """
    UPDATE conversations_message m SET search_owner_id = c.owner_id
    FROM conversations_conversation c WHERE c.id = m.conversation_id
    """,
    """
    CREATE FUNCTION conversations_message_search_owner() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        SELECT owner_id INTO NEW.search_owner_id
        FROM conversations_conversation WHERE id = NEW.conversation_id;
        RETURN NEW;
    END
    $$
    """,
    """
    CREATE TRIGGER conversations_message_search_owner
    BEFORE INSERT OR UPDATE OF conversation_id ON conversations_message
    FOR EACH ROW EXECUTE FUNCTION conversations_message_search_owner()
    """,
    """
    CREATE FUNCTION conversations_conversation_search_owner() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE conversations_message SET search_owner_id = NEW.owner_id
        WHERE conversation_id = NEW.id;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER conversations_conversation_search_owner
    AFTER UPDATE OF owner_id ON conversations_conversation
    FOR EACH ROW WHEN (OLD.owner_id IS DISTINCT FROM NEW.owner_id)
    EXECUTE FUNCTION conversations_conversation_search_owner()
    """,
    # Serves: search_owner_id = %s AND search_vector @@ websearch_to_tsquery('english', %s),
    # ranked by ts_rank. GIN intersects the owner's entries with the terms'.
    """
    CREATE INDEX conversations_message_search ON conversations_message
    USING gin (search_owner_id, search_vector)
    """,
    # Serves: search_owner_id = %s AND content ~ '[CJK]' AND content ILIKE '%数据库%'. Partial:
    # only messages with CJK text, the rest is served by the word index. With fewer than three
    # characters there is no trigram, and GIN reads the owner's entries only.
    f"""
    CREATE INDEX conversations_message_search_cjk ON conversations_message
    USING gin (search_owner_id, content gin_trgm_ops) WHERE content ~ '[{CJK}]'
    """,
    # Serves: search_owner_id = %s AND content ~ '[CJK]' AND content ILIKE '%索引%'
    # ORDER BY id DESC LIMIT 1000, for CJK terms of one or two characters, which have no
    # trigram: the owner's CJK messages newest first, read until enough of them match.
    f"""
    CREATE INDEX conversations_message_search_cjk_recent ON conversations_message
    (search_owner_id, id DESC) WHERE content ~ '[{CJK}]'
    """,
    # Serves: owner_id = %s AND to_tsvector('english', title) @@ websearch_to_tsquery(...).
    """
    CREATE INDEX conversations_conversation_search ON conversations_conversation
    USING gin (owner_id, to_tsvector('english'::regconfig, title))
    """,
]

POSTGRES_BACKWARD = [
    "DROP INDEX conversations_conversation_search",
    "DROP INDEX conversations_message_search_cjk_recent",
    "DROP INDEX conversations_message_search_cjk",
    "DROP INDEX conversations_message_search",
    "DROP TRIGGER conversations_conversation_search_owner ON conversations_conversation",
    "DROP FUNCTION conversations_conversation_search_owner()",
    "DROP TRIGGER conversations_message_search_owner ON conversations_message",
    "DROP FUNCTION conversations_message_search_owner()",
    "ALTER TABLE conversations_message DROP COLUMN search_vector, DROP COLUMN search_owner_id",
    # The extensions stay: other things may use them.
]


class VendorSQL(migrations.RunSQL):
    """RunSQL on one database vendor only: each backend has its own search machinery."""

    def __init__(self, vendor: str, sql: list[str], reverse_sql: list[str]):
        super().__init__(sql, reverse_sql)
        self.vendor = vendor

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == self.vendor:
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == self.vendor:
            super().database_backwards(app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    dependencies = [("conversations", "0001_initial")]

    operations = [
        VendorSQL("sqlite", SQLITE_FORWARD, SQLITE_BACKWARD),
        VendorSQL("postgresql", POSTGRES_FORWARD, POSTGRES_BACKWARD),
    ]
