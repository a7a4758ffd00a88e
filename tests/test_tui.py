"""The app's flows, driven with Pilot over a fake token source (fast)."""

from __future__ import annotations

import threading
import time

from textual.geometry import Region

from chatapp.presets import PresetStore
from chatapp.tui.app import ChatApp
from chatapp.tui.chat_log import AssistantMessage, ChatLog, UserMessage
from chatapp.tui.panel import ParamPanel
from chatapp.tui.textual_internals import notifications, watch_layouts
from chatapp.tui.widgets import PromptBox
from tests.tui_helpers import (
    assert_streamed,
    fake_app,
    ready,
    send,
    send_watching,
    set_field,
    shown_text,
    start_reply,
    submit,
    update_pending,
    wait_for,
)


async def test_reply_streams_and_records_its_parameters():
    app, source = fake_app(["Hello ", "**there** ", "friend"])
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await send(pilot, "hi")
        reply = app.query_one(AssistantMessage)
        assert reply.text == "Hello **there** friend"
        assert reply.body.text == "Hello **there** friend"
        assert shown_text(reply) == "Hello there friend"  # drawn as Markdown
        meta = str(reply.query_one(".meta").render())
        assert "T 0.75 · top-k 50 · top-p 0.95 · rep 1.1" in meta and "tok/s" in meta
        assert source.calls[0][0][-1].content == "hi"
        assert app.query_one("#prompt").text == ""


async def test_reply_is_drawn_piece_by_piece_while_it_streams():
    pieces = [f"word{i} " for i in range(24)]
    app, source = fake_app(pieces, rate=20)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        seen = await send_watching(pilot, "hi", source)
        final = shown_text(app.query_one(AssistantMessage))
        assert final == "".join(pieces).strip()
        assert_streamed(seen, final)
        assert all(final.startswith(s) for s in seen)


async def test_send_waits_for_the_model_to_load():
    gate = threading.Event()
    from chatapp.engine.fake import FakeTokenSource

    def slow_factory(progress):
        progress("Converting GGUF weights", 0.5)
        gate.wait(10)
        return FakeTokenSource()

    app = ChatApp(slow_factory)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: "Converting" in str(app.query_one("#loading-text").render()))
        app.query_one("#prompt").insert("too early")
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert not app.query(UserMessage)
        assert any("still loading" in n for n in notifications(app))
        gate.set()
        await ready(pilot)
        assert not app.query_one("#loading").display


async def test_collecting_pauses_while_the_model_loads_and_the_loaded_heap_is_frozen_at_ready():
    """The chatapp command pauses the garbage collector (chatapp.heap.pause) until the
    model is ready; then what is loaded is frozen out of every later collection (a full
    one walked ~390,000 objects, ~200 ms holding the GIL, mid-reply) and collecting
    resumes. The app's end undoes the freeze, so nothing frozen outlives the app."""
    import gc

    from chatapp import heap

    app, source = fake_app(["Hello ", "there"])
    heap.pause()
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await ready(pilot)
            assert gc.isenabled()
            for thread in threading.enumerate():
                if thread.name == "warm-up":
                    thread.join(10)  # it freezes what the warm-up made too
            collected = {id(obj) for gen in (0, 1, 2) for obj in gc.get_objects(gen)}
            assert id(source) not in collected and id(app) not in collected
            assert gc.get_freeze_count() > 0
            await send(pilot, "hi")
            assert app.query_one(AssistantMessage).text == "Hello there"
        assert gc.get_freeze_count() == 0
    finally:
        gc.enable()


async def test_the_chat_keeps_its_width_when_its_scrollbar_comes_and_goes():
    """A new chat's first reply streams with blank rows below (its padded height), so the
    scrollbar comes as it starts and goes when it ends: its column is kept meanwhile, or
    each change re-wrapped every message and laid the screen out once more."""

    app, source = fake_app([f"word{i} " for i in range(30)], rate=30)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        chat = app.query_one(ChatLog)
        width = chat.scrollable_content_region.width
        assert not chat.show_vertical_scrollbar
        await start_reply(pilot, "hi")
        await wait_for(pilot, lambda: chat.show_vertical_scrollbar)
        assert chat.scrollable_content_region.width == width
        assert app.query_one(UserMessage).size.width == width
        await wait_for(pilot, lambda: not app.generating)
        await wait_for(pilot, lambda: not chat.show_vertical_scrollbar)
        assert chat.scrollable_content_region.width == width


async def test_a_new_status_text_is_drawn_without_laying_the_screen_out():
    app, source = fake_app(["Hi"])
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.pause(0.2)
        screen = app.screen
        layouts = []
        watch_layouts(screen, layouts.append)
        app.set_status("Generating (a status line long enough to change its width) · Esc")
        await wait_for(pilot, lambda: not update_pending(app))
        await pilot.pause(0.1)
        status = app.query_one("#status")
        assert status.outer_size == (80, 1)  # the whole row, whatever it says
        drawn = status.render_lines(Region(0, 0, 80, 1))[0].text
        assert "Generating (a status line long enough to change its width)" in drawn
        assert layouts == []


