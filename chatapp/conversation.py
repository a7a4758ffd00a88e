"""The conversation as data: turns, every version of each reply, and what produced it.

Widgets render a ``Conversation``; the engine's messages, the exports and the store all
read it. ``ChatSession`` keeps one conversation in step with the ``ChatStore``: a reply's
row exists from the moment it starts, its text is saved at least once a second while it
streams, and again when it ends. No UI and no torch here.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from chatapp import __version__
from chatapp.engine.types import Message, ReplyStats
from chatapp.params import SPEC, SamplingParams
from chatapp.store import ChatStore, ChatSummary

Status = Literal["streaming", "done", "stopped", "error", "interrupted"]
SAVE_INTERVAL = 1.0  # seconds between saves of a streaming reply's text
EXPORT_FORMAT = "chatapp-chat"
EXPORT_VERSION = 1


@dataclass
class ReplyVersion:
    """One generated version of a reply: its text and everything that produced it."""

    params: SamplingParams
    text: str = ""
    model: str = ""
    engine: str = ""
    stats: ReplyStats | None = None
    status: Status = "streaming"
    error: str | None = None
    started: float = field(default_factory=time.time)
    updated: float = 0.0
    finished: float | None = None
    id: int | None = None  # the store's row
    # Held in memory only: the lens steps (recomputed on demand after a restart).
    lens_steps: list[Any] = field(default_factory=list)
    lens_complete: bool = False

    @property
    def seed(self) -> int | None:
        """The seed sampling used: the one drawn when none was set."""
        return self.stats.seed if self.stats is not None else self.params.seed

    @property
    def token_ids(self) -> list[int]:
        """Every generated id, the final stop token included (the lens has a step each)."""
        return list(self.stats.token_ids) if self.stats is not None else []

    def meta(self) -> str:
        """The line under a reply: parameters, speed, and how it ended."""
        parts = [self.params.summary()]
        if self.stats is not None:
            parts.append(
                f"{self.stats.tokens_per_second:.1f} tok/s · first token "
                f"{self.stats.time_to_first_token:.2f} s · {self.stats.new_tokens} tokens"
            )
            if self.stats.seed is not None and self.params.seed is None:
                parts.append(f"seed {self.stats.seed}")
            if self.stats.finish_reason == "length":
                parts.append("hit max_new_tokens")
        if self.status in ("stopped", "interrupted"):
            parts.append(self.status)
        if self.error:
            parts.append(f"error: {self.error}")
        return " · ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """The version as plain values, for an export."""
        return {
            "text": self.text,
            "status": self.status,
            "params": self.params.to_dict(),
            "seed": self.seed,
            "model": self.model,
            "engine": self.engine,
            "stats": self.stats.to_dict() if self.stats is not None else None,
            "error": self.error,
            "started": self.started,
            "finished": self.finished,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReplyVersion:
        """A version from an export or from the store's row."""
        stats = data.get("stats")
        text = data.get("text") or ""
        return cls(
            # Parameters a newer chatapp knows and this one does not are left out.
            params=SamplingParams.from_mapping(
                {k: v for k, v in (data.get("params") or {}).items() if k in SPEC}
            ),
            text=text,
            model=data.get("model") or "",
            engine=data.get("engine") or "",
            stats=ReplyStats.from_dict(stats, text) if stats else None,
            status=data.get("status") or "done",
            error=data.get("error"),
            started=data.get("started") or 0.0,
            updated=data.get("updated") or data.get("finished") or data.get("started") or 0.0,
            finished=data.get("finished"),
        )


@dataclass
class Turn:
    """A user message and the versions of the reply to it (one shown at a time)."""

    user: str
    versions: list[ReplyVersion] = field(default_factory=list)
    shown: int = -1
    created: float = field(default_factory=time.time)
    user_id: int | None = None  # store rows
    reply_id: int | None = None

    @property
    def reply(self) -> ReplyVersion | None:
        """The version shown (None before the first one starts)."""
        return self.versions[self.shown] if self.versions else None


