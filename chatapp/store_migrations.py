"""The chat history's schema: numbered migrations from version 1 (``PRAGMA user_version``).

A migration, once released, never changes: a database written by that release has run
it already. A change to the schema is a new migration at the end of ``MIGRATIONS``.
"""

from __future__ import annotations

import sqlite3

# Each migration is a list of statements, run in one transaction, numbered from 1.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: chats and their messages
        "CREATE TABLE chats (id INTEGER PRIMARY KEY, title TEXT NOT NULL, "
        "created REAL NOT NULL, updated REAL NOT NULL)",
        "CREATE TABLE messages (id INTEGER PRIMARY KEY, "
        "chat_id INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE, "
        "position INTEGER NOT NULL, role TEXT NOT NULL, text TEXT NOT NULL, "
        "created REAL NOT NULL)",
        "CREATE INDEX messages_by_chat ON messages (chat_id, position)",
    ),
    (  # 2: every version of a reply, with what produced it; the chat's system prompt
        "ALTER TABLE chats ADD COLUMN system TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE messages ADD COLUMN shown INTEGER NOT NULL DEFAULT 0",
        "CREATE TABLE versions (id INTEGER PRIMARY KEY, "
        "message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE, "
        "number INTEGER NOT NULL, text TEXT NOT NULL DEFAULT '', token_ids TEXT, "
        "params TEXT NOT NULL DEFAULT '{}', seed INTEGER, model TEXT NOT NULL DEFAULT '', "
        "engine TEXT NOT NULL DEFAULT '', stats TEXT, status TEXT NOT NULL DEFAULT 'done', "
        "error TEXT, writer TEXT, started REAL NOT NULL, updated REAL NOT NULL, "
        "finished REAL, UNIQUE (message_id, number))",
        "INSERT INTO versions (message_id, number, text, status, started, updated, finished) "
        "SELECT id, 0, text, 'done', created, created, created FROM messages "
        "WHERE role = 'assistant'",
        "UPDATE messages SET text = '' WHERE role = 'assistant'",
    ),
    (  # 3: full-text search (rowids are the message and version ids)
        "CREATE VIRTUAL TABLE user_text USING fts5(text, tokenize = 'trigram')",
        "CREATE VIRTUAL TABLE reply_text USING fts5(text, tokenize = 'trigram')",
        "INSERT INTO user_text (rowid, text) SELECT id, text FROM messages WHERE role = 'user'",
        "INSERT INTO reply_text (rowid, text) SELECT id, text FROM versions",
        "CREATE TRIGGER user_text_insert AFTER INSERT ON messages WHEN new.role = 'user' "
        "BEGIN INSERT INTO user_text (rowid, text) VALUES (new.id, new.text); END",
        "CREATE TRIGGER user_text_delete AFTER DELETE ON messages WHEN old.role = 'user' "
        "BEGIN DELETE FROM user_text WHERE rowid = old.id; END",
        "CREATE TRIGGER reply_text_insert AFTER INSERT ON versions "
        "BEGIN INSERT INTO reply_text (rowid, text) VALUES (new.id, new.text); END",
        "CREATE TRIGGER reply_text_update AFTER UPDATE OF text ON versions "
        "BEGIN UPDATE reply_text SET text = new.text WHERE rowid = new.id; END",
        "CREATE TRIGGER reply_text_delete AFTER DELETE ON versions "
        "BEGIN DELETE FROM reply_text WHERE rowid = old.id; END",
        "CREATE INDEX chats_by_update ON chats (updated)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(db: sqlite3.Connection) -> None:
    """Run the migrations ``db`` has not had yet, each in its own transaction; safe while
    another process migrates the same file."""
    for number in range(len(MIGRATIONS)):
        if db.execute("PRAGMA user_version").fetchone()[0] > number:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have run it while this one waited for the lock.
            if db.execute("PRAGMA user_version").fetchone()[0] <= number:
                for statement in MIGRATIONS[number]:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {number + 1}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