async def test_model_that_cannot_load_says_so_where_the_user_looks():
    def failing(progress):
        raise RuntimeError("No model at ./nope: the path does not exist")

    app = ChatApp(failing)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.load_error is not None)
        await pilot.pause(0.05)
        assert "could not load" in str(app.query_one("#loading-text").render())
        assert any("No model at" in n for n in notifications(app))


async def test_escape_stops_the_reply_and_keeps_partial_text():
    app, source = fake_app([f"w{i} " for i in range(400)], rate=100)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await start_reply(pilot, "long please")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.replies_done == 1)
        reply = app.query_one(AssistantMessage)
        assert reply.has_class("-stopped")
        assert 0 < len(reply.text.split()) < 400
        assert "stopped" in str(reply.query_one(".meta").render())


async def test_escape_with_no_reply_streaming_goes_back_to_the_message_box():
    """Tab reaches the panel's fields (three presses back); Esc returns at once, keeping
    the value typed, which the next reply uses."""
    app, source = fake_app(["one ", "two"])
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        field = app.query_one("#param-temperature")
        field.focus()
        await pilot.pause(0.05)
        await pilot.press("end", "backspace", "backspace", "backspace", "backspace", *"1.2")
        await pilot.press("escape")
        await pilot.pause(0.05)
        assert isinstance(app.focused, PromptBox)
        await pilot.press(*"hi", "enter")
        await wait_for(pilot, lambda: app.replies_done == 1)
        assert source.calls[-1][1].temperature == 1.2


async def test_regenerate_keeps_previous_version_reachable():
    app, source = fake_app(["one ", "two"])
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await send(pilot, "hi")
        await set_field(pilot, "temperature", "1.3")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: app.replies_done == 2)
        reply = app.query_one(AssistantMessage)
        assert len(reply.versions) == 2 and reply.shown == 1
        assert reply.versions[1].params.temperature == 1.3
        assert reply.versions[0].params.temperature == 0.75
        assert len(source.calls[1][0]) == 1  # the regenerated reply is not part of its own prompt
        await pilot.press("alt+left")
        assert reply.shown == 0 and "v1/2" in str(reply.query_one(".meta").render())


async def test_new_chat_clears_messages():
    app, _ = fake_app(["a"])
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await send(pilot, "hi")
        await pilot.press("ctrl+n")
        await pilot.pause(0.1)
        assert not app.query(".message")


async def test_follow_up_includes_history_and_system_prompt():
    app, source = fake_app(["ok"], system="Be brief.")
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await send(pilot, "first")
        await send(pilot, "second")
        roles = [(m.role, m.content) for m in source.calls[1][0]]
        assert roles == [
            ("system", "Be brief."),
            ("user", "first"),
            ("assistant", "ok"),
            ("user", "second"),
        ]


async def test_export_chat_writes_markdown():
    app, _ = fake_app(["An ", "answer"])
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await send(pilot, "A question")
        path = app.export_chat()
        text = path.read_text()
        assert "## You\n\nA question" in text and "## Model\n\nAn answer" in text


async def test_quit_mid_reply_exits_promptly():
    import time

    app, source = fake_app([f"w{i} " for i in range(10_000)], rate=50)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        app.query_one("#prompt").insert("go")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.generating)
        start = time.monotonic()
        await pilot.press("ctrl+q")
    assert time.monotonic() - start < 3
    await_deadline = time.monotonic() + 3
    while source.busy and time.monotonic() < await_deadline:
        time.sleep(0.02)
    assert not source.busy


async def test_library_chatter_on_stderr_while_loading_does_not_break_the_app():
    """tqdm bars and warnings written during the first-run conversion are captured by the
    app (regression: a method name once clashed with Textual's own print capture)."""
    import sys

    from chatapp.engine.fake import FakeTokenSource

    def noisy_factory(progress):
        print("Converting and de-quantizing GGUF tensors...:  10%", file=sys.stderr, flush=True)
        print("stray stdout line", flush=True)
        return FakeTokenSource(["ok"])

    app = ChatApp(noisy_factory)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        assert app.load_error is None
        await send(pilot, "hi")
        assert app.query_one(AssistantMessage).text == "ok"


async def test_command_line_overrides_on_a_preset_are_kept():
    creative = PresetStore().get("Creative").params
    app, source = fake_app(["z"], params=creative.replace(temperature=0.5), preset="Creative")
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.pause(0.2)
        assert app.params.temperature == 0.5
        assert app.query_one("#preset-select").value == "Creative"
        await send(pilot, "go")
        assert source.calls[0][1].temperature == 0.5
        assert source.calls[0][1].top_p == creative.top_p


