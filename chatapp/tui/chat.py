"""The chat pane: renders a ``Conversation``; replies stream into ReplyText."""

from __future__ import annotations

from functools import lru_cache

from markdown_it import MarkdownIt
from rich.markdown import Markdown as RichMarkdown
from rich.segment import Segment
from rich.style import Style
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.geometry import Region
from textual.selection import Selection
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Button, Static

from chatapp.conversation import Conversation, ReplyVersion, Turn
from chatapp.engine.types import StepRecord

FOLLOW_STEP_DIVISOR = 4  # a followed reply scrolls a quarter of the view at a time
SHOWN_AT_OPEN = 20  # turns mounted when a chat opens (more than a screenful); earlier on request


class _LaidOutOnce:
    """A widget whose virtual size matters to no later layout: a layout that gives it a
    new size does not ask for another one.

    Textual sets a widget's ``virtual_size`` (a reactive that asks for a layout) from
    the layout that has just sized it, so every layout that resizes a message (a growing
    reply, at each growth) was followed by a second, whole-screen layout that changed
    nothing (9-10 ms on 2 cores). Only a scrolling container's scrollbars depend on its
    virtual size; ChatPane keeps the second layout when they must appear or go."""

    def _size_updated(self, size, virtual_size, container_size, layout: bool = True) -> bool:
        return super()._size_updated(  # type: ignore[misc]
            size, virtual_size, container_size, layout=layout and self._relayout(virtual_size)
        )

    def _relayout(self, virtual_size) -> bool:
        return False


class _Text(_LaidOutOnce, Static):
    """A message's label or text (height auto): a new width (the chat's scrollbar
    appearing) is laid out at once, with no second layout."""


class UserMessage(_LaidOutOnce, Vertical):
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


@lru_cache(maxsize=1)
def _rich_parser() -> MarkdownIt:
    return MarkdownIt().enable("strikethrough").enable("table")


class _Markdown(RichMarkdown):
    """Rich's Markdown with one parser for every block: Rich builds a new MarkdownIt (and
    its regular expressions) per instance, which was most of a streamed block's cost.
    Sets what ``rich.markdown.Markdown.__init__`` sets, with the same parser options."""

    def __init__(self, markup: str) -> None:
        self.markup = markup
        self.parsed = _rich_parser().parse(markup)
        self.code_theme = "monokai"
        self.justify = None
        self.style = "none"
        self.hyperlinks = True
        self.inline_code_lexer = None
        self.inline_code_theme = self.code_theme


# Code blocks' languages whose highlighting is prepared while the app waits for the first
# message (warm_code_highlighting).
WARM_LANGUAGES = (
    "python", "bash", "javascript", "typescript", "json", "c", "cpp", "rust", "go", "java",
    "html", "sql",
)  # fmt: skip


def warm_code_highlighting(languages: tuple[str, ...] = WARM_LANGUAGES) -> None:
    """Highlight a line of each language once, off screen: Pygments compiles a language's
    regular expressions the first time it is used (Python's ~26 ms, HTML's ~23 ms on 2
    cores), and that fell on the first code block a reply streamed, in one draw. Meant
    for a thread once the model is ready (~120 ms for these, while the user types)."""
    import io

    from rich.console import Console
    from rich.syntax import Syntax

    console = Console(file=io.StringIO(), width=40, color_system="truecolor")
    for language in languages:
        console.print(Syntax("x = 1", language, theme="monokai"))


TAIL_STEP = 6  # the fewest lines a streaming reply grows by at a time (each is a layout)


def _is_fence(line: str) -> bool:
    stripped = line.lstrip()
    return stripped.startswith("```") or stripped.startswith("~~~")


