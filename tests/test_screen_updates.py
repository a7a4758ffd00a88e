"""What a streamed draw repaints (chatapp/tui/screen.py): only what changed, not the
whole screen (fake token source: the drawing, not the model, is under test)."""

from __future__ import annotations

import pytest

from chatapp.engine.fake import FakeTokenSource
from chatapp.params import SamplingParams
from chatapp.tui.app import ChatApp
from chatapp.tui.chat_log import AssistantMessage
from chatapp.tui.panel import ParamPanel
from chatapp.tui.reply_stream import ReplyStream
from chatapp.tui.textual_internals import (
    UpdateCompositor,
    changes_pending,
    compositor_of,
    tell_the_screen_late,
    watch_frames,
    whole_frame,
)
from chatapp.tui.widgets import PromptBox
from tests.tui_helpers import ready, send, update_pending, wait_for

# Code streams a line per token: the reply grows (a layout) and the pane scrolls to follow
# it many times over.
PIECES = ["```\n"] + [f"line {i}\n" for i in range(200)] + ["```\n"]


async def _stream_and_count(size: tuple[int, int]) -> tuple[int, int, int, str]:
    """Stream PIECES; count, while the reply streams, the partial updates, the times the
    message box and the panel were asked for lines in them, and the whole-screen
    updates."""
    source = FakeTokenSource(PIECES, 80)  # a few lines a draw
    app = ChatApp(lambda progress: source)
    counts = {"others": 0, "partial": 0, "full": 0}
    async with app.run_test(size=size) as pilot:
        await ready(pilot)
        screen = app.screen
        assert isinstance(compositor_of(screen), UpdateCompositor)
        in_partial = [False]

        def streaming() -> bool:
            replies = app.query(AssistantMessage)
            stream = app.pane.stream
            return bool(replies) and replies.last().body.streaming and bool(stream and stream.text)

        compositor = compositor_of(screen)
        partial = compositor.render_partial_update

        def counted_partial():
            in_partial[0] = streaming()
            counts["partial"] += in_partial[0]
            try:
                return partial()
            finally:
                in_partial[0] = False

        def counted(method):
            def render_lines(crop):
                counts["others"] += in_partial[0]
                return method(crop)

            return render_lines

        compositor.render_partial_update = counted_partial
        full = compositor.render_full_update

        def counted_full(*args, **kwargs):
            counts["full"] += streaming()
            return full(*args, **kwargs)

        compositor.render_full_update = counted_full
        prompt, panel = app.query_one(PromptBox), app.query_one(ParamPanel)
        prompt.render_lines = counted(prompt.render_lines)
        panel.render_lines = counted(panel.render_lines)
        await send(pilot, "go")
        text = app.query(AssistantMessage).last().body.text
    return counts["others"], counts["partial"], counts["full"], text


async def test_a_streamed_draw_does_not_render_the_widgets_it_does_not_change():
    for size in ((80, 24), (200, 60)):
        others, partial, full, text = await _stream_and_count(size)
        assert text == "".join(PIECES)  # it streamed whole
        assert partial >= 10, partial  # many draws, scrolls and growths were seen
        # Without UpdateCompositor: the message box and the panel at every draw.
        assert others == 0, (size, others)
        # Without its reflow overrides: the whole screen at the first scroll after
        # each growth of the reply.
        assert full == 0, (size, full, partial)


class _Terminal:
    """A real VT emulator (pyte) fed what the app would write to the terminal: each
    update's escape sequences, as Textual's driver writes them."""

    def __init__(self, app, size: tuple[int, int]) -> None:
        import pyte

        self.screen = pyte.Screen(*size)
        self.stream = pyte.Stream(self.screen)
        self.updates = 0

        def written(frame: str) -> None:
            self.stream.feed(frame)
            self.updates += 1

        watch_frames(app, written)

    def cells(self) -> list[list[tuple[str, str, str]]]:
        """Each cell's character and colours."""
        return _cells(self.screen)


def _whole_screen_cells(app, size: tuple[int, int]) -> list[list[tuple[str, str, str]]]:
    """The same cells from the screen drawn whole in one update."""
    import pyte

    screen = pyte.Screen(*size)
    pyte.Stream(screen).feed(whole_frame(app))
    return _cells(screen)


