"""The one place where chatapp relies on Textual's and Rich's private names.

Everything here goes below Textual's public API, for speed or for key order, and may break
with a Textual release: ``PRIVATE_NAMES`` lists each private name this module relies on
(tests/test_textual_internals.py checks every one by name), and ``version_warning`` says
in one line when the installed Textual is outside the range this was written for. The
rest of the app uses public APIs only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

import textual
from markdown_it import MarkdownIt
from rich.markdown import Markdown as RichMarkdown
from textual import events
from textual._compositor import Compositor
from textual.app import App
from textual.geometry import Region
from textual.screen import Screen
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Input, TextArea

WRITTEN_FOR = ((8, 0), (9, 0))  # Textual versions: from the first, up to the second

# (where, name): every private name used below. "where" is a class, or a callable that
# makes an object to look the name up on (for attributes set in __init__).
PRIVATE_NAMES: list[tuple[Any, str]] = [
    (Compositor, "reflow"),
    (Compositor, "reflow_visible"),
    (Compositor, "render_partial_update"),
    (Compositor, "_get_renders"),
    (Compositor, "visible_widgets"),
    (Compositor, "_full_map"),
    (Compositor, "_visible_map"),
    (Compositor, "_dirty_regions"),
    (Compositor, "_full_map_invalidated"),
    (Screen, "_compositor"),
    (App, "_batch_count"),
    (App, "_display"),
    (App, "_notifications"),
    (Screen, "_refresh_layout"),
    (Screen, "_layout_widgets"),
    (Screen, "_dirty_widgets"),
    (Widget, "_size_updated"),
    (Widget, "_layout_required"),
    (Widget, "_repaint_required"),
    (Widget, "_scroll_required"),
    (Widget, "_bindings"),
    (Widget, "_check_refresh"),
    (Input, "_on_key"),
    (TextArea, "_on_key"),
]
# What rich.markdown.Markdown.__init__ sets (FastMarkdown sets the same, and no more).
RICH_MARKDOWN_FIELDS = (
    "markup", "parsed", "code_theme", "justify", "style", "hyperlinks", "inline_code_lexer",
    "inline_code_theme",
)  # fmt: skip


def _version(text: str) -> tuple[int, int]:
    major, minor, *_ = (text.split(".") + ["0", "0"])[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


@lru_cache(maxsize=1)
def version_warning() -> str | None:
    """One line when the installed Textual is outside the range this module was written
    for (the app then runs on, and says so); None inside it."""
    low, high = WRITTEN_FOR
    if low <= _version(textual.__version__) < high:
        return None
    return (
        f"Textual {textual.__version__} is outside the range chatapp was written for "
        f"({low[0]}.{low[1]} to before {high[0]}.{high[1]}); the screen may misbehave."
    )


# -- drawing: a compositor that draws a partial update from only what it covers -------
class UpdateCompositor(Compositor):
    """Textual's compositor, drawing less.

    Textual draws a partial update (a few lines of a streaming reply) by asking every
    visible widget whose *container* overlaps the box around the update for all its
    visible lines, then keeping the lines the update covers: each draw rendered the
    message box, the panel, the status line and the footer only to throw their lines
    away. This asks only the widgets whose visible part an update region covers, only for
    those rows, and skips rows hidden behind widgets in front. It also keeps a layout's
    geometry for the scroll that follows it, so that scroll draws only what moved.
    tests/test_screen_updates.py feeds every update to a terminal emulator and compares
    it with the whole screen drawn at once.
    """

    _updating: list[Region] | None = None  # the regions of the partial update under way
    # The full map is the geometry last drawn: a layout arranged it and no scroll has
    # been drawn since.
    _full_map_drawn = False

    def reflow(self, parent, size):  # noqa: ANN001, ANN201 - Textual's ReflowResult
        """Textual's layout, which arranges the full map but leaves it marked stale when a
        scroll's reflow came before: the size checks right after the layout would then
        arrange the whole screen again, for nothing."""
        result = super().reflow(parent, size)
        self._full_map_invalidated = False
        self._full_map_drawn = True
        return result

    def reflow_visible(self, parent, size):  # noqa: ANN001, ANN201 - set[Widget]
        """Textual's scroll reflow compares the visible widgets' geometry with the last
        scroll's, and after a layout (which forgets it) with nothing, so every widget
        counted as changed. Compared with the layout's full map, only what moved is
        drawn: a layout and a follow scroll come together at every draw of a growing
        reply."""
        if self._visible_map is None and self._full_map_drawn and not self._full_map_invalidated:
            self._visible_map = self._full_map
        self._full_map_drawn = False
        return super().reflow_visible(parent, size)

    def render_partial_update(self):  # noqa: ANN201 - Textual's ChopsUpdate | None
        self._updating = list(self._dirty_regions)
        try:
            return super().render_partial_update()
        finally:
            self._updating = None

    def _get_renders(
        self, crop: Region | None = None
    ) -> Iterable[tuple[Region, Region, list[Strip]]]:
        updating = self._updating
        if crop is None or not updating:
            yield from super()._get_renders(crop)
            return
        drawn: list[Region] = []  # in front of the widgets still to come
        for widget, (region, clip) in self.visible_widgets.items():  # front to back
            shown = region.intersection(clip)
            # The crop is the box around all update regions (the reply's lines and the
            # status line make it the screen): only the rows an update region covers,
            # and not hidden behind a widget in front, whose line wins.
            rows = _rows_to_draw(shown, updating, drawn)
            if rows is None:
                continue
            drawn.append(shown)
            top, bottom = rows
            box = Region(shown.x, top, shown.width, bottom - top)
            # Textual draws the strips over region ∩ clip: both are the rows here.
            yield box, box, widget.render_lines(box.translate(-region.offset))


def _rows_to_draw(
    shown: Region, updating: list[Region], drawn: list[Region]
) -> tuple[int, int] | None:
    """The first and past-the-last row of ``shown`` that an update region covers and the
    ``drawn`` regions do not hide whole; None if there is none."""
    top = bottom = None
    for part in updating:
        part = shown.intersection(part)
        if not part:
            continue
        front = [r for d in drawn if (r := part.intersection(d))]
        if any(r == part for r in front):
            continue  # one widget in front hides it all (a container behind the reply)
        for y in range(part.y, part.bottom):
            if front and _row_hidden(y, part.x, part.right, front):
                continue
            top = y if top is None else min(top, y)
            bottom = y + 1 if bottom is None else max(bottom, y + 1)
    return None if top is None else (top, bottom)


def _row_hidden(y: int, left: int, right: int, front: list[Region]) -> bool:
    """Whether the ``front`` regions cover row ``y`` from ``left`` to ``right``."""
    reach = left
    for x, end in sorted((r.x, r.right) for r in front if r.y <= y < r.bottom):
        if x > reach:
            return False
        reach = max(reach, end)
    return reach >= right


def use_update_compositor(screen: Screen) -> None:
    """Give ``screen`` the compositor above (before it is mounted)."""
    screen._compositor = UpdateCompositor()


# -- layout ---------------------------------------------------------------------------
class LaidOutOnce:
    """A widget whose virtual size matters to no later layout: a layout that gives it a
    new size does not ask for another one.

    Textual sets a widget's ``virtual_size`` (a reactive that asks for a layout) from the
    layout that has just sized it, so every layout that resized a message (a growing
    reply, at each growth) was followed by a second whole-screen layout that changed
    nothing. Only a scrolling container's scrollbars depend on its virtual size: a
    subclass that has them says when a second layout is needed (``relayout_for``)."""

    def _size_updated(self, size, virtual_size, container_size, layout: bool = True) -> bool:  # noqa: ANN001
        return super()._size_updated(  # type: ignore[misc]
            size, virtual_size, container_size, layout=layout and self.relayout_for(virtual_size)
        )

    def relayout_for(self, virtual_size) -> bool:  # noqa: ANN001
        """Whether a new virtual size needs a layout of its own (never, by default)."""
        return False


def changes_pending(screen: Screen, widgets: Iterable[Widget | None]) -> bool:
    """Whether a change to ``screen`` or to one of ``widgets`` has not reached the
    terminal yet (Textual has no public way to ask)."""
    if (
        screen._layout_required
        or screen._scroll_required
        or screen._repaint_required
        or screen._dirty_widgets
    ):
        return True
    return any(
        widget is not None
        and (widget._layout_required or widget._repaint_required or widget._scroll_required)
        for widget in widgets
    )


def screen_update_pending(app: App[Any]) -> bool:
    """Whether the app's screen, or any widget on it, has a change still to draw (tests
    and benchmarks wait for the screen to settle with it)."""
    screen = app.screen
    return bool(
        changes_pending(screen, screen.walk_children())
        or screen._compositor._dirty_regions
        or app._batch_count
    )


# -- for tests and benchmarks: what reaches the terminal -------------------------------
def compositor_of(screen: Screen) -> Compositor:
    """The compositor that draws ``screen``."""
    return screen._compositor


def whole_frame(app: App[Any]) -> str:
    """The escape sequences that would draw the app's screen whole, in one update."""
    return str(app.screen._compositor.render_full_update().render_segments(app.console))


