"""The chat log: the scrolling list of a conversation's messages, which follows a
streaming reply."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Button, Collapsible, Static

from chatapp.conversation import Conversation, ReplyVersion, Turn
from chatapp.engine.types import StepRecord
from chatapp.thinking import answer_of, split
from chatapp.tui.reply_text import ReplyText
from chatapp.tui.textual_internals import LaidOutOnce

FOLLOW_STEP_DIVISOR = 4  # a followed reply scrolls a quarter of the view at a time
SHOWN_AT_OPEN = 20  # turns mounted when a chat opens (more than a screenful); earlier on request


class _Text(LaidOutOnce, Static):
    """A message's label or text (height auto): a new width (the chat's scrollbar
    appearing) is laid out at once, with no second layout."""


class UserMessage(LaidOutOnce, Vertical):
    """The user's message of one turn."""

    def __init__(self, turn: Turn, index: int) -> None:
        super().__init__(classes="message user-message")
        self.turn = turn
        self.turn_index = index

    @property
    def text(self) -> str:
        return self.turn.user

    def compose(self) -> ComposeResult:
        yield _Text("You", classes="role")
        yield _Text(self.turn.user, classes="body", markup=False)


HIDE_THINKING = "hide_thinking"  # the app's attribute: thinking blocks hidden everywhere


def toggle_thinking(app: Any) -> None:
    """Hide every reply's thinking block, or show them again ("Toggle thinking")."""
    setattr(app, HIDE_THINKING, not getattr(app, HIDE_THINKING, False))
    for message in app.query(AssistantMessage):
        message.answer(message.text)


class AssistantMessage(LaidOutOnce, Vertical):
    """The reply of one turn: shows one of its versions, with its parameters and stats."""

    def __init__(self, turn: Turn, index: int) -> None:
        super().__init__(classes="message assistant-message")
        self.turn = turn
        self.turn_index = index
        self._body = ReplyText(answer_of(turn.reply.text) if turn.reply else "")
        self._thinking_text = _Text("", classes="thinking-text", markup=False)
        self._thinking = Collapsible(
            self._thinking_text, title="Thinking", collapsed=True, classes="thinking"
        )
        self._thinking_closed: bool | None = None  # the thinking block's state, as last set

    def compose(self) -> ComposeResult:
        yield _Text("Model", classes="role")
        yield self._thinking
        yield self._body
        yield _Text("", classes="heat")
        yield _Text("", classes="meta")
        yield _Text("", classes="context-note")

    def on_mount(self) -> None:
        self.query_one(".heat", Static).display = False
        self.query_one(".context-note", Static).display = False
        self._thinking.display = False
        if self.turn.versions:
            self.show_meta()
            self.answer(self.text)

    def answer(self, text: str) -> str:
        """Show ``text``'s thinking in its block (open while it streams, closed once the
        answer begins; the user's own toggle holds until that changes); returns the
        answer, for the body. Called at every draw of a streaming reply: widgets kept,
        nothing queried."""
        parts = split(text)
        block = self._thinking
        shown = parts.thinking is not None and not getattr(self.app, HIDE_THINKING, False)
        if block.display != shown:
            block.display = shown
        if parts.thinking is None:
            return parts.answer
        self._thinking_text.update(parts.thinking)
        closed = parts.thinking_done and bool(parts.answer.strip())
        if closed != self._thinking_closed:
            self._thinking_closed = closed
            block.collapsed = closed
        return parts.answer

    # -- the model's view -----------------------------------------------------------------
    @property
    def versions(self) -> list[ReplyVersion]:
        return self.turn.versions

    @property
    def shown(self) -> int:
        return self.turn.shown

    @property
    def version(self) -> ReplyVersion | None:
        """The version shown, or None before the first reply starts."""
        return self.turn.reply

    @property
    def lens_steps(self) -> list[StepRecord]:
        """The lens steps of the version shown (empty until recorded or recomputed)."""
        return self.version.lens_steps if self.version else []

    @property
    def text(self) -> str:
        return self.version.text if self.version else ""

    @property
    def body(self) -> ReplyText:
        return self._body

    @property
    def shown_text(self) -> str:
        """The reply's text on screen (while streaming, what has been drawn of it)."""
        return self.body.text

    # -- drawing --------------------------------------------------------------------------
    def set_context_note(self, text: str) -> None:
        """What the context window forced for this reply (empty: nothing)."""
        note = self.query_one(".context-note", Static)
        note.update(text)
        note.display = bool(text)

    def show_heat(self, on: bool) -> None:
        """Colour each token by the probability it was drawn with (needs lens data)."""
        from chatapp.tui.lens import heat_markup, strip_markup

        version = self.version
        steps = version.lens_steps if version and version.lens_complete else []
        heat = self.query_one(".heat", Static)
        active = on and bool(steps)
        if active:
            heat.update(
                heat_markup(steps, self.turn_index) + "\n\n" + strip_markup(steps, self.turn_index)
            )
        if heat.display != active:
            heat.display = active
            self.body.display = not active
            # Once more after the next frame: a layout under way when they swapped can
            # measure the message with the text it hid (a reply's padded streaming
            # height), and nothing would ask for another (a blank chat, seen in tests).
            self.call_after_refresh(self.refresh, layout=True)

    def start_streaming(self) -> None:
        """The version just started (the model's newest) streams in from empty."""
        self.body.start()
        self.query_one(".meta", Static).update(f"{self.version.params.summary()} · generating…")

    def show_meta(self) -> None:
        version = self.version
        if version is None:
            return
        meta = version.meta()
        if len(self.versions) > 1:
            meta = f"v{self.shown + 1}/{len(self.versions)} · " + meta
        self.query_one(".meta", Static).update(meta)
        self.set_class(version.status in ("stopped", "interrupted"), "-stopped")

    async def redraw(self) -> None:
        """Show the version the turn now points at."""
        self.body.set_text(self.answer(self.text))
        self.show_meta()


