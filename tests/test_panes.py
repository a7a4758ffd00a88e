"""Chat panes own their streams: two panes stream at once, each reply ending in its own
pane with its own stats and its own saved version; an engine that serves one reply at a
time queues the second, which says so and can be cancelled while it waits."""

from __future__ import annotations

import threading

from chatapp.conversation import ChatSession
from chatapp.engine.fake import FakeTokenSource
from chatapp.store import ChatStore
from chatapp.tui.app import ChatApp
from chatapp.tui.chat_log import AssistantMessage
from chatapp.tui.chat_pane import ChatPane
from tests.tui_helpers import ready, wait_for


class InterleavedSource(FakeTokenSource):
    """A concurrent fake engine that records which request each piece came from, so the
    test can see that two replies really streamed at the same time."""

    def __init__(self) -> None:
        super().__init__([f"p{i} " for i in range(30)], tokens_per_second=60, concurrent=True)
        self.order: list[str] = []
        self._order_lock = threading.Lock()

    def stream_reply(self, messages, params, on_text=lambda piece: None, **kwargs):
        name = messages[-1].content

        def tagged(piece: str) -> None:
            with self._order_lock:
                self.order.append(name)
            on_text(piece)

        return super().stream_reply(messages, params, tagged, **kwargs)


async def test_two_panes_stream_at_once_each_into_its_own_reply_and_history():
    source = InterleavedSource()
    app = ChatApp(lambda progress: source)
    async with app.run_test(size=(160, 40)) as pilot:
        await ready(pilot)
        first = app.pane
        second = await app.add_pane()
        second.params = second.params.replace(temperature=1.3)
        assert app.pane is second and len(app.panes) == 2
        assert await first.send("left")
        assert await second.send("right")
        assert first.streaming and second.streaming  # both at once
        await wait_for(pilot, lambda: first.replies_done == 1 and second.replies_done == 1)
        await pilot.pause(0.1)

        # The pieces arrived interleaved: each request got pieces while the other ran.
        switches = sum(1 for a, b in zip(source.order, source.order[1:], strict=False) if a != b)
        assert switches >= 4, source.order

        base = first.params.temperature
        assert base != 1.3
        for pane, text, temperature in ((first, "left", base), (second, "right", 1.3)):
            reply = pane.log.query_one(AssistantMessage)
            version = reply.version
            assert version.status == "done"
            assert reply.body.text == version.text == "".join(source.pieces)
            assert version.stats.new_tokens == 30
            assert version.params.temperature == temperature
            assert pane.session.chat.turns[0].user == text
        assert first.session.chat.id != second.session.chat.id

    # Each pane's reply was saved, with its own parameters, in its own chat.
    for pane, temperature in ((first, base), (second, 1.3)):
        saved = ChatSession(ChatStore())
        assert saved.open(pane.session.chat.id)
        reply = saved.chat.turns[0].reply
        assert reply.status == "done" and reply.params.temperature == temperature
        assert reply.text == "".join(source.pieces)


async def _second_reply_sent_while_the_first_streams(pilot, source):
    """Two panes on a one-at-a-time engine: "one" sent in the first, and while its reply
    streams, "two" in the second (the focused one). Returns the two panes."""
    await ready(pilot)
    app = pilot.app
    first = app.pane
    second = await app.add_pane()
    assert await first.send("one")
    await wait_for(pilot, lambda: source.busy)
    assert await second.send("two")
    return first, second


async def test_a_second_reply_waits_for_the_model_and_escape_cancels_it_there():
    source = FakeTokenSource([f"w{i} " for i in range(40)], tokens_per_second=40)
    app = ChatApp(lambda progress: source)
    async with app.run_test(size=(160, 40)) as pilot:
        first, second = await _second_reply_sent_while_the_first_streams(pilot, source)
        waiting = second.log.query_one(AssistantMessage)
        await wait_for(pilot, lambda: "Waiting for the model" in _note(waiting))
        await wait_for(pilot, lambda: "Waiting for the model" in _status(app))
        assert "Esc cancels" in _status(app)

        await pilot.press("escape")  # the focused pane is the waiting one
        await wait_for(pilot, lambda: second.replies_done == 1)
        assert waiting.version.status == "stopped" and waiting.version.stats.new_tokens == 0
        assert first.streaming  # the first reply goes on
        assert len(source.calls) == 1  # the cancelled request never reached the engine
        await wait_for(pilot, lambda: first.replies_done == 1)
        assert first.log.query_one(AssistantMessage).version.status == "done"


async def test_a_queued_reply_starts_once_the_running_one_ends():
    source = FakeTokenSource([f"w{i} " for i in range(20)], tokens_per_second=40)
    app = ChatApp(lambda progress: source)
    async with app.run_test(size=(160, 40)) as pilot:
        first, second = await _second_reply_sent_while_the_first_streams(pilot, source)
        await wait_for(pilot, lambda: app.queue.waiting == 1)
        await wait_for(pilot, lambda: first.replies_done == 1 and second.replies_done == 1)
        assert [messages[-1].content for messages, _ in source.calls] == ["one", "two"]
        for pane in (first, second):
            assert pane.log.query_one(AssistantMessage).version.status == "done"


async def test_clicking_a_pane_makes_it_the_focused_one_and_the_panel_shows_its_values():
    source = FakeTokenSource(["ok"])
    app = ChatApp(lambda progress: source)
    async with app.run_test(size=(160, 40)) as pilot:
        await ready(pilot)
        first = app.pane
        second = await app.add_pane()
        second.params = second.params.replace(top_k=7)
        await pilot.click(first)
        await wait_for(pilot, lambda: app.pane is first)
        assert app.params.top_k == first.params.top_k != 7
        await pilot.click(second)
        await wait_for(pilot, lambda: app.pane is second)
        assert app.params.top_k == 7


def _status(app: ChatApp) -> str:
    return str(app.query_one("#status").render())


def _note(reply: AssistantMessage) -> str:
    return str(reply.query_one(".context-note").render())


def test_panes_are_widgets_of_their_own_and_the_app_has_no_stream_state():
    import inspect

    import chatapp.tui.app as app_module

    source = inspect.getsource(app_module)
    for name in ("_pending", "_reply_text", "_flush", "_draw_unpainted", "_recorder"):
        assert name not in source, name
    assert issubclass(ChatPane, __import__("textual.widget").widget.Widget)