def watch_frames(app: App[Any], seen: Callable[[str], None]) -> None:
    """Call ``seen`` with each screen update's escape sequences, as the terminal driver
    gets them (updates held back by a batch are not written, so not seen)."""
    from textual._compositor import CompositorUpdate

    display = app._display

    def written(screen: Screen, renderable: Any) -> None:
        if isinstance(renderable, CompositorUpdate) and not app._batch_count:
            seen(renderable.render_segments(app.console))
        display(screen, renderable)

    app._display = written  # type: ignore[method-assign]


def notifications(app: App[Any]) -> list[str]:
    """The messages of the notifications the app is showing."""
    return [notification.message for notification in app._notifications]


def watch_layouts(screen: Screen, seen: Callable[[bool], None]) -> None:
    """Call ``seen`` at each layout of ``screen``: True for a layout of the whole screen,
    False for one that only arranges the visible widgets after a scroll."""
    refresh_layout = screen._refresh_layout

    def counting(size: Any = None, scroll: bool = False) -> None:
        seen(not (scroll and not screen._layout_widgets))
        refresh_layout(size, scroll)

    screen._refresh_layout = counting  # type: ignore[method-assign]


def tell_the_screen_late(widget_class: type[Widget], seconds: float, monkeypatch: Any) -> None:
    """Make widgets of ``widget_class`` tell their screen of a change ``seconds`` late (a
    busy moment), with pytest's ``monkeypatch``, which undoes it after the test."""
    import asyncio

    async def late(widget: Widget, event: events.Idle) -> None:
        await asyncio.sleep(seconds)
        widget._check_refresh()

    monkeypatch.setattr(widget_class, "_on_idle", late, raising=False)