@dataclass
class Conversation:
    """A whole chat: its title, system prompt and turns."""

    title: str = ""
    system: str = ""
    turns: list[Turn] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    id: int | None = None

    def messages(self, upto: int | None = None) -> list[Message]:
        """The engine's messages for the turns before ``upto`` and the user message of
        turn ``upto`` (every turn when None). Replies carry the ids they were generated
        as, so the prompt extends the previous request's exactly."""
        end = len(self.turns) if upto is None else upto + 1
        messages = [Message("system", self.system)] if self.system else []
        for index, turn in enumerate(self.turns[:end]):
            messages.append(Message("user", turn.user))
            reply = turn.reply
            if index == upto or reply is None or not reply.text:
                continue
            ids = reply.stats.reply_ids if reply.stats is not None else None
            messages.append(Message("assistant", reply.text, tuple(ids) if ids else None))
        return messages

    # -- export and import --------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """Every turn and every reply version, with parameters, seed, model and stats."""
        return {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "chatapp": __version__,
            "title": self.title,
            "system": self.system,
            "created": self.created,
            "turns": [
                {
                    "user": turn.user,
                    "created": turn.created,
                    "shown": turn.shown,
                    "versions": [v.to_dict() for v in turn.versions],
                }
                for turn in self.turns
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Conversation:
        """A conversation from ``to_json`` output; raises ValueError when it is not one."""
        if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
            raise ValueError("not a chatapp chat export (its 'format' is not chatapp-chat)")
        if int(data.get("version", 0)) > EXPORT_VERSION:
            raise ValueError(f"written by a newer chatapp (export version {data['version']})")
        raw_turns = data.get("turns")
        if not isinstance(raw_turns, list):
            raise ValueError("it has no list of turns (a chat export always has one)")
        _check_size(data, raw_turns)
        turns = []
        for raw in raw_turns:
            versions = [ReplyVersion.from_dict(v) for v in raw.get("versions", [])]
            shown = int(raw.get("shown", len(versions) - 1))
            turns.append(
                Turn(
                    str(raw["user"]),
                    versions,
                    max(-1, min(shown, len(versions) - 1)),
                    raw.get("created") or time.time(),
                )
            )
        return cls(
            title=str(data.get("title") or ""),
            system=str(data.get("system") or ""),
            turns=turns,
            created=data.get("created") or time.time(),
        )

    def to_markdown(self) -> str:
        """For reading: each turn and the version shown, with its parameters."""
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.created))
        lines = [f"# {self.title or 'chatapp conversation'}", "", f"*{when}*", ""]
        if self.system:
            lines += ["**System:** " + self.system, ""]
        for turn in self.turns:
            lines += ["## You", "", turn.user, ""]
            reply = turn.reply
            if reply is not None:
                header = "## Model"
                if len(turn.versions) > 1:
                    header += f" (version {turn.shown + 1} of {len(turn.versions)})"
                lines += [header, "", reply.text, "", f"*{reply.meta()}*", ""]
        return "\n".join(lines)


def title_from(text: str, width: int = 60) -> str:
    """A chat's automatic title: its first message's first line, shortened."""
    line = next((part.strip() for part in text.splitlines() if part.strip()), "New chat")
    return line if len(line) <= width else line[: width - 1].rstrip() + "…"


