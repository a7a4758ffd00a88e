"""Compare: one message, replies side by side, one column per parameter set.

A pane in compare mode has two to four columns of sampling values (its ``columns``; the
panel edits the focused one). A message then gets one reply per column, generated
together (``Engine.stream_columns``: one batch on the local engine, the same seed for
every column) and streamed into a ``CompareRow``. Every column's reply is a version of
that turn, with its own values, in the history. The focused column is the one the chat
continues from: the next message (or "Keep this column") folds the row into an ordinary
reply showing that version, the others a key away (Alt+Left/Right).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.containers import HorizontalScroll, Vertical
from textual.message import Message as TextualMessage
from textual.timer import Timer
from textual.widgets import Static

from chatapp.conversation import ChatSession, ReplyVersion, Turn
from chatapp.engine.types import EngineError, Message, ReplyInterrupted, ReplyStats
from chatapp.params import SamplingParams
from chatapp.tui.reply_text import ReplyText

if TYPE_CHECKING:  # pragma: no cover
    from chatapp.engine.protocol import Engine
    from chatapp.engine.request_queue import RequestQueue
    from chatapp.tui.chat_log import ChatLog

MAX_COLUMNS = 4
DRAW_INTERVAL = 0.05  # seconds between draws of the columns' new text


def column_header(number: int, params: SamplingParams, first: SamplingParams) -> str:
    """``2 · T 1.2 · top-p 0.5``: the column's number and how it differs from column 1."""
    if number == 1:
        return f"1 · {params.summary()}"
    return f"{number} · {params.difference(first) or 'same as 1'}"


def bar_text(columns: list[SamplingParams], focus: int) -> str:
    """The line above a pane in compare mode: each column, the focused one marked."""
    parts = [
        ("▶ " if i == focus else "") + column_header(i + 1, p, columns[0])
        for i, p in enumerate(columns)
    ]
    return "Compare │ " + " │ ".join(parts)


class ColumnsFinished(TextualMessage):
    """Every column's reply ended (``stats`` in column order), or the request failed."""

    def __init__(self, stats: list[ReplyStats] | None, error: str | None) -> None:
        super().__init__()
        self.stats = stats
        self.error = error


class PartingFound(TextualMessage):
    """Where one column's reply parts from column 1's (``chatapp.engine.divergence``)."""

    def __init__(self, row: CompareRow, column: int, text: str, step: int | None) -> None:
        super().__init__()
        self.row = row
        self.column = column
        self.text = text
        self.step = step  # the first step apart (None: the same tokens)


class ColumnReply(Vertical):
    """One column of a compare row: its header, its reply and how it ended."""

    def __init__(self, number: int, version: ReplyVersion, header: str) -> None:
        super().__init__(classes="compare-column")
        self.number = number
        self.version = version
        self._header = header
        # Where its reply parts from column 1's: the first step apart, and why.
        self.parting: tuple[int | None, str] | None = None

    def compose(self) -> ComposeResult:
        yield Static(self._header, classes="column-header", markup=False)
        yield ReplyText(self.version.text)
        yield Static(self.version.params.summary() + " · generating…", classes="meta")
        yield Static("", classes="parting", markup=False)

    def on_mount(self) -> None:
        self.query_one(".parting", Static).display = False

    def show_parting(self, text: str, step: int | None = None) -> None:
        """Where this column's reply parts from column 1's (``step``), and why."""
        self.parting = (step, text)
        parting = self.query_one(".parting", Static)
        parting.update(text)
        parting.display = bool(text)

    @property
    def body(self) -> ReplyText:
        return self.query_one(ReplyText)

    def show_meta(self) -> None:
        self.query_one(".meta", Static).update(self.version.meta())


class CompareRow(HorizontalScroll):
    """The replies of one turn side by side (more than fit scroll sideways)."""

    def __init__(self, turn: Turn, index: int, first_version: int) -> None:
        super().__init__(classes="message compare-row")
        self.turn = turn
        self.turn_index = index
        self.first_version = first_version  # the turn's version of column 1

    def compose(self) -> ComposeResult:
        versions = self.turn.versions[self.first_version :]
        first = versions[0].params
        for number, version in enumerate(versions, start=1):
            yield ColumnReply(number, version, column_header(number, version.params, first))

    @property
    def columns(self) -> list[ColumnReply]:
        return list(self.query(ColumnReply))

    def mark(self, focus: int) -> None:
        """Show which column the panel edits and the chat continues from."""
        for index, column in enumerate(self.columns):
            column.set_class(index == focus, "-focused")


