"""End-to-end app flows with the real bundled model (CPU, short replies)."""

from __future__ import annotations

import pytest

from chatapp import paths
from chatapp.params import SamplingParams
from chatapp.tui.app import ChatApp
from chatapp.tui.chat_log import AssistantMessage
from chatapp.tui.panel import ParamPanel
from tests.tui_helpers import (
    assert_streamed,
    ready,
    send,
    send_watching,
    set_field,
    shown_text,
    start_reply,
    wait_for,
)

pytestmark = pytest.mark.model
SHORT = SamplingParams(max_new_tokens=8, seed=0)


def real_app(engine, **kwargs) -> ChatApp:
    return ChatApp(lambda progress: engine, kwargs.pop("params", SHORT), **kwargs)


class Received:
    """The real engine, keeping the values each request reached it with."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.params: list[SamplingParams] = []

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def stream_reply(self, messages, params, *args, **kwargs):
        self.params.append(params)
        return self.engine.stream_reply(messages, params, *args, **kwargs)


async def test_send_message_streams_a_real_reply(engine):
    app = real_app(engine, params=SHORT.replace(max_new_tokens=16))
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        seen = await send_watching(pilot, "使用繁體中文回答，請問什麼是大型語言模型？", engine)
        reply = app.query_one(AssistantMessage)
        assert reply.text.strip() and "\ufffd" not in reply.text
        assert reply.body.text == reply.text
        assert reply.versions[0].stats.new_tokens <= 16
        assert_streamed(seen, shown_text(reply))


async def test_temperature_change_mid_conversation_shapes_next_reply(engine):
    received = Received(engine)
    app = real_app(received)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await send(pilot, "Name a colour.")
        await set_field(pilot, "temperature", "1.5")
        await send(pilot, "Another one.")
        replies = app.query(AssistantMessage)
        assert [p.temperature for p in received.params] == [0.75, 1.5]  # what the engine got
        assert replies[0].versions[0].params.temperature == 0.75
        assert replies[1].versions[0].params.temperature == 1.5
        assert "T 1.5" in str(replies[1].query_one(".meta").render())


class StopCounter:
    """The real engine, counting the tokens generated after the app asked it to stop."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.tokens = 0
        self.tokens_at_stop: int | None = None

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def stream_reply(self, messages, params, on_text, *, cancel, **kwargs):
        # The app stops a reply by setting its cancel event: seen at the next token, the
        # tokens made before it are those made before the stop.
        def on_token(token_id, _):
            if cancel.is_set() and self.tokens_at_stop is None:
                self.tokens_at_stop = self.tokens
            self.tokens += 1

        stats = self.engine.stream_reply(
            messages, params, on_text, on_token=on_token, cancel=cancel, **kwargs
        )
        if cancel.is_set() and self.tokens_at_stop is None:  # no token came after it
            self.tokens_at_stop = self.tokens
        return stats


async def test_escape_mid_reply_with_real_model_ends_within_one_token(engine):
    from chatapp.engine import LocalEngine

    counter = StopCounter(LocalEngine(engine.loaded, chat_format="raw"))
    app = ChatApp(lambda progress: counter, SamplingParams(max_new_tokens=300, seed=0))
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await start_reply(pilot, "Once upon a time, in a village by the sea,")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.replies_done == 1, timeout=60)
        stats = app.query_one(AssistantMessage).versions[0].stats
        assert stats.finish_reason == "stopped"
        assert counter.tokens_at_stop is not None and counter.tokens == stats.new_tokens
        assert stats.new_tokens - counter.tokens_at_stop <= 1
        assert app.query_one(AssistantMessage).text
        assert app.query_one(AssistantMessage).has_class("-stopped")


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(do_sample=False, repetition_penalty=1.0, max_new_tokens=12),
        SamplingParams(temperature=1.1, max_new_tokens=12, seed=5),
    ],
    ids=["greedy", "seeded-sampling"],
)
async def test_the_app_says_what_the_engine_says(engine, params):
    """Same messages, parameters and seed: the app's reply is the engine's, token for token."""
    from chatapp.engine import Message

    app = ChatApp(lambda progress: engine, params, system="Answer briefly.")
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await send(pilot, "Name three colours.")
        await send(pilot, "And three animals?")
        replies = app.query(AssistantMessage)
        history = [
            Message("system", "Answer briefly."),
            Message("user", "Name three colours."),
            Message("assistant", replies[0].text),
            Message("user", "And three animals?"),
        ]
    direct = engine.stream_reply(history, params)
    shown = replies[1].versions[0]
    assert shown.stats.token_ids == direct.token_ids
    assert shown.text == direct.text


