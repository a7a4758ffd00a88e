"""What a streamed draw repaints (chatapp/tui/screen.py): only what changed, not the
whole screen (fake token source: the drawing, not the model, is under test)."""

from __future__ import annotations

from textual._compositor import Compositor

from chatapp.engine.fake import FakeTokenSource
from chatapp.tui.app import ChatApp
from chatapp.tui.chat import AssistantMessage
from chatapp.tui.panel import ParamPanel
from chatapp.tui.screen import UpdateCompositor
from chatapp.tui.widgets import PromptBox
from tests.tui_helpers import ready, send

# Code streams a line per token: the reply grows (a layout) and the pane scrolls to follow
# it many times over.
PIECES = ["```\n"] + [f"line {i}\n" for i in range(200)] + ["```\n"]


async def _stream_and_count(size: tuple[int, int]) -> tuple[int, int, int, str]:
    """Stream PIECES; count, while the reply streams, the screen's full repaints, the
    times the message box and the panel were asked for lines, and the streamed draws."""
    source = FakeTokenSource(PIECES, 120)  # a few lines a draw
    app = ChatApp(lambda progress: source)
    counts = {"full": 0, "prompt": 0, "panel": 0, "partial": 0}
    async with app.run_test(size=size) as pilot:
        await ready(pilot)
        screen = app.screen
        assert isinstance(screen._compositor, UpdateCompositor)

        def streaming() -> bool:
            replies = app.query(AssistantMessage)
            return bool(replies) and replies.last().body.streaming and bool(app._reply_text)

        def count(name, method):
            def counted(*args, **kwargs):
                if streaming():
                    counts[name] += 1
                return method(*args, **kwargs)

            return counted

        compositor = screen._compositor
        compositor.render_full_update = count("full", compositor.render_full_update)
        compositor.render_partial_update = count("partial", compositor.render_partial_update)
        prompt, panel = app.query_one(PromptBox), app.query_one(ParamPanel)
        prompt.render_lines = count("prompt", prompt.render_lines)
        panel.render_lines = count("panel", panel.render_lines)
        await send(pilot, "go")
        text = app.query(AssistantMessage).last().body.text
    return counts["full"], counts["prompt"] + counts["panel"], counts["partial"], text


async def test_a_streaming_reply_repaints_neither_the_whole_screen_nor_the_other_widgets():
    for size in ((80, 24), (200, 60)):
        full, others, partial, text = await _stream_and_count(size)
        assert text == "".join(PIECES)  # it streamed whole
        assert partial >= 10, partial  # many draws, scrolls and growths were seen
        # Without UpdateCompositor: a full repaint after each growth's layout, and the
        # message box and the panel asked for their lines at every draw.
        assert full == 0, (size, full)
        assert others == 0, (size, others)


def test_the_textual_methods_it_overrides_still_exist():
    """The overrides are of private Textual methods: a release that renames them would
    leave the app drawing as before, slower, with nothing failing but this."""
    assert callable(Compositor._get_renders)
    assert callable(Compositor.reflow_visible)
    assert hasattr(Compositor(), "_visible_map") and hasattr(Compositor(), "_full_map")