class ChatSession:
    """One open conversation, kept in step with the store."""

    def __init__(self, store: ChatStore, system: str = "") -> None:
        self.store = store
        self.chat = Conversation(system=system)
        self._last_save: dict[int, float] = {}  # id(version) -> when its text was saved

    # -- opening ------------------------------------------------------------------------
    def new_chat(self) -> None:
        """Start another chat (the current one stays in the store)."""
        self.chat = Conversation(system=self.chat.system)

    def open(self, chat_id: int) -> bool:
        """Load a stored chat; False when there is none with that id."""
        data = self.store.load_chat(chat_id)
        if data is None:
            return False
        chat = Conversation(
            title=data["title"], system=data["system"], created=data["created"], id=data["id"]
        )
        turn: Turn | None = None
        for message in data["messages"]:
            if message["role"] == "user":
                turn = Turn(message["text"], created=message["created"], user_id=message["id"])
                chat.turns.append(turn)
            elif turn is not None:
                turn.reply_id = message["id"]
                for row in message["versions"]:
                    version = ReplyVersion.from_dict(row)
                    version.id = row["id"]
                    version.updated = row["updated"]
                    turn.versions.append(version)
                if turn.versions:
                    turn.shown = max(0, min(message["shown"], len(turn.versions) - 1))
        self.chat = chat
        return True

    def import_chat(self, chat: Conversation) -> int:
        """Save an imported conversation as a new chat; its id."""
        self.chat = Conversation(title=chat.title, system=chat.system, created=chat.created)
        self._ensure_saved(chat.title or (title_from(chat.turns[0].user) if chat.turns else ""))
        for turn in chat.turns:
            self._save_turn(turn)
            for number, version in enumerate(turn.versions):
                self._save_version(turn, number, version)
            if turn.reply_id is not None and turn.versions:
                self.store.set_shown(turn.reply_id, turn.shown)
            self.chat.turns.append(turn)
        assert self.chat.id is not None
        return self.chat.id

    # -- changing -----------------------------------------------------------------------
    def set_system(self, text: str) -> None:
        """Set the chat's system prompt (saved once the chat is)."""
        self.chat.system = text
        if self.chat.id is not None:
            self.store.update_chat(self.chat.id, system=text)

    def rename(self, chat_id: int, title: str) -> None:
        """Rename a stored chat (the open one or another)."""
        self.store.update_chat(chat_id, title=title)
        if chat_id == self.chat.id:
            self.chat.title = title

    def delete(self, chat_id: int) -> None:
        """Delete a stored chat; deleting the open one starts a new chat."""
        self.store.delete_chat(chat_id)
        if chat_id == self.chat.id:
            self.new_chat()

    def add_user(self, text: str) -> Turn:
        """The user's message, saved at once (the chat is created with its first one)."""
        self._ensure_saved(title_from(text))
        turn = Turn(text)
        self._save_turn(turn)
        self.chat.turns.append(turn)
        return turn

    def start_reply(
        self, turn: Turn, params: SamplingParams, model: str, engine: str
    ) -> ReplyVersion:
        """A new version of ``turn``'s reply, shown and saved (status streaming)."""
        version = ReplyVersion(params, model=model, engine=engine, updated=time.time())
        turn.versions.append(version)
        turn.shown = len(turn.versions) - 1
        self._save_version(turn, turn.shown, version)
        return version

    def stream_text(self, version: ReplyVersion, text: str, force: bool = False) -> None:
        """The reply's text so far; saved when a second has passed since the last save."""
        version.text = text
        now = time.monotonic()
        if force or now - self._last_save.get(id(version), 0.0) >= SAVE_INTERVAL:
            self._last_save[id(version)] = now
            version.updated = time.time()
            if version.id is not None:
                self.store.update_version(version.id, {"text": text, "updated": version.updated})

    def finish_reply(
        self, version: ReplyVersion, stats: ReplyStats | None, error: str | None = None
    ) -> None:
        """The reply's end: its final text, ids, stats and how it ended, saved."""
        if stats is not None:
            version.text = stats.text
        version.stats = stats
        version.error = error
        if error:
            version.status = "error"
        elif stats is not None and stats.finish_reason == "stopped":
            version.status = "stopped"
        else:
            version.status = "done"
        version.finished = version.updated = time.time()
        self._last_save.pop(id(version), None)
        if version.id is not None:
            self.store.update_version(version.id, _columns(version), chat_id=self.chat.id)

    def abandon_reply(self, version: ReplyVersion, text: str) -> None:
        """The app is closing mid-reply: keep what streamed, marked stopped."""
        self.stream_text(version, text, force=True)
        version.status = "stopped"
        version.finished = time.time()
        if version.id is not None:
            self.store.update_version(
                version.id, {"status": "stopped", "finished": version.finished}, self.chat.id
            )

    def show_version(self, turn: Turn, index: int) -> None:
        """Show another version of ``turn``'s reply, and remember it."""
        turn.shown = max(0, min(index, len(turn.versions) - 1))
        if turn.reply_id is not None:
            self.store.set_shown(turn.reply_id, turn.shown)

    # -- reading ------------------------------------------------------------------------
    def list_chats(self, query: str = "") -> list[ChatSummary]:
        """Stored chats, newest first; those that match ``query`` when one is given."""
        return self.store.search(query) if query.strip() else self.store.list_chats()

    # -- saving -------------------------------------------------------------------------
    def _ensure_saved(self, title: str) -> None:
        if self.chat.id is None:
            self.chat.title = self.chat.title or title
            self.chat.id = self.store.create_chat(
                self.chat.title, self.chat.system, self.chat.created
            )

    def _save_turn(self, turn: Turn) -> None:
        assert self.chat.id is not None
        position = 2 * len(self.chat.turns)
        turn.user_id = self.store.add_message(
            self.chat.id, position, "user", turn.user, turn.created
        )
        turn.reply_id = self.store.add_message(
            self.chat.id, position + 1, "assistant", "", turn.created
        )

    def _save_version(self, turn: Turn, number: int, version: ReplyVersion) -> None:
        assert turn.reply_id is not None
        version.id = self.store.add_version(turn.reply_id, number, _columns(version))


