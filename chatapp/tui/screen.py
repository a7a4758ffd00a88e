"""The main screen, with a compositor that draws a streamed update from the widgets in it.

Two things Textual (8.2) does made each draw of a streaming reply repaint far more of the
screen than changed:

- A partial update (a few lines of the reply) asks every visible widget whose *container*
  overlaps the update for all of its visible lines, then keeps the lines the update covers.
  Here the container is the screen for most widgets, so each draw rendered the message box
  (a TextArea: ~1.5 ms, it re-applies its theme on every call), the parameter panel, the
  status line and the footer, only to throw their lines away. ``UpdateCompositor`` asks
  only the widgets whose visible part overlaps the update, and only for its rows.
- A scroll finds what moved by comparing the widgets' places with the last scroll's. After
  a layout there is no last scroll, so Textual compared with nothing and drew the whole
  screen again. A streaming reply lays the screen out each time it grows by a screenful,
  and its follow scroll comes right after. The layout's own map is what the screen shows
  then, so the scroll compares with that.

What a frame shows is unchanged (the snapshot tests): lines outside an update are never
written by it, and full updates (resizes, dialogs) go through Textual's own path. Both are
overrides of private Textual methods; ``tests/test_screen_updates.py`` fails if a Textual
release changes them so that they no longer apply.
"""

from __future__ import annotations

from collections.abc import Iterable

from textual._compositor import Compositor
from textual.geometry import Region, Size
from textual.screen import Screen
from textual.strip import Strip


class UpdateCompositor(Compositor):
    def reflow_visible(self, parent, size: Size) -> set:
        # A scroll compares the widgets' places with the last scroll's. Right after a
        # layout there was none, and Textual compares with nothing: every widget counts as
        # moved and the whole screen is drawn again (each growth of a streaming reply lays
        # the screen out, and the follow scroll comes next). The layout's own map is what
        # the screen shows then: compare with it.
        if self._visible_map is None and self.size == size and self.root is parent:
            self._visible_map = self._full_map
        return super().reflow_visible(parent, size)

    _updating: list[Region] | None = None  # the regions of the partial update under way

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
        for widget, (region, clip) in self.visible_widgets.items():
            shown = region.intersection(clip)
            # Only the rows of it that an update region covers (the crop is the box
            # around them all: the reply's lines and the status line make it the screen).
            covered = [shown.intersection(part) for part in updating]
            covered = [part for part in covered if part]
            if not covered:
                continue
            top = min(part.y for part in covered)
            bottom = max(part.bottom for part in covered)
            rows = Region(shown.x, top, shown.width, bottom - top)
            # _render_chops draws the strips over region ∩ clip: both are the rows here.
            yield rows, rows, widget.render_lines(rows.translate(-region.offset))


class ChatScreen(Screen):
    """The app's main screen (Textual's default screen, with the compositor above)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._compositor = UpdateCompositor()