@pytest.mark.parametrize(
    "name,bad", [("top_p", "1.5"), ("no_repeat_ngram_size", "x"), ("seed", "-3")]
)
async def test_invalid_field_never_reaches_the_real_engine(engine, name, bad):
    received = Received(engine)
    app = real_app(received)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        app.query_one("#advanced").collapsed = False
        before = getattr(app.params, name)
        await set_field(pilot, name, bad)
        assert app.query_one(f"#param-{name}").has_class("-invalid")
        await send(pilot, "Hello")
        assert [getattr(p, name) for p in received.params] == [before]
        assert getattr(app.query_one(AssistantMessage).versions[0].params, name) == before


async def test_preset_save_restart_load_with_real_model(engine):
    app = real_app(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await set_field(pilot, "top_k", "5")
        await pilot.press("ctrl+s")
        await pilot.pause(0.1)
        await pilot.press(*"five", "enter")
        await pilot.pause(0.1)
    assert "five" in paths.presets_file().read_text()
    received = Received(engine)
    app2 = real_app(received)
    async with app2.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        app2.preset_dialogs.load("five")
        await pilot.pause(0.05)
        await set_field(pilot, "max_new_tokens", "6")
        await send(pilot, "Hi")
        assert [(p.top_k, p.max_new_tokens) for p in received.params] == [(5, 6)]
        assert app2.query_one(AssistantMessage).versions[0].params.top_k == 5


async def test_theme_switch_and_f2_at_80x24_with_real_model(engine):
    """The palette's theme command repaints the screen in the theme's colours; F2 hides
    the panel and the reply takes the whole width."""
    app = real_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        light = app.get_theme("chatapp-light")
        dark = app.get_theme("chatapp-dark")
        assert _background(app) == dark.background.lower()
        await _run_palette_command(pilot, "Theme: chatapp-light")
        await pilot.press("f2")
        await send(pilot, "Hi")
        assert not app.query_one(ParamPanel).display
        reply = app.query_one(AssistantMessage)
        assert reply.text and reply.size.width > 70  # the panel's width went to the chat
        assert _background(app) == light.background.lower()


def _background(app) -> str:
    """The colour the terminal shows behind the chat: the screen as drawn (its SVG)."""
    import re
    from collections import Counter

    svg = app.export_screenshot()
    area: Counter[str] = Counter()
    rect = (
        r'<rect fill="(#[0-9a-fA-F]{6})" x="[\d.]+" y="[\d.]+" width="([\d.]+)" height="([\d.]+)"'
    )
    for fill, width, height in re.findall(rect, svg):
        area[fill.lower()] += float(width) * float(height)
    return area.most_common(1)[0][0]


async def _run_palette_command(pilot, name: str) -> None:
    await pilot.press("ctrl+p")
    await pilot.pause(0.2)
    await pilot.press(*name)
    await pilot.pause(0.5)
    await pilot.press("enter")
    await pilot.pause(0.2)


async def test_a_long_chat_in_a_small_window_says_what_was_left_out(engine):
    from chatapp.engine import LocalEngine

    small = LocalEngine(engine.loaded, context=320)
    app = ChatApp(lambda progress: small, SamplingParams(max_new_tokens=8, seed=0))
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        for i in range(4):
            await send(pilot, f"Question {i}: " + "tell me about the sea and the waves. " * 5)
        replies = app.query(AssistantMessage)
        stats = [r.versions[0].stats for r in replies]
        assert stats[1].reused_tokens > 0  # the second turn reused the first one's cache
        last = replies.last()
        assert stats[-1].left_out >= 1
        assert "no longer fit the 320-token window" in str(last.query_one(".context-note").render())
        assert app.query(".message").first().has_class("-left-out")
        assert f"/{320:,}" in str(app.query_one("#status").render())


async def test_chat_quit_continue_and_the_lens_on_a_reopened_reply_with_real_model(engine):
    """A chat survives a restart with its versions and parameters; the lens on the
    reopened reply is recomputed from its tokens and names the tokens it drew."""
    import asyncio

    params = SamplingParams(max_new_tokens=10, temperature=0.9, seed=5)
    app = real_app(engine, params=params)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await send(pilot, "Name a colour.")
        await set_field(pilot, "temperature", "1.2")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: app.replies_done == 2, timeout=120)
        first, second = app.query_one(AssistantMessage).versions
        await pilot.press("ctrl+q")
    engine.reset()
    again = real_app(engine, params=params, continue_last=True)
    async with again.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.pause(0.1)
        reply = again.query_one(AssistantMessage)
        assert [v.text for v in reply.versions] == [first.text, second.text]
        assert [v.params.temperature for v in reply.versions] == [0.9, 1.2]
        assert [v.seed for v in reply.versions] == [5, 5]
        assert reply.versions[1].token_ids == second.stats.token_ids
        await pilot.press("f3")
        deadline = asyncio.get_running_loop().time() + 60
        while not reply.lens_steps and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        steps = reply.lens_steps
        assert [s.sampled_id for s in steps] == second.stats.token_ids
        assert "".join(s.piece for s in steps) == second.text
        assert all(0 < s.sampled_prob <= 1 for s in steps)
        assert steps[0].stages[-1] in ("top_p", "top_k", "temperature")
        # A new message continues the reopened chat: its prompt holds the first turn.
        await send(pilot, "Another one.")
        assert len(again.pane.session.chat.turns) == 2


