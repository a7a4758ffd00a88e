"""A chat pane's compare columns: their values, the focused one, the last compare row
and its stream (the widgets and the stream are in ``chatapp.tui.compare``)."""

from __future__ import annotations

from typing import Any

from textual.widgets import Static

from chatapp.conversation import Turn
from chatapp.params import SamplingParams
from chatapp.tui.chat_log import AssistantMessage, UserMessage
from chatapp.tui.compare import (
    MAX_COLUMNS,
    ColumnsFinished,
    ColumnsStream,
    CompareRow,
    bar_text,
)


class CompareMode:
    """One column of values (compare off), or two to four; the panel edits ``focus``'s."""

    def __init__(self, pane: Any, params: SamplingParams) -> None:
        self.pane = pane  # the ChatPane that owns it (which imports this module)
        self.columns: list[SamplingParams] = [params]
        self.focus = 0
        self.row: CompareRow | None = None  # the last compare, not folded yet
        self.stream: ColumnsStream | None = None  # its replies, while they stream

    def set_params(self, value: SamplingParams) -> None:
        if value != self.columns[self.focus]:
            self.columns[self.focus] = value
            if self.pane.is_mounted:
                self.show_bar()

    def show_bar(self) -> None:
        bar = self.pane.query_one(".compare-bar", Static)
        bar.display = len(self.columns) > 1
        if bar.display:
            bar.update(bar_text(self.columns, self.focus))

    # -- the columns ----------------------------------------------------------------------
    def add(self) -> bool:
        """Another column, a copy of the focused one's values; it becomes the focused
        one. False (and says why) at the most columns."""
        if len(self.columns) >= MAX_COLUMNS:
            self.pane.notify(f"At most {MAX_COLUMNS} columns.", severity="warning")
            return False
        self.columns.append(self.columns[self.focus])
        self.focus_on(len(self.columns) - 1)
        return True

    def close(self) -> None:
        """Close the focused column (one left: compare is off)."""
        if len(self.columns) > 1:
            del self.columns[self.focus]
            self.focus_on(min(self.focus, len(self.columns) - 1))

    def next(self) -> None:
        self.focus_on((self.focus + 1) % len(self.columns))

    def focus_on(self, index: int) -> None:
        """Column ``index`` is the focused one: the panel shows it, and the last compare's
        reply in that column is the one the chat continues from."""
        pane = self.pane
        self.focus = index
        self._show_focused()
        self.show_bar()
        pane.post_message(pane.ColumnFocused(pane))
        if len(self.columns) > 1:
            pane.post_message(
                pane.Status(
                    pane,
                    f"Compare: column {index + 1} of {len(self.columns)} · the panel edits it · "
                    "F12 next column · F5 add · Shift+F5 close",
                )
            )
        else:
            pane.post_message(pane.Status(pane, "Compare off: one reply per message"))

    def _show_focused(self) -> None:
        """The last compare marks the focused column, whose reply the turn shows."""
        row = self.row
        if row is None:
            return
        if self.stream is None:
            shown = row.first_version + min(self.focus, len(row.columns) - 1)
            self.pane.session.show_version(row.turn, shown)
        row.mark(self.focus)

    async def keep(self) -> None:
        """The chat continues from the focused column's reply: the last compare row folds
        into an ordinary reply showing it (the other columns stay as its versions)."""
        row, self.row = self.row, None
        if row is None or not row.is_mounted:
            return
        keep = row.first_version + min(self.focus, len(row.columns) - 1)
        self.pane.session.show_version(row.turn, keep)
        reply = AssistantMessage(row.turn, row.turn_index)
        await self.pane.log.mount(reply, after=row)
        await row.remove()
        reply.show_heat(self.pane.heat_on)

    # -- a message to every column --------------------------------------------------------
    async def send(self, turn: Turn, index: int) -> None:
        """One reply per column to the turn just added, streamed side by side."""
        pane = self.pane
        engine = pane.engine
        assert engine is not None
        first = len(turn.versions)
        for params in self.columns:
            pane.session.start_reply(turn, params, engine.model_name, engine.engine_label())
        row = CompareRow(turn, index, first)
        await pane.log.mount_all([UserMessage(turn, index), row])
        row.mark(self.focus)
        self.row = row
        pane.log.scroll_end(animate=False)
        self.stream = ColumnsStream(pane, pane.log, row, pane.session, engine, pane.queue)
        pane.post_message(pane.ReplyStarted(pane))
        pane.post_message(
            pane.Status(pane, f"Generating {len(self.columns)} replies side by side · Esc stops")
        )
        self.stream.start(pane.session.chat.messages(upto=index))

    def finished(self, event: ColumnsFinished) -> None:
        """Every column's reply ended: saved and drawn whole, then the partings asked."""
        pane = self.pane
        stream, self.stream = self.stream, None
        if stream is None:
            return
        stream.finish(event)
        pane.replies_done += 1
        if event.error:
            pane.notify(event.error, title="Generation failed", severity="error")
            text = "Generation failed: " + event.error
        else:
            stream.explain_partings(pane.session.chat.messages(upto=stream.row.turn_index))
            text = (
                f"Done · {len(stream.versions)} replies · the chat continues from column "
                f"{self.focus + 1} (F12: another)"
            )
        self._show_focused()
        pane.post_message(pane.Status(pane, text))
        pane.post_message(pane.ReplyEnded(pane, None, failed=bool(event.error)))