def _cells(screen) -> list[list[tuple[str, str, str]]]:
    """What each cell shows: its character, its colour (none for a blank) and its
    background (a blank's foreground colour shows nothing, and updates differ in it)."""
    return [
        [(c.data, c.fg if c.data.strip() else "", c.bg) for c in map(row.__getitem__, cols)]
        for row in (screen.buffer[y] for y in range(screen.lines))
        for cols in [range(screen.columns)]
    ]


@pytest.mark.parametrize(
    ("size", "pause_after"),
    [((80, 24), 40), ((80, 24), 95), ((80, 24), 150), ((120, 40), 70), ((120, 40), 160)],
    ids=["80x24-40", "80x24-95", "80x24-150", "120x40-70", "120x40-160"],
)
async def test_the_terminal_shows_what_a_whole_redraw_would_mid_reply_and_after(size, pause_after):
    """The updates, applied one after another to a terminal, leave it showing exactly
    (characters and colours) what drawing the whole screen at once would: with the reply
    held mid-stream (after draws, scrolls and growths) and once it ends."""
    pieces = PIECES[:1] + ["Some **bold** prose, " * 6 + "\n\n"] + PIECES[1:]
    source = FakeTokenSource(pieces, 120, pause_after=pause_after)
    app = ChatApp(lambda progress: source)
    async with app.run_test(size=size) as pilot:
        await ready(pilot)
        terminal = _Terminal(app, size)
        terminal.stream.feed(whole_frame(app))
        app.query_one(PromptBox).cursor_blink = False
        await pilot.press(*"go", "enter")
        await wait_for(pilot, lambda: source.paused.is_set())
        await wait_for(pilot, lambda: not update_pending(app))
        await pilot.pause(0.3)
        assert terminal.updates >= 10, terminal.updates  # streamed draws, not one frame
        assert terminal.cells() == _whole_screen_cells(app, size)
        source.resume()
        await wait_for(pilot, lambda: app.replies_done == 1)
        await wait_for(pilot, lambda: not update_pending(app))
        await pilot.pause(0.3)
        assert terminal.cells() == _whole_screen_cells(app, size)


def test_the_rows_drawn_are_those_an_update_covers_and_nothing_in_front_hides():
    from textual.geometry import Region

    from chatapp.tui.textual_internals import _rows_to_draw

    shown = Region(0, 0, 10, 6)
    rows = Region(0, 1, 10, 2)  # an update of rows 1 and 2
    assert _rows_to_draw(shown, [rows], []) == (1, 3)
    assert _rows_to_draw(shown, [Region(20, 0, 5, 5)], []) is None  # not over it
    assert _rows_to_draw(shown, [Region(0, 0, 1, 1), Region(0, 4, 1, 1)], []) == (0, 5)
    assert _rows_to_draw(shown, [Region(0, 4, 1, 1), Region(0, 0, 1, 1)], []) == (0, 5)
    # Hidden: by one widget in front, or by two side by side.
    assert _rows_to_draw(shown, [rows], [Region(0, 1, 10, 1)]) == (2, 3)
    assert _rows_to_draw(shown, [rows], [Region(0, 0, 5, 6), Region(5, 1, 5, 2)]) is None
    # Not hidden: a column left uncovered, at the edge or between two.
    assert _rows_to_draw(shown, [rows], [Region(0, 1, 9, 2)]) == (1, 3)
    assert _rows_to_draw(shown, [rows], [Region(0, 1, 4, 2), Region(5, 1, 5, 2)]) == (1, 3)
    # Only the update's own columns need hiding.
    assert _rows_to_draw(shown, [Region(2, 1, 3, 2)], [Region(2, 0, 3, 6)]) is None