# -- keys -----------------------------------------------------------------------------
async def run_own_binding(widget: Widget, event: events.Key) -> bool:
    """Run ``widget``'s own binding for this key now, as its key event arrives; True if
    one ran (the event is then used up).

    Textual types a printable key in the focused widget's key handler, but runs a bound
    key (Backspace, arrows, End, …) only once its event has bubbled up to the app. When
    keys arrive together (tmux, a paste of keystrokes, a slow SSH link), the characters
    typed after a Backspace were inserted before it ran (Textual issue #6605). The
    widget's own bindings come first in the chain the app would search, so running them
    here changes only when they run, not which action runs. Priority bindings were
    already checked by the app."""
    if event.is_printable:
        return False
    for binding in widget._bindings.key_to_bindings.get(event.key, ()):
        # (the app's run_action says whether an action ran; Widget.run_action does not)
        if not binding.priority and await widget.app.run_action(binding.action, widget):
            event.stop()
            event.prevent_default()
            return True
    return False


class KeysFirst:
    """A text widget that sees each key before Textual's own handling does: a subclass
    answers ``key_first`` (True: the key is used up)."""

    async def key_first(self, event: events.Key) -> bool:
        """Handle ``event`` before the widget types it; True if it was used up."""
        return False

    async def _on_key(self, event: events.Key) -> None:
        if not await self.key_first(event):
            await super()._on_key(event)  # type: ignore[misc]


# -- Markdown ---------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _markdown_parser() -> MarkdownIt:
    return MarkdownIt().enable("strikethrough").enable("table")


class FastMarkdown(RichMarkdown):
    """Rich's Markdown with one parser for every block: Rich builds a new MarkdownIt (and
    its regular expressions) per instance, most of a streamed block's cost. Sets what
    ``rich.markdown.Markdown.__init__`` sets (RICH_MARKDOWN_FIELDS), with its options."""

    def __init__(self, markup: str) -> None:
        self.markup = markup
        self.parsed = _markdown_parser().parse(markup)
        self.code_theme = "monokai"
        self.justify = None
        self.style = "none"
        self.hyperlinks = True
        self.inline_code_lexer = None
        self.inline_code_theme = self.code_theme
