"""End-to-end app flows with the real bundled model (CPU, short replies)."""

from __future__ import annotations

import pytest

from chatapp import paths
from chatapp.params import SamplingParams
from chatapp.tui.app import ChatApp
from chatapp.tui.chat import AssistantMessage
from chatapp.tui.panel import ParamPanel
from tests.tui_helpers import ready, send, set_field, start_reply, wait_for

pytestmark = pytest.mark.model
SHORT = SamplingParams(max_new_tokens=8, seed=0)


def real_app(engine, **kwargs) -> ChatApp:
    return ChatApp(lambda progress: engine, kwargs.pop("params", SHORT), **kwargs)


async def test_send_message_streams_a_real_reply(engine):
    app = real_app(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await send(pilot, "使用繁體中文回答，請問什麼是大型語言模型？")
        reply = app.query_one(AssistantMessage)
        assert reply.text.strip() and "\ufffd" not in reply.text
        assert reply.markdown.source == reply.text
        assert reply.versions[0].stats.new_tokens <= 8


async def test_temperature_change_mid_conversation_shapes_next_reply(engine):
    app = real_app(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await send(pilot, "Name a colour.")
        await set_field(pilot, "temperature", "1.5")
        await send(pilot, "Another one.")
        replies = app.query(AssistantMessage)
        assert replies[0].versions[0].params.temperature == 0.75
        assert replies[1].versions[0].params.temperature == 1.5
        assert "T 1.5" in str(replies[1].query_one(".meta").render())


async def test_escape_mid_reply_with_real_model(engine):
    app = real_app(engine, params=SamplingParams(max_new_tokens=300, seed=0))
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await start_reply(pilot, "Tell me a long story.")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.replies_done == 1, timeout=60)
        stats = app.query_one(AssistantMessage).versions[0].stats
        assert stats.finish_reason == "stopped" and stats.new_tokens < 300
        assert app.query_one(AssistantMessage).text


@pytest.mark.parametrize(
    "name,bad", [("top_p", "1.5"), ("no_repeat_ngram_size", "x"), ("seed", "-3")]
)
async def test_invalid_field_never_reaches_the_real_engine(engine, name, bad):
    app = real_app(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        app.query_one("#advanced").collapsed = False
        before = getattr(app.params, name)
        await set_field(pilot, name, bad)
        assert app.query_one(f"#param-{name}").has_class("-invalid")
        await send(pilot, "Hello")
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
    app2 = real_app(engine)
    async with app2.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        app2.load_preset("five")
        await pilot.pause(0.05)
        await set_field(pilot, "max_new_tokens", "6")
        await send(pilot, "Hi")
        assert app2.query_one(AssistantMessage).versions[0].params.top_k == 5


async def test_theme_switch_and_f2_at_80x24_with_real_model(engine):
    app = real_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        app.theme = "chatapp-light"
        await pilot.press("f2")
        assert not app.query_one(ParamPanel).display
        await send(pilot, "Hi")
        assert app.query_one(AssistantMessage).text
        assert app.theme == "chatapp-light"