class ChatLog(LaidOutOnce, VerticalScroll):
    """The scrolling list of a chat's messages; a long chat mounts its newest turns first."""

    def relayout_for(self, virtual_size) -> bool:  # noqa: ANN001
        """Lay out again only when the width left for the messages changes: not when the
        content only grew or shrank. The scrollbar's column is kept when it is hidden
        (app.tcss: ``scrollbar-gutter: stable``): it came at the start of a new chat's
        first reply (whose streaming height is padded) and went at its end, each time a
        layout of the whole screen more, with every message drawn anew one column
        narrower or wider."""
        if self.styles.scrollbar_gutter != "stable":  # a stylesheet without the gutter
            height = self.scrollable_content_region.height
            if (virtual_size.height > height) != (self.virtual_size.height > height):
                return True
        return virtual_size.width != self.virtual_size.width

    def __init__(self) -> None:
        super().__init__(classes="chat-log")
        self.chat: Conversation | None = None
        self.first_mounted = 0  # index of the first turn on screen
        # Following a streaming reply (start_following):
        self._followed: ReplyText | None = None
        self._tail_top: int | None = None  # where it starts in the scrolled content
        self._user_moved = False  # the user scrolled since the pane last did
        self._own_scroll = False  # the pane is scrolling (not the user)
        self._measured_width = 0
        # How many follow scrolls were done or put off to a later frame: the stream's
        # next draw waits for the frame that shows the last (ReplyStream).
        self.follow_moves = 0

    def compose(self) -> ComposeResult:
        yield Static(
            "Type a message below and press Enter. Esc stops a reply; F2 hides the "
            "parameter panel; Ctrl+O lists your chats; Ctrl+P opens the command palette.",
            id="welcome",
        )

    async def show_chat(self, chat: Conversation) -> None:
        """Replace what is shown with ``chat`` (its last turns; earlier ones on request)."""
        self.chat = chat
        await self.query(".message, #earlier").remove()
        self.first_mounted = max(0, len(chat.turns) - SHOWN_AT_OPEN)
        widgets = []
        for index in range(self.first_mounted, len(chat.turns)):
            widgets += self._widgets(chat.turns[index], index)
        if self.first_mounted:
            widgets.insert(0, self._earlier_button())
        if widgets:
            await self.mount_all(widgets)
        self.scroll_end(animate=False)

    def _earlier_button(self) -> Button:
        count = self.first_mounted
        return Button(
            f"Show {min(count, SHOWN_AT_OPEN)} earlier turns ({count} not shown)", id="earlier"
        )

    @staticmethod
    def _widgets(turn: Turn, index: int) -> list[Vertical]:
        widgets: list[Vertical] = [UserMessage(turn, index)]
        if turn.versions:
            widgets.append(AssistantMessage(turn, index))
        return widgets

    async def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id != "earlier" or self.chat is None:
            return
        event.stop()
        start = max(0, self.first_mounted - SHOWN_AT_OPEN)
        widgets = []
        for index in range(start, self.first_mounted):
            widgets += self._widgets(self.chat.turns[index], index)
        self.first_mounted = start
        await event.button.remove()
        if start:
            widgets.insert(0, self._earlier_button())
        await self.mount_all(widgets, after=self.query_one("#welcome"))

    async def add_turn(self, turn: Turn, index: int) -> AssistantMessage:
        """Mount a new turn (the user's message and its reply, about to stream)."""
        reply = AssistantMessage(turn, index)
        await self.mount_all([UserMessage(turn, index), reply])
        return reply

    def start_following(self, tail: ReplyText) -> None:
        """Keep ``tail`` (a reply about to stream) in view: its last line written sits near
        the bottom of the view, until the user scrolls away from it (and again once they
        scroll back to it). Its blank lines below stay out of view: Textual's anchor
        would show them."""
        self.anchor(False)
        self._followed, self._tail_top, self._user_moved = tail, None, False
        self.call_after_refresh(self._measure_tail)

    def stop_following(self) -> None:
        self._followed = None

    def _measure_tail(self) -> None:
        """Where the tail starts in the pane's scrolled content (fixed while it streams:
        nothing above it changes, unless the pane's width does)."""
        tail = self._followed
        if tail is not None and tail.is_mounted and tail.display and not tail.region.width:
            self.call_after_refresh(self._measure_tail)  # not laid out yet
            return
        if tail is not None and tail.is_mounted:
            self._tail_top = tail.region.y - self.content_region.y + round(self.scroll_y)
            self._measured_width = self.size.width

    def on_resize(self) -> None:
        # Also sent when only the content's height changed (the tail grew): re-measure
        # only for a new width, which re-wraps the text above the tail.
        if self._followed is not None and self.size.width != self._measured_width:
            self._tail_top = None
            self.call_after_refresh(self._measure_tail)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if self._followed is not None and not self._own_scroll:
            # A position put back into range (a chat that fit the view was left at -4;
            # content that shrank) is Textual's doing, not the user scrolling away.
            clamped = old_value < 0 or old_value > self.max_scroll_y
            if round(old_value) != round(new_value) and not clamped:
                self._user_moved = True

    def follow(self, lines_before: int) -> None:
        """The tail now has more lines than ``lines_before``: scroll them into view, if
        the user is following the reply."""
        if self._tail_top is None:
            self._measure_tail()  # a fast first draw can come before the measuring refresh
        tail, top = self._followed, self._tail_top
        if tail is None or top is None or not self.shows_end(lines_before):
            return  # not measured, or scrolled away to read: stay there
        view, y = self.scrollable_content_region.height, round(self.scroll_y)
        last = top + tail.line_count - 1
        if last < y + view:
            return  # all in view
        # A quarter of the view at a time: each scroll repaints the whole pane, and code
        # streams a line per token. The last line then sits a few lines
        # above the bottom, and the lines below it fill before the next scroll.
        step = max(1, view // FOLLOW_STEP_DIVISOR)
        target = max(0, last - view + step)
        if target > self.max_scroll_y and tail.size.height < tail.layout_height:
            # The tail just grew and the screen is not laid out again yet: the pane
            # cannot scroll that far before it is.
            self.follow_moves += 1
            self.call_after_refresh(self.follow, lines_before)
            return
        self.follow_moves += 1
        self._own_scroll = True
        try:
            self.scroll_to(y=target, animate=False, immediate=True)
        finally:
            self._own_scroll = False

    def _user_scroll_limit(self) -> int | None:
        """While a reply streams and the user scrolls (End, Page Down, the wheel), the
        furthest they may go: its last line written at the view's bottom, not into the
        blank rows it has grown into below (or where the pane's own follow left the view,
        if further). There the last line is in view, so the pane follows it again."""
        tail, top = self._followed, self._tail_top
        if tail is None or top is None or self._own_scroll:
            return None
        view = self.scrollable_content_region.height
        return max(round(self.scroll_y), top + tail.line_count - view)

    def validate_scroll_y(self, value: float) -> float:
        value = super().validate_scroll_y(value)
        limit = self._user_scroll_limit()
        return value if limit is None else min(value, limit)

    def validate_scroll_target_y(self, value: float) -> float:
        value = super().validate_scroll_target_y(value)
        limit = self._user_scroll_limit()
        return value if limit is None else min(value, limit)

    def shows_end(self, lines: int) -> bool:
        """Whether the user follows the tail: they have not scrolled since the pane last
        did, or the last of the tail's first ``lines`` lines is in view (they scrolled back
        to it). True while the tail is not measured yet."""
        top = self._tail_top
        if top is None or not self._user_moved:
            return True
        y = round(self.scroll_y)
        if y <= top + max(lines, 1) - 1 < y + self.scrollable_content_region.height:
            self._user_moved = False
            return True
        return False

    def assistant_messages(self) -> list[AssistantMessage]:
        return list(self.query(AssistantMessage))

    def reply_for(self, turn_index: int) -> AssistantMessage | None:
        for reply in self.query(AssistantMessage):
            if reply.turn_index == turn_index:
                return reply
        return None