class ColumnsStream:
    """The compare request of one pane: generated on a worker thread, drawn on a timer."""

    def __init__(
        self,
        owner: Vertical,
        log: ChatLog,
        row: CompareRow,
        session: ChatSession,
        engine: Engine,
        queue: RequestQueue,
    ) -> None:
        self.owner, self.log, self.row = owner, log, row
        self.session, self.engine, self.queue = session, engine, queue
        self.cancel = threading.Event()
        self._lock = threading.Lock()
        columns = row.columns
        self.versions = [c.version for c in columns]
        self.texts = ["" for _ in columns]
        self._pending: list[list[str]] = [[] for _ in columns]
        self._timer: Timer | None = None

    def start(self, messages: list[Message]) -> None:
        self._timer = self.owner.set_interval(DRAW_INTERVAL, self._draw)
        self.owner.run_worker(
            lambda: self._generate(messages), thread=True, group="reply", name="compare"
        )

    def stop(self) -> None:
        self.cancel.set()

    def _on_text(self, row: int, piece: str) -> None:
        with self._lock:
            self._pending[row].append(piece)

    def _generate(self, messages: list[Message]) -> None:
        stats: list[ReplyStats] | None = None
        error = None
        params = [v.params for v in self.versions]
        try:
            with self.queue.turn(self.cancel) as granted:
                if granted:
                    stats = self.engine.stream_columns(
                        messages, params, self._on_text, wait=True, cancel=self.cancel
                    )
                else:
                    stats = [ReplyStats(0, 0, 0.0, 0.0, "stopped") for _ in params]
        except ReplyInterrupted as exc:
            error = str(exc)
        except EngineError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - shown in the message
            error = f"{type(exc).__name__}: {exc}"
        self.owner.post_message(ColumnsFinished(stats, error))

    def _draw(self) -> None:
        """Each column's new text, drawn whole (a column is narrow and its reply short),
        and the chat kept at its end while the user is there."""
        at_end = self.log.scroll_y >= self.log.max_scroll_y - 1
        changed = False
        for index, column in enumerate(self.row.columns):
            with self._lock:
                new = "".join(self._pending[index])
                self._pending[index].clear()
            if not new:
                continue
            self.texts[index] += new
            self.session.stream_text(self.versions[index], self.texts[index])
            column.body.set_text(self.texts[index])
            changed = True
        if changed and at_end:
            self.log.call_after_refresh(self.log.scroll_end, animate=False)

    def keep_partial(self) -> None:
        """The app ends mid-reply: stop, and keep what each column streamed, marked stopped."""
        self.cancel.set()
        for index, version in enumerate(self.versions):
            if version.status == "streaming":
                with self._lock:
                    self.texts[index] += "".join(self._pending[index])
                self.session.abandon_reply(version, self.texts[index])

    def explain_partings(self, messages: list[Message]) -> None:
        """On a worker thread: for each column after the first, where its reply parts
        from column 1's and which stage parted them, posted to the row's pane."""
        versions = self.versions

        def work() -> None:
            first = versions[0]
            for number, version in enumerate(versions[1:], start=2):
                if first.stats is None or version.stats is None:
                    self.owner.post_message(PartingFound(self.row, number - 1, "", None))
                    continue
                try:
                    found = self.engine.divergence(
                        messages,
                        (first.stats.token_ids, version.stats.token_ids),
                        (first.params, version.params),
                        (1, number),
                    )
                except EngineError:  # another pane's reply took the engine: not known
                    self.owner.post_message(PartingFound(self.row, number - 1, "", None))
                    continue
                if found is None and first.stats.token_ids != version.stats.token_ids:
                    continue  # the engine cannot say (a server, the fake engine)
                text = found.text if found is not None else "the same tokens as column 1"
                step = found.step if found is not None else None
                self.owner.post_message(PartingFound(self.row, number - 1, text, step))

        self.owner.run_worker(work, thread=True, group="parting", name="parting")

    def finish(self, event: ColumnsFinished) -> None:
        """Every reply saved whole with its stats, and drawn whole."""
        if self._timer is not None:
            self._timer.stop()
        self._draw()
        for index, column in enumerate(self.row.columns):
            version = self.versions[index]
            stats = event.stats[index] if event.stats is not None else None
            if stats is None and version.text == "":
                version.text = self.texts[index]
            self.session.finish_reply(version, stats, event.error)
            column.body.set_text(version.text)
            column.show_meta()