class ReplyText(_LaidOutOnce, Widget):
    """A reply's text, drawn as Markdown by Rich and kept as lines (Textual's line API).

    Why not Textual's Markdown widget: it mounts a widget per block, and each block it
    mounts, or any change of its height, makes Textual lay out the whole screen again
    (20-40 ms on 2 cores); a long reply was 100 widgets to lay out at every change.

    Streaming (``start`` then ``show``): a finished block (up to a blank line outside a
    code fence) is rendered once and kept; a flush renders only the block being written
    and repaints only the lines that changed. The height grows a screenful at a time, so
    the screen is laid out once a screenful; ChatPane.follow keeps the last line written
    at the bottom of the view and the blank lines below out of it. When the reply ends,
    ``set_text`` renders the whole text once more as one document (lists and code that
    span blank lines render as Markdown means them) and the height becomes exact."""

    DEFAULT_CSS = "ReplyText { height: auto; }"

    def __init__(self, text: str = "") -> None:
        super().__init__(classes="body")
        self.text = text
        self.streaming = False
        self._lines = 0  # the height given to the layout
        self._reset(0)

    def _reset(self, width: int) -> None:
        self._width = width
        self._style = self.rich_style if width else None  # looked up once: it is not cheap
        self._blank = Strip.blank(width, self._style)
        self._done: list[Strip] = []  # finished blocks' lines, each block then a blank line
        self._block_start = 0  # where the block being written starts in ``text``
        self._scanned = 0  # the end of the last whole line looked at
        self._in_fence = False
        self._live: list[Strip] = []  # the block being written

    @property
    def line_count(self) -> int:
        """Lines of drawn text (while streaming, the widget may be taller)."""
        return len(self._done) + len(self._live)

    @property
    def rendered(self) -> bool:
        """The lines are those of the text and width shown (no render is pending)."""
        return self._width != 0 and self._width == self.content_size.width

    @property
    def layout_height(self) -> int:
        """The height asked of the next layout (while streaming, above its text)."""
        return self._lines

    @property
    def lines(self) -> list[Strip]:
        """The lines drawn."""
        return self._done + self._live

    def _render_block(self, text: str) -> list[Strip]:
        console, width, style = self.app.console, self._width, self._style
        options = console.options.update_width(width)
        # One Strip per line, styled and padded to the width in one go: each Strip makes
        # seven caches, and Strip(...).apply_style(...).crop_extend(...) made four.
        apply_style, fit = Segment.apply_style, Segment.adjust_line_length
        return [
            Strip(fit(list(apply_style(line, style)), width, style), width)
            for line in console.render_lines(_Markdown(text), options, pad=False)
        ]

    def _render(self, width: int) -> None:
        """Render the whole text at ``width`` (a new width, a new theme, or a new text)."""
        self._reset(width)
        if self.streaming:
            self._advance()
            self._lines = self._padded(self.line_count)
        else:
            self._done = self._render_block(self.text) if self.text.strip() else []
            self._block_start = self._scanned = len(self.text)
            self._lines = len(self._done)

    def _advance(self) -> int:
        """Render the blocks finished since the last call, and the block being written.
        Returns the first line that changed."""
        text = self.text
        first_changed = len(self._done)
        while (end := text.find("\n", self._scanned)) >= 0:
            line = text[self._scanned : end]
            if _is_fence(line):
                self._in_fence = not self._in_fence
            elif not line.strip() and not self._in_fence:
                block = text[self._block_start : self._scanned]
                if block.strip():
                    self._done += self._render_block(block)
                    self._done.append(self._blank)
                self._block_start = end + 1
            self._scanned = end + 1
        live = text[self._block_start :]
        self._live = self._render_block(live) if live.strip() else []
        return first_changed

    def _padded(self, lines: int) -> int:
        """The streaming height: a screenful or more of blank lines below the text. When
        fewer are left, it grows to two screenfuls below, or half the lines so far if more
        (each growth is a layout of the whole screen, ~10-30 ms: a long fast reply grew
        every screenful, 20 layouts for 800 lines; now 9). The lines ahead let
        ChatPane.follow scroll at once, within the height the screen was last laid out
        with, while a growth's layout is pending."""
        screen = max(TAIL_STEP, self.screen.size.height)
        if lines + screen <= self._lines:
            return self._lines
        return lines + max(2 * screen, lines // 2)

    def _render_at_next_layout(self) -> None:
        self._width = 0  # no width matches: get_content_height renders it all
        self.refresh(layout=True)

    def notify_style_update(self) -> None:
        """A new theme (or class): the kept lines carry the old colours; render anew."""
        super().notify_style_update()
        if self._width and self._style != self.rich_style:
            self._render_at_next_layout()

    def get_content_height(self, container, viewport, width: int) -> int:
        if width != self._width:
            self._render(width)
        return self._lines

    def start(self) -> None:
        """A reply starts streaming into this widget, from empty."""
        self.streaming = True
        self.text = ""
        self._reset(self._width)
        self._lines = 0
        self.refresh(layout=True)

    def show(self, text: str) -> bool:
        """Draw the streaming ``text`` (grown from the last call's). True only when the
        widget has no width yet: it is drawn at its first layout, and has no lines yet to
        scroll to."""
        width = self.content_size.width
        if not width:
            self.text = text
            self._render_at_next_layout()  # the first layout gives it a width
            return True
        if width != self._width or not text.startswith(self.text[: self._scanned]):
            self.text = text
            self._render(width)  # a new width or theme, or a text that did not grow
            first_changed = 0
        else:
            self.text = text
            first_changed = self._advance()
        total = self.line_count
        height = self._padded(total)
        if height > self._lines:
            self._lines = height
            self.refresh(layout=True)  # a layout: once a screenful of lines
        elif total > first_changed:
            self.refresh(Region(0, first_changed, width, total - first_changed))
        return False

    def set_text(self, text: str) -> None:
        """Show ``text`` whole (a finished reply): one document, the exact height."""
        self.streaming = False
        self.text = text
        self._render_at_next_layout()

    def render_line(self, y: int) -> Strip:
        done = len(self._done)
        if y < done:
            strip = self._done[y]
        elif y - done < len(self._live):
            strip = self._live[y - done]
        else:
            return self._blank
        selection = self.text_selection
        if selection is not None and (span := selection.get_span(y)) is not None:
            strip = self._selected(strip, *span)
        return strip

    # -- selecting text with the mouse (Textual's Markdown widget allowed it) --------------
    def get_selection(self, selection: Selection) -> tuple[str, str] | None:
        return selection.extract("\n".join(line.text.rstrip() for line in self.lines)), "\n"

    def selection_updated(self, selection: Selection | None) -> None:
        self.refresh()

    def _selected(self, strip: Strip, start: int, end: int) -> Strip:
        """``strip`` with cells ``start`` to ``end`` (-1: the line's end) highlighted."""
        length = len(strip.text.rstrip())
        end = length if end == -1 else min(end, length)
        if end <= start:
            return strip
        style = self.screen.get_component_rich_style("screen--selection")
        before, middle, after = strip.divide([start, end, strip.cell_length])
        middle = Strip([Segment(t, (s or Style()) + style) for t, s, _ in middle], end - start)
        return Strip.join([before, middle, after])


class AssistantMessage(_LaidOutOnce, Vertical):
    """The reply of one turn: shows one of its versions, with its parameters and stats."""

    def __init__(self, turn: Turn, index: int) -> None:
        super().__init__(classes="message assistant-message")
        self.turn = turn
        self.turn_index = index

    def compose(self) -> ComposeResult:
        version = self.turn.reply
        yield _Text("Model", classes="role")
        self._body = ReplyText(version.text if version else "")
        yield self._body
        yield _Text("", classes="heat")
        yield _Text("", classes="meta")
        yield _Text("", classes="context-note")

    def on_mount(self) -> None:
        self.query_one(".heat", Static).display = False
        self.query_one(".context-note", Static).display = False
        if self.turn.versions:
            self.show_meta()

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
        from chatapp.tui.lens import heat_markup

        version = self.version
        steps = version.lens_steps if version and version.lens_complete else []
        heat = self.query_one(".heat", Static)
        active = on and bool(steps)
        if active:
            heat.update(heat_markup(steps, self.turn_index))
        heat.display = active
        self.body.display = not active

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
        self.body.set_text(self.text)
        self.show_meta()


class ChatPane(_LaidOutOnce, VerticalScroll):
    """The scrolling list of messages; a long chat mounts its newest turns first."""

    def _relayout(self, virtual_size) -> bool:
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
        super().__init__(id="chat")
        self.chat: Conversation | None = None
        self.first_mounted = 0  # index of the first turn on screen
        # Following a streaming reply (start_following):
        self._followed: ReplyText | None = None
        self._tail_top: int | None = None  # where it starts in the scrolled content
        self._user_moved = False  # the user scrolled since the pane last did
        self._own_scroll = False  # the pane is scrolling (not the user)
        self._measured_width = 0
        # How many follow scrolls were done or put off to a later frame: the stream's
        # next draw waits for the frame that shows the last (ReplyStreaming).
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
        # A quarter of the view at a time: each scroll repaints the whole pane (~10 ms on
        # 2 cores) and code streams a line per token. The last line then sits a few lines
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