async def test_context_meter_and_left_out_notice():
    app, source = fake_app(["ok"])
    source.context_window = 120
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        for i in range(4):
            await send(pilot, f"message {i} " + "word " * 20)
        status = str(app.query_one("#status").render())
        assert "context " in status and "/120" in status
        last = app.query(AssistantMessage).last()
        note = str(last.query_one(".context-note").render())
        assert "earlier turns no longer fit the 120-token window" in note
        assert last.query_one(".context-note").display
        left_out = [w for w in app.query(".message") if w.has_class("-left-out")]
        kept = source.calls[-1][0]
        assert len(left_out) == 2 * (4 - sum(m.role == "user" for m in kept))
        assert kept[-1].content.startswith("message 3")


async def test_a_message_too_long_for_the_window_is_refused_and_kept_in_the_box():
    app, source = fake_app(["ok"])
    source.context_window = 30
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await submit(pilot, "word " * 40)
        await pilot.pause(0.1)
        assert source.calls == [] and not app.query(UserMessage)
        assert app.query_one("#prompt").text.startswith("word word")
        assert any("30-token context window" in n for n in notifications(app))


async def test_escape_right_after_enter_is_not_lost():
    app, source = fake_app([f"w{i} " for i in range(50)], rate=50)
    original = source.stream_reply

    def late_start(*args, **kwargs):  # the worker thread is slow to get going
        time.sleep(0.2)
        return original(*args, **kwargs)

    source.stream_reply = late_start
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        box = app.query_one("#prompt")
        box.insert("go")
        await app._submit(PromptBox.Submitted("go"))  # Enter …
        app.action_stop_reply()  # … and Esc before the worker has started
        await wait_for(pilot, lambda: app.replies_done == 1)
        stats = app.query_one(AssistantMessage).versions[0].stats
        assert stats.finish_reason == "stopped" and stats.new_tokens == 0


async def test_new_chat_frees_the_engine_cache_and_chat_format_is_switchable():
    app, source = fake_app(["a"])
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await send(pilot, "hi")
        await pilot.press("ctrl+n")
        await pilot.pause(0.1)
        assert source.resets == 1
        app.prompt_shape.set_chat_format("raw")
        assert source.chat_format == "raw" and source.resets == 2


async def test_keys_that_arrive_together_are_applied_in_order():
    """A burst of keys (tmux, a slow SSH link sending several in one packet): a bound key
    such as Backspace or Left acts before the characters typed after it (Textual issue
    #6605: bound keys used to run only after their event reached the app, so End, 6 x
    Backspace, "0.2" left the temperature field empty while 0.2 was in use)."""
    from textual import events

    def burst(app, keys: list[tuple[str, str | None]]) -> None:
        for key, character in keys:  # posted at once, as a terminal read delivers them
            app.post_message(events.Key(key, character))

    app, _ = fake_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        field = app.query_one("#param-temperature")
        field.focus()
        await pilot.pause()
        typed = [("0", "0"), ("full_stop", "."), ("2", "2")]
        burst(app, [("end", None), *[("backspace", "\x7f")] * 6, *typed])
        await wait_for(pilot, lambda: app.query_one(ParamPanel).params.temperature == 0.2)
        await pilot.pause(0.1)
        assert field.value == "0.2"
        assert not app.query_one(ParamPanel).errors

        box = app.query_one(PromptBox)
        box.focus()
        await pilot.pause()
        letters = [(c, c) for c in "helo"]
        burst(app, [*letters, ("backspace", "\x7f"), ("l", "l"), ("o", "o"), ("left", None)])
        burst(app, [("left", None), ("left", None), ("left", None)])
        burst(app, [("X", "X")])
        await wait_for(pilot, lambda: "X" in box.text)
        await pilot.pause(0.1)
        assert box.text == "hXello"

        # Every text field of the app is one of these: the chats screen's search too.
        await pilot.press("ctrl+o")
        search = app.screen.query_one("#chat-search")
        await wait_for(pilot, lambda: search.has_focus)
        burst(app, [("a", "a"), ("b", "b"), ("x", "x"), ("backspace", "\x7f"), ("c", "c")])
        await wait_for(pilot, lambda: "c" in search.value)
        await pilot.pause(0.1)
        assert search.value == "abc"


async def test_a_reply_after_a_short_chat_is_followed_to_its_end():
    """At 80x24, a chat that fits the view, then a reply longer than the view: the pane
    follows it (found in a tmux run: the pane's scroll position, left below 0 by the
    short chat, was put back by Textual and taken for the user scrolling away)."""

    app, source = fake_app(["Short."], rate=200)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await send(pilot, "hello")
        chat = app.query_one(ChatLog)
        source.pieces = [f"word{i} " for i in range(40)] + ["\n\n"]
        source.pieces += [f"more{i} " for i in range(40)]
        await send(pilot, "tell me more")
        await pilot.pause(0.3)
        assert chat.max_scroll_y > 0 and chat.scroll_y == chat.max_scroll_y
        reply = chat.assistant_messages()[-1]
        assert reply.region.bottom <= chat.region.bottom and "more39" in reply.shown_text