async def test_sweep_in_the_app_with_real_model(engine):
    """Sweep… on the real model: two temperatures, two seeded samples each, plotted, the
    log-probability figure known (the local engine gives it), kept in the history."""
    import math

    from textual.widgets import Input

    from chatapp.conversation import ChatSession
    from chatapp.store import ChatStore
    from chatapp.tui.sweep_screen import SweepDialog, SweepScreen

    app = real_app(engine, params=SHORT.replace(max_new_tokens=6))
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        app.query_one("#prompt").insert("使用繁體中文回答，請問什麼是大型語言模型？")
        app.action_sweep()
        await wait_for(
            pilot, lambda: isinstance(app.screen, SweepDialog) and app.screen.query("#sweep-seed")
        )
        app.screen.query_one("#sweep-values", Input).value = "0.5, 1.3"
        app.screen.query_one("#sweep-samples", Input).value = "2"
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, SweepScreen))
        screen = app.screen
        await wait_for(pilot, lambda: not screen.running, timeout=120)
        points = screen.sweep.points
        assert [p.values for p in points] == [{"temperature": 0.5}, {"temperature": 1.3}]
        for point in points:
            assert len(point.samples) == 2 and all(s.text.strip() for s in point.samples)
            assert all("\ufffd" not in s.text for s in point.samples)
            assert not math.isnan(point.figures()["mean_logprob"])
        assert "distinct-2" in screen.query_one("#sweep-plot").plt.build()
    saved = ChatSession(ChatStore())
    assert saved.open(screen.saved)
    assert len(saved.chat.turns[0].versions) == 4
