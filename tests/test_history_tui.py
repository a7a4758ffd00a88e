"""Chats that last, driven through the app with the fake source: quit and continue,
the chats screen (search, open, rename, delete), copying, long chats, a damaged file."""

from __future__ import annotations

from contextlib import asynccontextmanager

from textual.app import App

from chatapp import paths
from chatapp.store import ChatStore
from chatapp.tui.app import ChatApp
from chatapp.tui.chat_log import SHOWN_AT_OPEN, AssistantMessage, ChatLog, UserMessage
from chatapp.tui.chats_screen import ChatsScreen
from chatapp.tui.lens import LensView
from chatapp.tui.textual_internals import notifications
from tests.tui_helpers import fake_app, ready, send, set_field, submit, wait_for


async def _chat_and_quit() -> None:
    app, _ = fake_app(["The ", "sea ", "is ", "wide."])
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await set_field(pilot, "temperature", "0.4")
        await send(pilot, "Tell me about the sea")
        await send(pilot, "And the sky?")
        await set_field(pilot, "temperature", "1.3")
        await pilot.press("ctrl+r")  # a second version of the last reply
        await wait_for(pilot, lambda: app.replies_done == 3)
        await pilot.press("ctrl+q")


async def test_quit_then_continue_brings_back_messages_versions_parameters_and_lens():
    await _chat_and_quit()
    app, source = fake_app(["The ", "sea ", "is ", "wide."], continue_last=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.pause(0.1)
        users = [w.text for w in app.query(UserMessage)]
        assert users == ["Tell me about the sea", "And the sky?"]
        replies = app.query(AssistantMessage)
        assert [r.text for r in replies] == ["The sea is wide."] * 2
        last = replies.last()
        assert len(last.versions) == 2 and last.shown == 1
        assert [v.params.temperature for v in last.versions] == [0.4, 1.3]
        meta = str(last.query_one(".meta").render())
        assert meta.startswith("v2/2 · T 1.3") and "4 tokens" in meta
        await pilot.press("alt+left")
        assert last.shown == 0 and str(last.query_one(".meta").render()).startswith("v1/2 · T 0.4")
        # The lens works on the reopened reply: its steps are recomputed from the tokens.
        await pilot.press("f3")
        await wait_for(pilot, lambda: bool(last.lens_steps))
        assert source.replays == 1 and len(last.lens_steps) == 4
        await pilot.pause(0.1)
        assert app.query_one(LensView).step is last.lens_steps[-1]
        await pilot.press("f7")
        assert app.query_one(LensView).step is last.lens_steps[-2]
        # The shown version is remembered too.
        await pilot.press("ctrl+q")
    again, _ = fake_app(["x"], continue_last=True)
    async with again.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.pause(0.1)
        assert again.query(AssistantMessage).last().shown == 0


async def test_continue_puts_back_the_parameters_of_the_chat_s_last_reply():
    """A chat goes on with the values it was using (the version shown of its last reply:
    T 1.3 here), unless the command line chose values; then those are kept."""
    from chatapp.params import SamplingParams
    from chatapp.tui.panel import ParamPanel

    await _chat_and_quit()
    app, source = fake_app(["ok"], continue_last=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.pause(0.1)
        assert app.params.temperature == 1.3
        assert app.query_one("#param-temperature").value == "1.3"
        assert any("last reply: T 1.3" in n for n in notifications(app))
        await send(pilot, "One more")
        assert source.calls[0][1].temperature == 1.3
    given = SamplingParams(temperature=0.2)
    app, source = fake_app(["ok"], continue_last=True, params=given, params_given=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.pause(0.1)
        assert app.query_one(ParamPanel).params.temperature == 0.2
        await send(pilot, "And one more")
        assert source.calls[0][1].temperature == 0.2


async def test_a_new_message_after_continue_sends_the_whole_reopened_history():
    await _chat_and_quit()
    app, source = fake_app(["ok"], continue_last=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await send(pilot, "One more")
        sent = [(m.role, m.content) for m in source.calls[0][0]]
        assert sent == [
            ("user", "Tell me about the sea"),
            ("assistant", "The sea is wide."),
            ("user", "And the sky?"),
            ("assistant", "The sea is wide."),
            ("user", "One more"),
        ]
    assert len(ChatStore().list_chats()) == 1


async def _open_chats(pilot) -> ChatsScreen:
    await pilot.press("ctrl+o")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, ChatsScreen))
    await pilot.pause(0.1)
    return pilot.app.screen


async def test_ctrl_n_keeps_the_old_chat_and_search_opens_it_again():
    app, _ = fake_app(["Whales ", "sing."])
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await send(pilot, "What do humpbacks do?")
        await pilot.press("ctrl+n")
        assert not app.query(UserMessage)
        await send(pilot, "Something about bread")
        screen = await _open_chats(pilot)
        assert [c.title for c in screen.chats] == ["Something about bread", "What do humpbacks do?"]
        await pilot.press(*"humpback")
        await pilot.pause(0.2)
        assert [c.title for c in screen.chats] == ["What do humpbacks do?"]
        assert "humpbacks" in screen.chats[0].snippet
        await pilot.press("enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, ChatsScreen))
        await pilot.pause(0.1)
        assert [w.text for w in app.query(UserMessage)] == ["What do humpbacks do?"]
        assert app.pane.session.chat.title == "What do humpbacks do?"


async def test_rename_and_delete_from_the_chats_screen():
    app, _ = fake_app(["Fine."])
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await send(pilot, "first chat")
        await pilot.press("ctrl+n")
        await send(pilot, "second chat")
        screen = await _open_chats(pilot)
        await pilot.press("ctrl+r")
        await pilot.pause(0.2)
        app.screen.query_one("Input").value = "Renamed"
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert [c.title for c in screen.chats] == ["Renamed", "first chat"]
        assert app.pane.session.chat.title == "Renamed"  # it was the open chat
        await pilot.press("down", "ctrl+d")
        await pilot.pause(0.2)
        await pilot.press("y")  # Confirm: yes
        await pilot.pause(0.2)
        assert [c.title for c in screen.chats] == ["Renamed"]
    assert [c.title for c in ChatStore().list_chats()] == ["Renamed"]


async def test_copy_puts_the_reply_and_its_last_code_block_on_the_clipboard():
    reply = ["Use this:\n\n", "```python\n", "print('hi')\n", "```\n", "Done."]
    app, _ = fake_app(reply)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.press("f9")
        assert app.clipboard == ""
        await send(pilot, "show code")
        await pilot.press("f9")
        assert app.clipboard == "".join(reply)
        await pilot.press("shift+f9")
        assert app.clipboard == "print('hi')"
        assert any("code block" in n for n in notifications(app))


async def test_a_long_chat_opens_with_its_newest_turns_and_shows_earlier_ones_on_request():
    from chatapp.conversation import ChatSession
    from chatapp.params import SamplingParams
    from tests.test_store import _stats

    session = ChatSession(ChatStore())
    for i in range(70):
        turn = session.add_user(f"question {i}")
        session.finish_reply(session.start_reply(turn, SamplingParams(), "m", "e"), _stats("a"))
    app, _ = fake_app(["x"], chat_id=session.chat.id)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.pause(0.1)
        users = app.query(UserMessage)
        assert len(users) == SHOWN_AT_OPEN and users.last().text == "question 69"
        app.query_one("#earlier").press()
        await pilot.pause(0.2)
        assert len(app.query(UserMessage)) == 2 * SHOWN_AT_OPEN
        first = 70 - 2 * SHOWN_AT_OPEN
        assert app.query(UserMessage).first().text == f"question {first}"
        assert app.query_one(ChatLog).first_mounted == first


async def test_a_damaged_history_file_is_named_and_chatting_goes_on():
    path = paths.history_file()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"garbage" * 1000)
    app, source = fake_app(["still ", "here"])
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        assert any(str(path) in n for n in notifications(app))
        await send(pilot, "hello")
        assert app.query(AssistantMessage).last().text == "still here"
        screen = await _open_chats(pilot)
        assert [c.title for c in screen.chats] == ["hello"]
    assert path.read_bytes() == b"garbage" * 1000


async def test_continue_with_no_saved_chat_says_so():
    app, _ = fake_app(["x"], continue_last=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        assert any("No saved chat" in n for n in notifications(app))


def test_app_module_stays_small():
    import inspect

    import chatapp.tui.app as module

    assert len(inspect.getsource(module).splitlines()) <= 450  # no module over 450 lines (issue 23)
    assert ChatApp.__mro__[1] is App  # routes to controllers and panes: no mixins


@asynccontextmanager
async def _reopened_reply():
    """The last chat continued in a new app (after a quit): its last reply."""
    again, _ = fake_app(["x"], continue_last=True)
    async with again.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.pause(0.1)
        yield again.query_one(AssistantMessage)


async def test_quitting_mid_reply_keeps_the_partial_reply_marked_stopped():
    from chatapp.engine.fake import FakeTokenSource

    source = FakeTokenSource([f"w{i} " for i in range(50)], 400, pause_after=7)
    app = ChatApp(lambda progress: source)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        app.query_one("#prompt").insert("go on")
        await pilot.press("enter")
        await wait_for(pilot, lambda: source.paused.is_set())
        await pilot.pause(0.2)
        await pilot.press("ctrl+q")
    async with _reopened_reply() as reply:
        assert reply.version.status == "stopped"
        assert reply.text == "".join(f"w{i} " for i in range(7))
        assert reply.has_class("-stopped")


async def test_quitting_while_a_fast_reply_s_end_is_drawn_keeps_it_whole_and_done(monkeypatch):
    """A reply faster than the screen ends before its last lines are drawn (they are drawn
    a view a frame): it is saved whole at its end, and a quit then keeps it whole and done,
    not cut to what was drawn and marked stopped."""
    import asyncio

    from chatapp.engine.fake import FakeTokenSource
    from chatapp.params import SamplingParams
    from chatapp.tui.reply_stream import ReplyStream

    pieces = [f"line {i}\n\n" for i in range(600)]
    source = FakeTokenSource(pieces, 100_000)
    app = ChatApp(lambda progress: source, SamplingParams(max_new_tokens=len(pieces)))
    drawing = asyncio.Event()

    async def a_screen_that_never_catches_up(stream: ReplyStream) -> None:
        await stream._flush()  # a view of it drawn, then no more
        drawing.set()
        await asyncio.sleep(3600)

    monkeypatch.setattr(ReplyStream, "_drain", a_screen_that_never_catches_up)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await submit(pilot, "go on")
        await wait_for(pilot, lambda: drawing.is_set(), timeout=30)
        assert app.generating  # its end not drawn yet
        await pilot.press("ctrl+q")
    async with _reopened_reply() as reply:
        assert reply.version.status == "done"
        assert reply.version.text == "".join(pieces)