def _columns(version: ReplyVersion) -> dict[str, Any]:
    """A version as the store's columns (every one: what it is and how it ended)."""
    stats = version.stats
    return {
        "text": version.text,
        "params": version.params.to_dict(),
        "seed": version.seed,
        "model": version.model,
        "engine": version.engine,
        "stats": stats.to_dict() if stats is not None else None,
        "token_ids": stats.token_ids if stats is not None else None,
        "status": version.status,
        "error": version.error,
        "started": version.started,
        "updated": version.updated or version.started,
        "finished": version.finished,
    }


# What an import takes at most: far more than any chat chatapp writes, far less than a
# file made to exhaust memory. Everything is checked before anything is saved.
MAX_IMPORT_BYTES = 64 * 1024 * 1024
MAX_IMPORT_TEXT = 4_000_000  # characters in one message, reply, title or system prompt
MAX_IMPORT_VERSIONS = 100_000  # reply versions in one chat


def _check_size(data: dict[str, Any], turns: list[Any]) -> None:
    """ValueError when the export holds more than a chat can (see the limits above)."""
    versions = 0
    texts: list[Any] = [data.get("title"), data.get("system")]
    for raw in turns:
        if not isinstance(raw, dict) or not isinstance(raw.get("versions", []), list):
            raise ValueError("a turn is not a chat export's turn")
        versions += len(raw.get("versions", []))
        if versions > MAX_IMPORT_VERSIONS:
            raise ValueError(f"more than {MAX_IMPORT_VERSIONS:,} reply versions")
        texts.append(raw.get("user"))
        texts += [v.get("text") for v in raw.get("versions", []) if isinstance(v, dict)]
    longest = max((len(t) for t in texts if isinstance(t, str)), default=0)
    if longest > MAX_IMPORT_TEXT:
        raise ValueError(f"a text of {longest:,} characters (at most {MAX_IMPORT_TEXT:,})")


def load_export(text: str) -> Conversation:
    """A conversation from an exported JSON file's text; raises ValueError."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc})") from exc
    except RecursionError:
        raise ValueError("its JSON is nested too deeply to be a chat export") from None
    return Conversation.from_json(data)
