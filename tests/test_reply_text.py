"""ReplyText: how a reply is drawn while it streams and once it ends, and how the chat
pane follows it (fake token source; the real model's flows are in test_tui_e2e)."""

from __future__ import annotations

from collections import Counter

from chatapp.engine.fake import FakeTokenSource
from chatapp.params import SamplingParams
from chatapp.tui.app import ChatApp
from chatapp.tui.chat_log import AssistantMessage, ChatLog
from chatapp.tui.textual_internals import watch_layouts
from tests.tui_helpers import ready, send, shown_text, submit, wait_for

# A reply with paragraphs, a list and a code block: 40 lines and more at 80x24.
PIECES = (
    [f"p{i} " for i in range(30)]
    + ["\n\n", "- one\n", "- two\n", "\n", "```python\n"]
    + [f"x{i} = {i}\n" for i in range(30)]
    + ["```\n\n", "The **end**."]
)


def held_app(pause_after: int, pieces=PIECES) -> tuple[ChatApp, FakeTokenSource]:
    source = FakeTokenSource(pieces, 2000, pause_after=pause_after)
    return ChatApp(lambda progress: source), source


def _body(app):
    return app.query(AssistantMessage).last().body


def _last_line_in_view(app) -> bool:
    chat, body = app.query_one(ChatLog), _body(app)
    last_row = body.region.y + body.line_count - 1
    return chat.content_region.y <= last_row < chat.content_region.bottom


async def _hold(pilot, source, count: int) -> None:
    await submit(pilot, "go")
    await wait_for(pilot, lambda: source.paused.is_set())
    await wait_for(pilot, lambda: _body(pilot.app).text == "".join(PIECES[:count]))
    await pilot.pause(0.3)


