"""A chat pane: one conversation on screen, with the reply streaming into it.

The pane owns its conversation (a ``ChatSession`` over the shared history) and its
streaming reply (a ``ReplyStream``); several panes can stream at once. It tells the app
what to show in the status line and when a reply ends with small messages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from textual import events, on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message as TextualMessage
from textual.widgets import Static

from chatapp import paths
from chatapp.attachments import AttachmentError, expand
from chatapp.conversation import ChatSession
from chatapp.engine.context import ContextTooLong
from chatapp.engine.protocol import Engine
from chatapp.engine.request_queue import RequestQueue
from chatapp.engine.types import Message, ReplyStats
from chatapp.params import SamplingParams
from chatapp.store import ChatStore
from chatapp.tui.chat_log import AssistantMessage, ChatLog
from chatapp.tui.compare import ColumnsFinished, PartingFound
from chatapp.tui.compare_mode import CompareMode
from chatapp.tui.events import ReplyFinished
from chatapp.tui.reply_stream import ReplyStream


class ChatPane(Vertical):
    """One conversation: its log of messages, its session and its streaming reply."""

    class Status(TextualMessage):
        """What the status line should say for this pane."""

        def __init__(self, pane: ChatPane, text: str) -> None:
            super().__init__()
            self.pane = pane
            self.text = text

    class Chosen(TextualMessage):
        """The user clicked in this pane: it becomes the focused one."""

        def __init__(self, pane: ChatPane) -> None:
            super().__init__()
            self.pane = pane

    class ReplyStarted(TextualMessage):
        """A reply started streaming in this pane."""

        def __init__(self, pane: ChatPane) -> None:
            super().__init__()
            self.pane = pane

    class ColumnFocused(TextualMessage):
        """Compare: another column of this pane is the focused one (the panel shows it)."""

        def __init__(self, pane: ChatPane) -> None:
            super().__init__()
            self.pane = pane

    class PartingShown(TextualMessage):
        """Compare: where a column's reply parts from column 1's is now known."""

        def __init__(self, pane: ChatPane) -> None:
            super().__init__()
            self.pane = pane

    class ReplyEnded(TextualMessage):
        """A reply of this pane ended and is drawn whole."""

        def __init__(self, pane: ChatPane, reply: AssistantMessage | None, failed: bool) -> None:
            super().__init__()
            self.pane = pane
            self.reply = reply
            self.failed = failed

    def __init__(
        self, history: ChatStore, params: SamplingParams, system: str = "", **kwargs: object
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.session = ChatSession(history, system)
        # The values the next reply is sampled with: one set, or one per compare column
        # (``params`` is the focused column's, which the panel edits).
        self.compare = CompareMode(self, params)
        self.engine: Engine | None = None  # set once the model is ready
        self.queue = RequestQueue()
        self.stream: ReplyStream | None = None  # the reply streaming now, if any
        self.record_lens = False  # the lens or heat map is on: replies record their steps
        self.heat_on = False
        self.replies_done = 0  # finished replies (tests and the UI benchmark wait on it)
        self.stream_repairs = 0  # replies whose streamed text was replaced at the end

    def compose(self) -> ComposeResult:
        yield Static("", classes="compare-bar", markup=False)
        yield ChatLog()

    def on_mount(self) -> None:
        self.compare.show_bar()

    @on(events.Click)
    def _clicked(self) -> None:
        self.post_message(self.Chosen(self))

    @property
    def log(self) -> ChatLog:
        """The scrolling list of messages."""
        return self.query_one(ChatLog)

    @property
    def params(self) -> SamplingParams:
        return self.compare.columns[self.compare.focus]

    @params.setter
    def params(self, value: SamplingParams) -> None:
        self.compare.set_params(value)

    @property
    def streaming(self) -> bool:
        return self.stream is not None or self.compare.stream is not None

    def attach(self, engine: Engine, queue: RequestQueue) -> None:
        """The model is ready: replies go to ``engine``, taking turns through ``queue``."""
        self.engine, self.queue = engine, queue

    def _say(self, text: str) -> None:
        self.post_message(self.Status(self, text))

    # -- sending --------------------------------------------------------------------------
    def _refused(self, messages: list[Message]) -> bool:
        """True (and says why) when the newest message cannot fit the context window."""
        assert self.engine is not None
        try:
            self.engine.plan(messages, self.params)
        except ContextTooLong as exc:
            self.notify(str(exc), title="Too long for the context window", severity="error")
            self._say(str(exc))
            return True
        return False

    def _busy(self) -> bool:
        if self.streaming:
            self.notify("A reply is still streaming: Esc stops it.", severity="warning")
            return True
        return False

    def can_send(self, text: str) -> bool:
        """Whether ``text`` can be sent now; if not, says why (the message box then keeps
        the text)."""
        return not (
            self._busy() or self._refused([*self.session.chat.messages(), Message("user", text)])
        )

    async def send(self, text: str, accepted: Callable[[], None] = lambda: None) -> bool:
        """Send the user's message and stream the reply (one per column in compare mode);
        False (and says why) if it cannot be sent now. ``accepted`` runs once it can,
        before the turn is mounted."""
        assert self.engine is not None
        try:
            text, _ = expand(text)  # @path: the file's text goes into the message
        except AttachmentError as exc:
            self.notify(f"{exc}. Nothing was sent.", title="Not attached", severity="error")
            return False
        if not self.can_send(text):
            return False
        accepted()
        await self.compare.keep()
        turn = self.session.add_user(text)
        index = len(self.session.chat.turns) - 1
        if len(self.compare.columns) > 1:
            await self.compare.send(turn, index)
            return True
        self._begin_version(index)
        await self.log.add_turn(turn, index)
        self._start_reply(index)
        return True

    def can_regenerate(self) -> bool:
        """Whether the last reply can be regenerated now; if not, says why."""
        turns = self.session.chat.turns
        if not turns or self.log.reply_for(len(turns) - 1) is None:
            self.notify("Nothing to regenerate yet.", severity="warning")
            return False
        return not (self._busy() or self._refused(self.session.chat.messages(upto=len(turns) - 1)))

    async def regenerate(self, accepted: Callable[[], None] = lambda: None) -> None:
        """A new version of the last reply, sampled with the pane's values (``accepted``
        runs first, if it can be made now)."""
        if self.can_regenerate():
            accepted()
            last = len(self.session.chat.turns) - 1
            self._begin_version(last)
            self._start_reply(last)

    def _begin_version(self, index: int) -> None:
        assert self.engine is not None
        turn = self.session.chat.turns[index]
        self.session.start_reply(
            turn, self.params, self.engine.model_name, self.engine.engine_label()
        )

    def _start_reply(self, index: int) -> None:
        assert self.engine is not None
        reply = self.log.reply_for(index)
        assert reply is not None and reply.version is not None
        self.stream = ReplyStream(
            self,
            self.log,
            reply,
            self.session,
            self.engine,
            self.queue,
            record_lens=self.record_lens,
            on_waiting=lambda: self.app.call_from_thread(self._waiting),
        )
        self.post_message(self.ReplyStarted(self))
        self._say(f"Generating ({reply.version.params.summary()}) · Esc stops")
        self.stream.start(self.session.chat.messages(upto=index))

    def _waiting(self) -> None:
        if self.stream is not None and not self.stream.cancel.is_set():
            self.stream.reply.set_context_note("Waiting for the model (another reply is using it)")
            self._say("Waiting for the model: another reply is being generated · Esc cancels")

    def stop(self) -> bool:
        """Esc: stop this pane's reply (or take it out of the queue); False if none."""
        if self.compare.stream is not None:
            self.compare.stream.stop()
        elif self.stream is not None:
            self.stream.stop()
        else:
            return False
        self._say("Stopping…")
        return True

    def set_record_lens(self, on: bool) -> None:
        """Record lens steps from now on (the reply streaming now included)."""
        self.record_lens = on
        if self.stream is not None:
            self.stream.recorder.active = on

    # -- the end of a reply -----------------------------------------------------------------
    @on(ReplyFinished)
    async def _reply_finished(self, event: ReplyFinished) -> None:
        event.stop()
        # Saved whole first: a quit while its end is still being drawn keeps all of it.
        self.session.finish_reply(event.version, event.stats, event.error)
        if self.stream is not None and self.stream.needs_drain():
            # Its end is drawn a view at a time over a few frames: in a task of its own,
            # so that keys typed meanwhile are handled at once.
            self.run_worker(self._finish_reply(event), group="finish")
        else:
            await self._finish_reply(event)

    async def _finish_reply(self, event: ReplyFinished) -> None:
        stream = self.stream
        if stream is None:
            return
        await stream.finish(event)
        self.stream = None
        self.stream_repairs += stream.repaired
        reply = stream.reply
        reply.set_context_note("")
        reply.show_meta()
        reply.show_heat(self.heat_on)
        self.replies_done += 1
        stats, error = event.stats, event.error
        if error:
            self.notify(error, title="Generation failed", severity="error")
            self._say("Generation failed: " + error)
        elif stats is not None:
            self.show_context(reply, stats)
            used = stats.prompt_tokens + stats.new_tokens
            window = f"/{stats.window:,}" if stats.window else " (the server's window is unknown)"
            self._say(f"Done · {stats.summary()} · context {used:,}{window}")
        self.post_message(self.ReplyEnded(self, reply, failed=bool(error)))

    # -- compare (chatapp.tui.compare_mode) ------------------------------------------------
    @on(ColumnsFinished)
    def _columns_finished(self, event: ColumnsFinished) -> None:
        event.stop()
        self.compare.finished(event)

    @on(PartingFound)
    def _parting_found(self, event: PartingFound) -> None:
        event.stop()
        columns = event.row.columns if event.row.is_mounted else []
        if event.column < len(columns):
            log = self.log
            at_end = log.scroll_y >= log.max_scroll_y - 1
            columns[event.column].show_parting(event.text, event.step)
            self.post_message(self.PartingShown(self))
            if at_end:  # the line comes after the reply ended: keep the chat's end in view
                log.call_after_refresh(log.scroll_end, animate=False)

    def show_context(self, reply: AssistantMessage, stats: ReplyStats) -> None:
        """Say at the reply what the window forced, and dim the turns left out."""
        notes = []
        if stats.left_out:
            turns = "turn" if stats.left_out == 1 else "turns"
            notes.append(
                f"{stats.left_out} earlier {turns} no longer fit the {stats.window:,}-token "
                "window and were left out of this reply"
            )
        if stats.clipped:
            notes.append(f"max_new_tokens clipped to {stats.max_new_tokens} to fit the window")
        reply.set_context_note(" · ".join(notes))
        for widget in self.log.query(".message"):
            widget.set_class(widget.turn_index < stats.left_out, "-left-out")

    def on_unmount(self) -> None:
        self.keep_partial_reply()

    def keep_partial_reply(self) -> None:
        """However the app ends, a reply still generating is asked to stop, and what it
        streamed so far is kept, marked stopped."""
        stream, self.stream = self.stream, None
        if stream is not None:
            stream.keep_partial()
        columns, self.compare.stream = self.compare.stream, None
        if columns is not None:
            columns.keep_partial()

    # -- versions and chats ---------------------------------------------------------------
    async def show_version(self, step: int) -> None:
        """Show the previous (-1) or next (+1) version of the last reply."""
        replies = self.log.assistant_messages()
        if not replies or self.streaming:
            return
        reply = replies[-1]
        self.session.show_version(reply.turn, reply.shown + step)
        await reply.redraw()
        reply.show_heat(self.heat_on)

    async def stop_and_wait(self) -> None:
        """Stop the reply streaming, if any, and wait until it has ended (this pane's
        workers only: another pane's reply goes on)."""
        if not self.streaming:
            return
        self.stop()
        while self.streaming:
            mine = [worker for worker in self.workers if worker.node is self]
            if mine:
                await self.workers.wait_for_complete(mine)
            else:  # its end is on its way to this pane as a message
                await asyncio.sleep(0.01)

    async def show_session_chat(self) -> None:
        """Show the session's chat from the start (a new or opened chat)."""
        self.compare.row = None
        await self.log.show_chat(self.session.chat)
        if self.engine is not None:
            self.engine.reset()  # the KV cache is rebuilt from the next message's prompt
        replies = self.log.assistant_messages()
        if replies and replies[-1].version and replies[-1].version.stats is not None:
            self.show_context(replies[-1], replies[-1].version.stats)

    async def new_chat(self) -> None:
        """Start a new chat; the one on screen stays in the history."""
        await self.stop_and_wait()
        self.session.new_chat()
        await self.show_session_chat()
        self._say("New chat")

    async def open_chat(self, chat_id: int) -> SamplingParams | None | bool:
        """Show a stored chat. Returns the values of its last reply (None if it has none),
        or False (and a message) when there is no chat with that id."""
        await self.stop_and_wait()
        if not self.session.open(chat_id):
            self.notify(f"No chat with id {chat_id} in {self.session.store.path}", severity="error")
            return False
        await self.show_session_chat()
        chat = self.session.chat
        self._say(f"Opened chat {chat.id}: {chat.title} · {len(chat.turns)} turns")
        last = next((t.reply for t in reversed(chat.turns) if t.reply is not None), None)
        return last.params if last is not None else None

    def export(self, fmt: str = "md") -> Path:
        """Write the chat to the data folder as Markdown or JSON; returns its path."""
        import json
        import time

        chat = self.session.chat
        if fmt == "json":
            text = json.dumps(chat.to_json(), ensure_ascii=False, indent=2)
        else:
            text = chat.to_markdown()
        name = f"chat-{chat.id or 'new'}-{time.strftime('%Y%m%d-%H%M%S')}.{fmt}"
        path = paths.data_dir() / "exports" / name
        paths.atomic_write_text(path, text)
        return path
