"""Snapshots of the main screen (80x24, 120x40) and of a validation error."""

from __future__ import annotations

import pytest

from tests.tui_helpers import fake_app, ready_for_picture, send, set_field, wait_for


def test_main_screen_80x24(snap_compare):
    app, _ = fake_app()
    assert snap_compare(app, terminal_size=(80, 24), run_before=ready_for_picture)


def test_main_screen_120x40(snap_compare):
    app, _ = fake_app()
    assert snap_compare(app, terminal_size=(120, 40), run_before=ready_for_picture)


def test_panel_shows_validation_error(snap_compare):
    async def type_bad_value(pilot):
        await ready_for_picture(pilot)
        pilot.app.query_one("#param-temperature").focus()
        await set_field(pilot, "temperature", "abc")
        await pilot.pause(0.1)

    app, _ = fake_app()
    assert snap_compare(app, terminal_size=(120, 40), run_before=type_bad_value)


# -- the product at work, at both sizes ---------------------------------------------------
SIZES = [(80, 24), (120, 40)]
REPLY = [
    "The ",
    "sea ",
    "is ",
    "**deep** ",
    "and ",
    "wide.\n\n",
    "- salt\n",
    "- waves\n",
    "- tides\n",
]


def product_app(pause_after=None):
    """A fake source that can hold a reply mid-stream and reports fixed timings."""
    from chatapp.engine.fake import FakeTokenSource
    from chatapp.tui.app import ChatApp

    source = FakeTokenSource(REPLY, 400, pause_after=pause_after, nominal_stats=True)
    return ChatApp(lambda progress: source), source


async def _reply_held_at(pilot, source, text="Describe the sea.", pieces=5):
    from tests.tui_helpers import submit

    await ready_for_picture(pilot)
    await submit(pilot, text)
    app = pilot.app
    await wait_for(pilot, lambda: source.paused.is_set())
    reply = app.query(".assistant-message").last()
    await wait_for(pilot, lambda: reply.shown_text == "".join(REPLY[:pieces]))
    await pilot.pause(0.2)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_conversation_mid_stream(snap_compare, size):
    app, source = product_app(pause_after=5)

    async def run(pilot):
        await _reply_held_at(pilot, source)

    assert snap_compare(app, terminal_size=size, run_before=run)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_stopped_reply(snap_compare, size):
    app, source = product_app(pause_after=5)

    async def run(pilot):
        await _reply_held_at(pilot, source)
        await pilot.press("escape")
        await wait_for(pilot, lambda: pilot.app.replies_done == 1)
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=size, run_before=run)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_heat_map(snap_compare, size):
    app, _ = product_app()
    seen = {}

    async def run(pilot):
        await ready_for_picture(pilot)
        await pilot.press("f6")
        await send(pilot, "Describe the sea.")
        await pilot.pause(0.2)
        seen["layout"] = chat_layout(pilot.app)

    # On a mismatch, the chat's layout when the picture was taken says why.
    assert snap_compare(app, terminal_size=size, run_before=run), seen.get("layout")


def chat_layout(app) -> str:
    """The chat log's scroll position and sizes, and each widget's in it."""
    from chatapp.tui.chat_log import ChatLog

    log = app.screen.query(ChatLog).first()
    lines = [f"log scroll {log.scroll_y}/{log.max_scroll_y} virtual {log.virtual_size}"]
    for widget in log.walk_children():
        lines.append(
            f"{type(widget).__name__} {sorted(widget.classes)} display={widget.display} "
            f"region={widget.region} size={widget.size}"
        )
    return "\n".join(lines)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_greedy_dims_the_fields_it_ignores(snap_compare, size):
    app, _ = product_app()

    async def run(pilot):
        await ready_for_picture(pilot)
        pilot.app.query_one("#param-do_sample").focus()
        await pilot.press("enter")
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=size, run_before=run)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_panel_hidden_after_a_reply(snap_compare, size):
    app, _ = product_app()

    async def run(pilot):
        await ready_for_picture(pilot)
        await send(pilot, "Describe the sea.")
        await pilot.press("f2")
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=size, run_before=run)