def _numbered_reply(tokens: int) -> list[str]:
    """Paragraphs, lists and code blocks whose words are numbered tokens (t0, t1, ...)."""
    pieces: list[str] = []
    i = 0
    while i < tokens:
        kind = (i // 19) % 3
        if kind == 0:
            pieces += [f"t{k} " for k in range(i, i + 19)] + ["\n\n"]
        elif kind == 1:
            pieces += [
                "- " + "".join(f"t{k} " for k in range(i, i + 3)) + "\n"
                for i in range(i, i + 18, 3)
            ]
            pieces += ["\n"]
        else:
            pieces += ["```python\n"] + [f"t{k}\n" for k in range(i, i + 19)] + ["```\n\n"]
        i += 19
    return pieces


async def _lines_never_shown(pieces: list[str], size: tuple[int, int]) -> tuple[list[int], int]:
    """Stream ``pieces`` at 500 tokens a second: the numbered tokens no frame showed, and
    how many draws came with no frame since the one before."""
    import re

    want = {int(n) for piece in pieces for n in re.findall(r"t(\d+)", piece)}
    source = FakeTokenSource(pieces, 500)
    app = ChatApp(lambda progress: source, SamplingParams(max_new_tokens=len(pieces)))
    seen: set[int] = set()
    frames = [0]
    draws = {"last": -1, "unseen": 0}
    show = ReplyStream._show_streamed

    def shown(stream: ReplyStream, final: bool = False) -> None:
        if not final:
            draws["unseen"] += frames[0] == draws["last"]
            draws["last"] = frames[0]
        show(stream, final)

    ReplyStream._show_streamed = shown  # type: ignore[method-assign]
    try:
        return await _stream_watching(app, source, size, seen, frames, want, draws)
    finally:
        ReplyStream._show_streamed = show  # type: ignore[method-assign]


async def _stream_watching(app, source, size, seen, frames, want, draws):
    import re

    async with app.run_test(size=size) as pilot:
        await ready(pilot)
        terminal = _Terminal(app, size)
        feed = terminal.stream.feed

        def fed(data: str) -> None:
            feed(data)
            frames[0] += 1
            for line in terminal.screen.display:
                seen.update(int(n) for n in re.findall(r"t(\d+)", line))

        terminal.stream.feed = fed
        await pilot.press(*"go", "enter")
        await wait_for(pilot, lambda: app.replies_done == 1, timeout=60)
        await pilot.pause(0.5)
    return sorted(want - seen), draws["unseen"]


async def test_a_fast_reply_shows_every_line_in_some_frame():
    """At 500 tokens a second, each draw adds many lines and the pane scrolls to follow:
    every line must be on the terminal in some frame, none scrolled past unseen, and no
    draw comes before a frame showed the one before (a draw before the last was on the
    screen, wrapped lines counted as one, the reply's end drawing its last lines at once:
    each lost lines)."""
    pieces = _numbered_reply(700)
    for _ in range(2):
        missing, unseen_draws = await _lines_never_shown(pieces, (120, 40))
        assert not missing, missing[:20]
        assert unseen_draws == 0


async def test_a_draw_waits_for_the_frame_even_when_the_reply_tells_the_screen_late(
    monkeypatch,
):
    """Textual runs an "after refresh" callback at the screen's next idle moment if the
    screen knows of no change, and a widget tells the screen of its change at its own idle
    moment: when the reply's came later, the callback came before the frame, and the next
    draw pushed lines out unseen (a race: 2 first runs of a process in 6 lost 5 lines).
    Here the reply tells the screen 0.1 s late (without the wait: 1 run in 2 failed)."""
    from chatapp.tui.reply_text import ReplyText

    tell_the_screen_late(ReplyText, 0.1, monkeypatch)
    for _ in range(2):
        missing, unseen_draws = await _lines_never_shown(_numbered_reply(700), (120, 40))
        assert unseen_draws == 0
        assert not missing, missing[:20]


async def test_a_draw_counts_as_shown_only_once_its_change_reached_the_screen():
    """The same wait, step by step: a change the reply has not told the screen of yet
    keeps the stream's next draw waiting; the frame that shows it lets it go."""
    source = FakeTokenSource([f"w{i} " for i in range(40)], 400, pause_after=10)
    app = ChatApp(lambda progress: source)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press(*"go", "enter")
        await wait_for(pilot, lambda: source.paused.is_set())
        stream = app.pane.stream
        await wait_for(pilot, lambda: not stream.draw_pending)
        body = stream.reply.body
        body.refresh()  # as a draw does; the reply tells the screen at its idle moment
        stream._draw_unpainted = True
        stream._draw_painted()  # Textual's callback, come early
        assert stream.draw_pending
        await wait_for(pilot, lambda: not stream.draw_pending)
        assert not changes_pending(app.screen, [body])
        source.resume()
        await wait_for(pilot, lambda: app.replies_done == 1)
