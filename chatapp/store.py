"""The chat history: one SQLite file (standard-library ``sqlite3``), no UI, no torch.

- WAL, foreign keys and a busy timeout, so two app instances can share the file: every
  write is a short transaction that touches only its own rows.
- Numbered migrations (``store_migrations``). A file written by a newer chatapp is opened
  read-only; one that cannot be read is left as it is, and this run's chats stay in memory.
- Full-text search over user messages and every reply version (FTS5, trigram tokens, so
  a word inside Chinese text or part of a word matches too).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatapp import paths
from chatapp.store_migrations import SCHEMA_VERSION, migrate

STALE_SECONDS = 10.0  # a streaming reply not written for this long has lost its writer
WRITER = f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class ChatSummary:
    """One line of the chats list."""

    id: int
    title: str
    updated: float
    messages: int
    snippet: str = ""  # the matching text, for a search


class ChatStore:
    """The chats database. ``problem`` says, in one line, why it is not the usual file
    (unreadable, newer); ``persistent`` is False when nothing reaches the disk."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or paths.history_file()
        self.problem: str | None = None
        self.read_only = False
        self.persistent = True
        self.on_problem: Callable[[str], None] | None = None  # told of a later failure
        self._lock = threading.RLock()
        self._placeholder_id = 0
        self._writable = True
        try:
            self._db = self._open_waiting()
        except (sqlite3.Error, OSError) as exc:
            self.problem = (
                f"Chat history {self.path} could not be read ({exc}). It was left as it "
                "is; this run's chats are kept in memory only."
            )
            self.persistent = False
            self._db = self._connect(":memory:")
            migrate(self._db)

    # -- opening ------------------------------------------------------------------------
    @staticmethod
    def _connect(target: str | Path, uri: bool = False) -> sqlite3.Connection:
        db = sqlite3.connect(
            target, timeout=10, isolation_level=None, check_same_thread=False, uri=uri
        )
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA busy_timeout = 10000")
        db.execute("PRAGMA foreign_keys = ON")
        return db

    def _open_waiting(self, patience: float = 15.0) -> sqlite3.Connection:
        """Open the file; while another instance holds it (creating or upgrading it),
        wait for it: a busy file is not a damaged one."""
        deadline = time.monotonic() + patience
        while True:
            try:
                return self._open()
            except sqlite3.OperationalError as exc:
                busy = "locked" in str(exc) or "busy" in str(exc)
                if not busy or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = self._connect(self.path)
        try:
            # One read transaction: another instance may be creating the file meanwhile.
            db.execute("BEGIN")
            version = db.execute("PRAGMA user_version").fetchone()[0]  # reads the header
            empty = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
            db.execute("COMMIT")
            if version > SCHEMA_VERSION:
                db.close()
                self.read_only = True
                self.persistent = False
                self._writable = False
                self.problem = (
                    f"Chat history {self.path} was written by a newer chatapp (schema "
                    f"{version}; this one knows {SCHEMA_VERSION}). It is open read-only: "
                    "this run's new chats are not saved."
                )
                return self._connect(self.path.resolve().as_uri() + "?mode=ro", uri=True)
            if version > 0 or empty:
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = NORMAL")
            else:
                raise sqlite3.DatabaseError("a SQLite file that chatapp did not write")
            migrate(db)
            return db
        except BaseException:
            db.close()
            raise

    def close(self) -> None:
        """Close the database (the app's end)."""
        with self._lock:
            self._db.close()

    # -- plumbing -----------------------------------------------------------------------
    def _fail(self, exc: Exception) -> None:
        """A write failed mid-run (disk full, file damaged): stop writing, say so once."""
        if self.persistent:
            self.persistent = False
            self._writable = False
            self.problem = (
                f"Chat history {self.path} could not be written ({exc}); the rest of "
                "this run's chats are kept in memory only."
            )
            if self.on_problem is not None:
                self.on_problem(self.problem)

    def _write(self, statements: Iterable[tuple[str, tuple[Any, ...]]]) -> int:
        """Run the statements in one transaction; the first statement's row id (a
        negative stand-in when nothing can be written)."""
        if self._writable:
            with self._lock:
                try:
                    self._db.execute("BEGIN IMMEDIATE")
                    try:
                        first = None
                        for sql, args in statements:
                            cursor = self._db.execute(sql, args)
                            if first is None:
                                first = cursor.lastrowid
                        self._db.execute("COMMIT")
                    except BaseException:
                        self._db.execute("ROLLBACK")
                        raise
                    return int(first or 0)
                except sqlite3.Error as exc:
                    self._writable = False
                    self._fail(exc)
        self._placeholder_id -= 1  # this run's rows live in memory only
        return self._placeholder_id

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                self._fail(exc)
                return []

    # -- chats --------------------------------------------------------------------------
    def create_chat(self, title: str, system: str = "", created: float | None = None) -> int:
        """A new chat's row; its id."""
        now = created if created is not None else time.time()
        return self._write(
            [
                (
                    "INSERT INTO chats (title, system, created, updated) VALUES (?, ?, ?, ?)",
                    (title, system, now, now),
                )
            ]
        )

    def update_chat(
        self, chat_id: int, *, title: str | None = None, system: str | None = None
    ) -> None:
        """Rename a chat, or set its system prompt."""
        if title is not None:
            self._write([("UPDATE chats SET title = ? WHERE id = ?", (title, chat_id))])
        if system is not None:
            self._write([("UPDATE chats SET system = ? WHERE id = ?", (system, chat_id))])

    def delete_chat(self, chat_id: int) -> None:
        """Delete a chat with its messages, versions and their search entries."""
        self._write([("DELETE FROM chats WHERE id = ?", (chat_id,))])

    def add_message(
        self, chat_id: int, position: int, role: str, text: str, created: float | None = None
    ) -> int:
        """A message's row (a reply's text lives in its versions); its id."""
        now = created if created is not None else time.time()
        return self._write(
            [
                (
                    "INSERT INTO messages (chat_id, position, role, text, created) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (chat_id, position, role, text, now),
                ),
                ("UPDATE chats SET updated = ? WHERE id = ?", (now, chat_id)),
            ]
        )

    def set_shown(self, message_id: int, shown: int) -> None:
        """Which version of a reply is shown."""
        self._write([("UPDATE messages SET shown = ? WHERE id = ?", (shown, message_id))])

    # -- reply versions -----------------------------------------------------------------
    def add_version(self, message_id: int, number: int, values: dict[str, Any]) -> int:
        """A new version row (``values``: text, params, seed, model, engine, status, ...)."""
        row = _version_columns(values)
        row.setdefault("writer", WRITER)
        columns = ["message_id", "number", *row]
        sql = (
            f"INSERT INTO versions ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)})"
        )
        return self._write(
            [
                (sql, (message_id, number, *row.values())),
                ("UPDATE messages SET shown = ? WHERE id = ?", (number, message_id)),
            ]
        )

    def update_version(
        self, version_id: int, values: dict[str, Any], chat_id: int | None = None
    ) -> None:
        """Change some of a version's columns (the streamed text, its end)."""
        row = _version_columns(values)
        statements = [
            (
                f"UPDATE versions SET {', '.join(f'{c} = ?' for c in row)} WHERE id = ?",
                (*row.values(), version_id),
            )
        ]
        if chat_id is not None:
            statements.append(
                (
                    "UPDATE chats SET updated = ? WHERE id = ?",
                    (row.get("updated") or time.time(), chat_id),
                )
            )
        self._write(statements)

    # -- reading ------------------------------------------------------------------------
    def list_chats(self, limit: int = 500) -> list[ChatSummary]:
        """Chats, most recently active first."""
        rows = self._read(
            "SELECT c.id, c.title, c.updated, "
            "(SELECT count(*) FROM messages m WHERE m.chat_id = c.id) AS n "
            "FROM chats c ORDER BY c.updated DESC, c.id DESC LIMIT ?",
            (limit,),
        )
        return [ChatSummary(r["id"], r["title"], r["updated"], r["n"]) for r in rows]

    def last_chat_id(self) -> int | None:
        """The most recently active chat (``--continue``)."""
        rows = self._read("SELECT id FROM chats ORDER BY updated DESC, id DESC LIMIT 1")
        return int(rows[0]["id"]) if rows else None

    def search(self, query: str, limit: int = 50) -> list[ChatSummary]:
        """Chats whose messages contain every word of ``query``, newest first, each with
        a snippet of its first match."""
        words = [w for w in query.split() if w]
        if not words:
            return []
        long_words = [w for w in words if len(w) >= 3]
        if long_words and len(long_words) == len(words):
            match = " ".join('"' + w.replace('"', '""') + '"' for w in long_words)
            matching = (
                "SELECT m.chat_id FROM user_text u JOIN messages m ON m.id = u.rowid "
                "WHERE user_text MATCH ? UNION SELECT m.chat_id FROM reply_text r "
                "JOIN versions v ON v.id = r.rowid JOIN messages m ON m.id = v.message_id "
                "WHERE reply_text MATCH ?"
            )
            args: tuple[Any, ...] = (match, match)
        else:  # trigram search needs 3 characters: scan for short words (two-character
            # Chinese words are common)
            in_user, user_args = _contains_all("text", words)
            in_reply, reply_args = _contains_all("v.text", words)
            matching = (
                f"SELECT chat_id FROM messages WHERE role = 'user' AND {in_user} UNION "
                "SELECT m.chat_id FROM versions v JOIN messages m ON m.id = v.message_id "
                f"WHERE {in_reply}"
            )
            args = user_args + reply_args
        chats = self._read(
            "SELECT c.id, c.title, c.updated, "
            "(SELECT count(*) FROM messages m WHERE m.chat_id = c.id) AS n "
            f"FROM chats c WHERE c.id IN ({matching}) ORDER BY c.updated DESC, c.id DESC LIMIT ?",
            (*args, limit),
        )
        return [
            ChatSummary(r["id"], r["title"], r["updated"], r["n"], self._snippet(r["id"], words))
            for r in chats
        ]

    def _snippet(self, chat_id: int, words: list[str], width: int = 70) -> str:
        """The first of the chat's texts that holds every word, around the first word."""
        in_user, user_args = _contains_all("text", words)
        in_reply, reply_args = _contains_all("v.text", words)
        rows = self._read(
            f"SELECT text FROM messages WHERE chat_id = ? AND role = 'user' AND {in_user} "
            "UNION ALL SELECT v.text FROM versions v JOIN messages m ON m.id = v.message_id "
            f"WHERE m.chat_id = ? AND {in_reply} LIMIT 1",
            (chat_id, *user_args, chat_id, *reply_args),
        )
        if not rows:
            return ""
        text = " ".join(rows[0]["text"].split())
        at = text.casefold().find(words[0].casefold())
        start = max(0, at - width // 3)
        snippet = text[start : start + width]
        return ("…" if start > 0 else "") + snippet + ("…" if start + width < len(text) else "")

    def load_chat(self, chat_id: int) -> dict[str, Any] | None:
        """The chat with its messages and every reply version, as plain values; a reply
        left streaming by a process that is gone is marked interrupted first."""
        self._mark_interrupted(chat_id)
        chats = self._read("SELECT * FROM chats WHERE id = ?", (chat_id,))
        if not chats:
            return None
        messages = [
            dict(r)
            for r in self._read(
                "SELECT * FROM messages WHERE chat_id = ? ORDER BY position, id", (chat_id,)
            )
        ]
        versions = self._read(
            "SELECT v.* FROM versions v JOIN messages m ON m.id = v.message_id "
            "WHERE m.chat_id = ? ORDER BY v.message_id, v.number",
            (chat_id,),
        )
        by_message: dict[int, list[dict[str, Any]]] = {}
        for version in versions:
            values = dict(version)
            for key in ("token_ids", "params", "stats"):
                values[key] = json.loads(values[key]) if values[key] else None
            by_message.setdefault(values["message_id"], []).append(values)
        for message in messages:
            message["versions"] = by_message.get(message["id"], [])
        return {**dict(chats[0]), "messages": messages}

    def _mark_interrupted(self, chat_id: int) -> None:
        if self.read_only:
            return
        rows = self._read(
            "SELECT v.id, v.writer, v.updated FROM versions v JOIN messages m "
            "ON m.id = v.message_id WHERE m.chat_id = ? AND v.status = 'streaming'",
            (chat_id,),
        )
        for row in rows:
            if row["writer"] != WRITER and not _writer_alive(row["writer"], row["updated"]):
                self._write(
                    [("UPDATE versions SET status = 'interrupted' WHERE id = ?", (row["id"],))]
                )


def _version_columns(values: dict[str, Any]) -> dict[str, Any]:
    row = dict(values)
    for key in ("token_ids", "params", "stats"):
        if key in row and row[key] is not None and not isinstance(row[key], str):
            row[key] = json.dumps(row[key], ensure_ascii=False)
    return row


def _contains_all(column: str, words: list[str]) -> tuple[str, tuple[str, ...]]:
    """SQL that ``column`` holds every one of ``words`` (a LIKE scan), and its arguments."""
    sql = " AND ".join(f"{column} LIKE ? ESCAPE '\\'" for _ in words)
    return sql, tuple(f"%{_escape_like(w)}%" for w in words)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _writer_alive(writer: str | None, updated: float) -> bool:
    """Whether the process that left a reply streaming may still be writing it."""
    if time.time() - updated > STALE_SECONDS:
        return False  # a live writer saves at least once a second
    host, _, pid = (writer or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine's process: only the age can tell
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
