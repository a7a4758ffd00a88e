"""A reply's text: Markdown drawn by Rich and kept as lines, grown as it streams."""

from __future__ import annotations

from rich.segment import Segment
from rich.style import Style
from textual.geometry import Region
from textual.selection import Selection
from textual.strip import Strip
from textual.widget import Widget

from chatapp.tui.textual_internals import FastMarkdown, LaidOutOnce

# Code blocks' languages whose highlighting is prepared while the app waits for the first
# message (warm_code_highlighting).
WARM_LANGUAGES = (
    "python", "bash", "javascript", "typescript", "json", "c", "cpp", "rust", "go", "java",
    "html", "sql",
)  # fmt: skip


def warm_code_highlighting(languages: tuple[str, ...] = WARM_LANGUAGES) -> None:
    """Highlight a line of each language once, off screen: Pygments compiles a language's
    regular expressions the first time it is used, and that would fall on the first code
    block a reply streams, in one draw. Meant for a thread once the model is ready, while
    the user types."""
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


class ReplyText(LaidOutOnce, Widget):
    """A reply's text, drawn as Markdown by Rich and kept as lines (Textual's line API).

    Why not Textual's Markdown widget: it mounts a widget per block, and each block it
    mounts, or any change of its height, makes Textual lay out the whole screen again;
    a long reply would be a hundred widgets to lay out at every change.

    Streaming (``start`` then ``show``): a finished block (up to a blank line outside a
    code fence) is rendered once and kept; a flush renders only the block being written
    and repaints only the lines that changed. The height grows a screenful at a time, so
    the screen is laid out once a screenful; ChatLog.follow keeps the last line written
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
            for line in console.render_lines(FastMarkdown(text), options, pad=False)
        ]

    def _render_all(self, width: int) -> None:
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
        fewer are left, it grows to two screenfuls below, or half the lines so far if more:
        each growth is a layout of the whole screen, so a long reply grows
        geometrically, not every screenful. The lines ahead let ChatLog.follow scroll at once, within the height the screen was last laid out
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
            self._render_all(width)
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
            self._render_all(width)  # a new width or theme, or a text that did not grow
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
