"""The main screen, with a compositor that draws a partial update from only what it covers,
and a scroll after a layout from only what moved.

Textual (8.2) draws a partial update (a few lines of a streaming reply) by asking every
visible widget whose *container* overlaps the box around the update for all of its visible
lines, then keeping the lines the update covers. Here the container is the screen for most
widgets, so each draw rendered the message box (a TextArea: ~1.5 ms, it re-applies its
theme on every call), the parameter panel, the status line and the footer, and behind the
reply the chat pane, the columns and the screen's own background, only to throw their
lines away. ``UpdateCompositor`` asks only the widgets whose visible part an update region
covers, only for those rows, and skips the rows hidden behind widgets in front (there the
front widget's line is the one drawn).

What the terminal shows is unchanged: ``tests/test_screen_updates.py`` feeds every update
to a terminal emulator and compares it with the whole screen drawn at once, while a reply
streams, scrolls and grows. Full updates (layouts' first frames, resizes, dialogs) go
through Textual's own path. It overrides private Textual methods; the same test file fails
if a Textual release renames them.
"""

from __future__ import annotations

from collections.abc import Iterable

from textual._compositor import Compositor
from textual.geometry import Region
from textual.screen import Screen
from textual.strip import Strip


class UpdateCompositor(Compositor):
    _updating: list[Region] | None = None  # the regions of the partial update under way
    # The full map is the geometry last drawn: a layout arranged it and no scroll has
    # been drawn since.
    _full_map_drawn = False

    def reflow(self, parent, size):  # noqa: ANN001, ANN201 - Textual's ReflowResult
        """Textual's layout, which arranges the full map, but leaves it marked stale when a
        scroll's reflow came before: the next lookup of a widget's region (every widget's
        size is checked right after a layout) arranged the whole screen again, for
        nothing."""
        result = super().reflow(parent, size)
        self._full_map_invalidated = False
        self._full_map_drawn = True
        return result

    def reflow_visible(self, parent, size):  # noqa: ANN001, ANN201 - set[Widget]
        """Textual's scroll reflow compares the visible widgets' geometry with the last
        scroll's, and after a layout (which forgets it) with nothing, so every widget
        counted as changed and the whole screen was drawn again: a layout and a follow
        scroll come together at every draw of a growing reply. Compared with the layout's
        full map instead, only what moved is drawn."""
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
            # Only the rows of it that an update region covers (the crop is the box
            # around them all: the reply's lines and the status line make it the screen),
            # and of those, the rows not hidden behind the widgets in front: the front
            # one's line wins, so a container's or the screen's lines behind the reply
            # were rendered only to be thrown away.
            rows = _rows_to_draw(shown, updating, drawn)
            if rows is None:
                continue
            drawn.append(shown)
            top, bottom = rows
            rows = Region(shown.x, top, shown.width, bottom - top)
            # _render_chops draws the strips over region ∩ clip: both are the rows here.
            yield rows, rows, widget.render_lines(rows.translate(-region.offset))


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


class ChatScreen(Screen):
    """The app's main screen (Textual's default screen, with the compositor above)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._compositor = UpdateCompositor()