async def test_a_finished_reply_is_drawn_whole_at_its_exact_height():
    app, _ = held_app(pause_after=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await send(pilot, "go")
        body = _body(app)
        assert not body.streaming
        assert body.text == "".join(PIECES)
        assert body.size.height == body.line_count > 30
        drawn = shown_text(app.query(AssistantMessage).last())
        assert "• one" in drawn and "x29 = 29" in drawn and drawn.endswith("The end.")
        assert "```" not in drawn and "**" not in drawn  # drawn as Markdown, not source
        assert app.query_one(ChatLog).scroll_y == app.query_one(ChatLog).max_scroll_y


async def test_while_streaming_the_last_line_stays_in_view_and_blank_lines_do_not():
    app, source = held_app(pause_after=60)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await _hold(pilot, source, 60)
        body, chat = _body(app), app.query_one(ChatLog)
        assert body.streaming and body.line_count > chat.scrollable_content_region.height
        # Taller than its text (it grows a screenful at a time), the extra out of view.
        assert body.size.height > body.line_count
        assert _last_line_in_view(app)
        assert chat.scroll_y < chat.max_scroll_y
        source.resume()
        await wait_for(pilot, lambda: app.replies_done == 1)
        await pilot.pause(0.2)
        assert body.size.height == body.line_count
        assert chat.scroll_y == chat.max_scroll_y  # back at the chat's end


async def test_a_user_who_scrolls_up_mid_reply_stays_where_they_are():
    app, source = held_app(pause_after=40)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await _hold(pilot, source, 40)
        chat = app.query_one(ChatLog)
        chat.scroll_to(y=0, animate=False, immediate=True)
        await pilot.pause(0.1)
        source.resume()
        await wait_for(pilot, lambda: app.replies_done == 1)
        await pilot.pause(0.2)
        assert chat.scroll_y == 0
        assert _body(app).text == "".join(PIECES)


async def test_a_resize_mid_reply_redraws_it_at_the_new_width():
    app, source = held_app(pause_after=30)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await _hold(pilot, source, 30)
        wide = _body(app).line_count
        await pilot.resize_terminal(60, 30)
        await pilot.pause(0.3)
        body = _body(app)
        assert body.line_count > wide  # the paragraph wraps onto more lines
        assert all(len(line.text) == body.content_size.width for line in body.lines)
        source.resume()
        await wait_for(pilot, lambda: app.replies_done == 1)


async def test_a_new_theme_redraws_the_replies_in_its_colours():
    app, _ = held_app(pause_after=None, pieces=["Hello ", "**there**"])
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await send(pilot, "go")
        body = _body(app)
        first = body.lines[0]._segments[0].style
        app.theme = next(name for name in ("chatapp-light", "chatapp-dark") if name != app.theme)
        await pilot.pause(0.3)
        now = body.lines[0]._segments[0].style
        assert now != first
        assert now.bgcolor == body.rich_style.bgcolor and now.color == body.rich_style.color


async def test_a_reply_s_text_can_be_selected_with_the_mouse():
    from textual.geometry import Offset
    from textual.selection import Selection

    app, _ = held_app(pause_after=None, pieces=["Hello ", "**there** ", "friend"])
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await send(pilot, "go")
        body = _body(app)
        assert body.allow_select
        app.screen.selections = {body: Selection(Offset(6, 0), Offset(11, 0))}
        await pilot.pause(0.1)
        assert app.screen.get_selected_text() == "there"
        highlighted = body.render_line(0)
        styles = {seg.text: seg.style for seg in highlighted if seg.text.strip()}
        assert any("there" in text for text in styles)
        there = next(style for text, style in styles.items() if "there" in text)
        assert there.bgcolor == app.screen.get_component_rich_style("screen--selection").bgcolor


async def test_a_growing_reply_costs_one_layout_per_growth():
    """Each time the streaming reply grows (a screenful at a time), the screen is laid
    out once: Textual followed each such layout with a second one that changed nothing
    (the messages' new sizes asked for it). Counted once the chat's scrollbar is there:
    before, the reply's start lays the screen out a varying number of times (the
    turn's mount, the footer's keys, the scrollbar appearing)."""
    pieces = ["```\n"] + [f"line {i}\n" for i in range(300)] + ["```\n"]
    source = FakeTokenSource(pieces, 120)  # a few lines a draw: each growth is reached
    app = ChatApp(lambda progress: source)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        screen, chat = app.screen, app.query_one(ChatLog)
        layouts: Counter[int] = Counter()  # whole-screen layouts at each streaming height

        def counting(whole: bool) -> None:
            body = _body(app) if app.query(AssistantMessage) else None
            if body is not None and body.streaming and whole and chat.show_vertical_scrollbar:
                layouts[body.layout_height] += 1

        watch_layouts(screen, counting)
        await send(pilot, "go")
        growths = sorted(layouts)[1:]  # after the height the scrollbar appeared at
        assert len(growths) >= 4  # 300 lines at 80x24: several growths
        assert all(layouts[height] == 1 for height in growths), layouts


async def test_a_long_reply_grows_in_steps_that_grow_with_it(monkeypatch):
    """Each growth of a streaming reply is a layout of the whole screen: grown a
    screenful at a time, an 800-line reply at 80x24 was laid out 33 times; now each
    growth adds half the lines so far (at least two screenfuls), and the text always has
    a screenful of blank lines ahead of it."""
    from chatapp.tui.reply_text import ReplyText

    heights: list[tuple[int, int]] = []  # (lines drawn, streaming height) at each growth
    show = ReplyText.show

    def shown(self, text: str) -> bool:
        result = show(self, text)
        if not heights or heights[-1][1] != self._lines:
            heights.append((self.line_count, self._lines))
        return result

    monkeypatch.setattr(ReplyText, "show", shown)
    pieces = ["```\n"] + [f"line {i}\n" for i in range(800)] + ["```\n"]
    source = FakeTokenSource(pieces, 5000)
    app = ChatApp(lambda progress: source, SamplingParams(max_new_tokens=len(pieces)))
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await submit(pilot, "go")
        await wait_for(pilot, lambda: app.replies_done == 1, timeout=60)
    assert heights[-1][1] > 800, heights  # it grew to the end
    assert 5 <= len(heights) <= 12, heights
    assert all(height >= lines + 24 for lines, height in heights), heights


async def test_the_message_box_cursor_holds_still_while_a_reply_streams():
    """Its blink would repaint the box twice a second while the reply draws."""
    from chatapp.tui.widgets import PromptBox

    app, source = held_app(pause_after=20)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        prompt = app.query_one(PromptBox)
        assert prompt.cursor_blink
        await _hold(pilot, source, 20)
        assert not prompt.cursor_blink
        source.resume()
        await wait_for(pilot, lambda: app.replies_done == 1)
        assert prompt.cursor_blink


async def _at_the_top_mid_reply(pilot, source) -> ChatLog:
    """A reply held mid-stream (taller than a view), the chat focused and scrolled to
    its top, the reply's last line out of view."""
    await ready(pilot)
    await _hold(pilot, source, 60)
    chat = pilot.app.query_one(ChatLog)
    chat.focus()
    await pilot.press("home")
    await pilot.pause(0.1)
    assert chat.scroll_y == 0 and not _last_line_in_view(pilot.app)
    return chat


def _last_line_at_the_bottom(app) -> bool:
    """The reply's last line written is the view's last row: no blank rows below it."""
    chat, body = app.query_one(ChatLog), _body(app)
    return body.region.y + body.line_count == chat.content_region.bottom


async def test_end_mid_reply_shows_its_last_line_and_follows_it_again():
    """The streaming reply is taller than its text (it grows a screenful at a time):
    End shows the text's last line at the view's bottom, not the blank lines below it,
    and the pane follows the reply from there. After the reply, End is the chat's end."""
    app, source = held_app(pause_after=60)
    async with app.run_test(size=(80, 24)) as pilot:
        chat = await _at_the_top_mid_reply(pilot, source)
        await pilot.press("end")
        await pilot.pause(0.1)
        assert _last_line_at_the_bottom(app)
        assert chat.scroll_y < chat.max_scroll_y
        source.resume()
        await wait_for(pilot, lambda: app.replies_done == 1)
        await pilot.pause(0.2)
        assert _last_line_in_view(app)
        await pilot.press("home", "end")
        await pilot.pause(0.1)
        assert chat.scroll_y == chat.max_scroll_y


async def test_scrolling_down_mid_reply_stops_at_its_last_line():
    """Page Down or the wheel go no further than the streaming reply's last line written:
    not into the blank rows it has grown into below."""
    app, source = held_app(pause_after=60)
    async with app.run_test(size=(80, 24)) as pilot:
        chat = await _at_the_top_mid_reply(pilot, source)
        for _ in range(6):
            await pilot.press("pagedown")
        await pilot.pause(0.2)
        assert _last_line_at_the_bottom(app)
        await pilot.press("home")
        for _ in range(60):  # what the mouse wheel does, a line at a time
            chat.scroll_down(animate=False, immediate=True)
        await pilot.pause(0.2)
        assert _last_line_at_the_bottom(app)
        source.resume()
        await wait_for(pilot, lambda: app.replies_done == 1)
        await pilot.pause(0.2)
        assert _last_line_in_view(app)  # followed again from there


async def test_code_highlighting_is_prepared_once_the_model_is_ready():
    """Pygments compiles a language's regular expressions on its first use (Python's
    ~26 ms on 2 cores), which fell on the first streamed code block's draw: a thread
    does it once the model is ready, while the user types."""
    import threading

    from pygments.lexers.python import PythonLexer

    if "_tokens" in PythonLexer.__dict__:
        del PythonLexer._tokens  # as in a new process (an earlier test highlighted Python)
    app, _ = held_app(pause_after=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        for thread in threading.enumerate():
            if thread.name == "warm-up":
                thread.join(10)
        assert "_tokens" in PythonLexer.__dict__
