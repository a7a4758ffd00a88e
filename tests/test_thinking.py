"""A reasoning model's thinking: split from the answer, shown in its own block (open while
it streams, closed once the answer begins), hidden everywhere by a toggle, kept whole in
the history; a server's separate reasoning deltas become the same tagged text."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from textual.widgets import Collapsible

from chatapp.engine import Message
from chatapp.params import SamplingParams
from chatapp.thinking import ReasoningTags, Split, split
from chatapp.tui.chat_log import AssistantMessage, toggle_thinking
from tests.openai_stub import StubServer
from tests.tui_helpers import ready, send, wait_for


@pytest.mark.parametrize(
    "text,expected",
    [
        ("<think>\nHmm.\n</think>\n\nBlue.", Split("Hmm.", "Blue.", True)),
        ("<think>Still thinking", Split("Still thinking", "", False)),
        ("The prompt opened it.</think>Blue.", Split("The prompt opened it.", "Blue.", True)),
        ("Just an answer.", Split(None, "Just an answer.", True)),
    ],
    ids=["tagged", "streaming", "closing-tag-only", "none"],
)
def test_split(text, expected):
    assert split(text) == expected


def test_a_servers_reasoning_deltas_become_tagged_text():
    tags = ReasoningTags()
    deltas = [
        (SimpleNamespace(reasoning_content="Let me"), ""),
        (SimpleNamespace(reasoning=" think."), ""),  # Ollama's name for it
        (SimpleNamespace(), "Blue"),
        (SimpleNamespace(), "."),
    ]
    text = "".join(tags.piece(delta, content) for delta, content in deltas) + tags.close()
    assert text == "<think>Let me think.</think>\n\nBlue."
    only = ReasoningTags()
    assert (
        only.piece(SimpleNamespace(reasoning_content="Hm"), "") + only.close()
        == "<think>Hm</think>"
    )


def test_the_remote_engine_keeps_a_servers_thinking_in_the_reply():
    from chatapp.engine.remote import RemoteEngine

    pieces = [{"reasoning_content": "Sky "}, {"reasoning_content": "scatters."}, "It is", " blue."]
    with StubServer(pieces) as stub:
        engine = RemoteEngine(stub.url)
        streamed: list[str] = []
        stats = engine.stream_reply([Message("user", "Why?")], SamplingParams(), streamed.append)
    assert stats.text == "<think>Sky scatters.</think>\n\nIt is blue."
    assert "".join(streamed) == stats.text


async def test_thinking_streams_open_then_closes_when_the_answer_begins():
    pieces = ["<think>", "Hmm, ", "the ", "sea.", "</think>", "\n\nIt is ", "blue."]
    from chatapp.engine.fake import FakeTokenSource
    from chatapp.tui.app import ChatApp

    source = FakeTokenSource(pieces, tokens_per_second=200, pause_after=3)  # held mid-thought
    app = ChatApp(lambda progress: source)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        app.query_one("#prompt").insert("Colour of the sea?")
        done = app.replies_done
        await pilot.press("enter")
        await wait_for(pilot, lambda: bool(app.query(AssistantMessage)))
        reply = app.query_one(AssistantMessage)
        block = reply.query_one(".thinking", Collapsible)
        await wait_for(pilot, source.paused.is_set)
        await wait_for(
            pilot,
            lambda: block.display and "Hmm" in str(reply.query_one(".thinking-text").render()),
        )
        assert not block.collapsed  # open while the model thinks
        assert reply.body.text == ""
        source.resume()
        await wait_for(pilot, lambda: app.replies_done > done)
        await pilot.pause(0.05)
        assert block.collapsed and block.display
        assert str(reply.query_one(".thinking-text").render()) == "Hmm, the sea."
        assert reply.body.text == "It is blue."
        assert reply.text == "".join(pieces)  # kept whole: history, exports, next prompt
        toggle_thinking(app)
        assert not block.display
        await send(pilot, "And the sky?")
        assert not app.query(AssistantMessage).last().query_one(".thinking").display
        toggle_thinking(app)
        assert block.display
        # The next request carried the reply as the model wrote it (its template decides
        # whether the thinking stays in the prompt).
        assert source.calls[-1][0][1].content == "".join(pieces)
