"""Switching the model mid-chat ("Model…", Ctrl+L): the picker, the load on a thread,
the swap once no reply streams, a failure that keeps the current model, and the choice
remembered. Fake engines here; the real model and a tiny random-weight one at the end."""

from __future__ import annotations

import pytest

from chatapp.conversation import ChatSession
from chatapp.engine.fake import FakeTokenSource
from chatapp.engine.types import ModelLoadError
from chatapp.settings import SettingsFile
from chatapp.store import ChatStore
from chatapp.tui.model_switch import ModelPicker
from chatapp.tui.textual_internals import notifications
from tests.tui_helpers import fake_app, ready, send, wait_for


def named(name: str, pieces: list[str], rate: float = 400.0) -> FakeTokenSource:
    source = FakeTokenSource(pieces, tokens_per_second=rate)
    source.loaded.name = name
    return source


async def _pick(pilot, typed: str) -> None:
    app = pilot.app
    await pilot.press("ctrl+l")
    await wait_for(
        pilot, lambda: isinstance(app.screen, ModelPicker) and app.screen.query("#model-typed")
    )
    field = app.screen.query_one("#model-typed")
    field.value = typed
    field.focus()
    await pilot.press("enter")


async def test_switch_model_mid_chat_and_the_chat_goes_on_with_it():
    app, first = fake_app(["Old ", "model."])
    first.loaded.name = "first-model"
    asked: list[str] = []

    def factory(choice, progress):
        asked.append(choice)
        progress("Loading the weights", 0.5)
        return named(choice, ["New ", "model."])

    app.switcher.factory = factory
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await send(pilot, "Hello?")
        await _pick(pilot, "/models/second")
        await wait_for(pilot, lambda: app.engine is not first)
        assert asked == ["/models/second"]
        assert app.engine.model_name == "/models/second"
        assert all(pane.engine is app.engine for pane in app.panes)
        await send(pilot, "And now?")
        second = app.engine
        # The new engine got the whole conversation so far, the old one nothing more.
        assert [m.content for m in second.calls[0][0]] == ["Hello?", "Old model.", "And now?"]
        assert len(first.calls) == 1
        turns = app.pane.session.chat.turns
        assert [t.reply.model for t in turns] == ["first-model", "/models/second"]
        assert [t.reply.text for t in turns] == ["Old model.", "New model."]
        chat_id = app.pane.session.chat.id
    assert SettingsFile().values.recent_models == ["/models/second"]
    saved = ChatSession(ChatStore())
    assert saved.open(chat_id)
    assert [t.reply.model for t in saved.chat.turns] == ["first-model", "/models/second"]


async def test_a_model_that_fails_to_load_leaves_the_current_one():
    app, first = fake_app(["Still ", "here."])

    def factory(choice, progress):
        raise ModelLoadError(f"No model at {choice}: the path does not exist")

    app.switcher.factory = factory
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await _pick(pilot, "/nope")
        await wait_for(pilot, lambda: app.switcher.loading is None)
        await pilot.pause(0.05)
        assert app.engine is first
        assert any("/nope: No model at /nope" in n for n in notifications(app))
        await send(pilot, "Hello?")
        assert app.pane.session.chat.turns[0].reply.text == "Still here."
    assert SettingsFile().values.recent_models == []


async def test_a_reply_streaming_ends_on_its_model_before_the_swap():
    app, first = fake_app([f"w{i} " for i in range(30)], rate=40)
    first.loaded.name = "first-model"
    app.switcher.factory = lambda choice, progress: named(choice, ["Fast."])
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        app.query_one("#prompt").insert("Long one")
        done = app.replies_done
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.pane.streaming)
        await _pick(pilot, "next-model")
        await wait_for(
            pilot, lambda: app.switcher.loading is None or app.switcher._ready is not None
        )
        assert app.engine is first and app.pane.streaming  # held until the reply ends
        await wait_for(pilot, lambda: app.replies_done > done, timeout=10)
        await wait_for(pilot, lambda: app.engine is not first)
        reply = app.pane.session.chat.turns[0].reply
        assert reply.model == "first-model" and reply.status == "done"


async def test_the_picker_offers_recent_choices_and_servers_from_settings():
    settings = SettingsFile()
    settings.set("recent_models", ["/models/a"])
    settings.set("servers", ["http://127.0.0.1:8000/v1"])
    app, _ = fake_app(["x"])
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        choices = [choice for _, choice in app.switcher.choices()]
        assert choices[0] == "bundled"
        assert "/models/a" in choices and "http://127.0.0.1:8000/v1" in choices
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: isinstance(app.screen, ModelPicker))
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, ModelPicker))
        assert app.switcher.loading is None


@pytest.mark.model
async def test_switch_from_the_bundled_model_to_a_tiny_random_one(engine, tmp_path):
    """The real flow: the bundled model, then a tiny random-weight model saved to a
    folder, loaded by the app's own factory; a reply comes from it."""
    import sys
    from pathlib import Path

    from chatapp.params import SamplingParams
    from chatapp.tui.app import ChatApp

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from bench_common import random_model_folder

    folder = random_model_folder(tmp_path / "tiny", tiny=True, dtype="float32")
    app = ChatApp(lambda progress: engine, SamplingParams(max_new_tokens=4, seed=1))
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await send(pilot, "Hello?")
        await _pick(pilot, str(folder))
        await wait_for(pilot, lambda: app.engine is not engine, timeout=120)
        assert str(folder) in app.engine.describe() or app.engine.model_name == str(folder)
        await send(pilot, "And now?")
        turns = app.pane.session.chat.turns
        assert turns[0].reply.model == engine.model_name
        assert turns[1].reply.model == app.engine.model_name != engine.model_name
        assert turns[1].reply.status == "done" and turns[1].reply.stats.new_tokens >= 1


async def test_the_server_in_use_offers_each_of_its_models():
    """On a server (a stub on loopback), the picker lists every model it serves; picking
    one connects to it through the app's own factory, and replies come from it."""
    from chatapp.engine.remote import RemoteEngine
    from chatapp.tui.app import ChatApp
    from tests.openai_stub import StubServer

    models = [{"id": n, "object": "model", "owned_by": "stub"} for n in ("alpha", "beta")]
    with StubServer(["Hi."], models=models) as stub:
        app = ChatApp(lambda progress: RemoteEngine(stub.url))
        async with app.run_test(size=(80, 24)) as pilot:
            await ready(pilot)
            assert app.engine.model_name == "alpha"
            choices = [choice for _, choice in app.switcher.choices()]
            assert f"{stub.url} beta" in choices and f"{stub.url} alpha" in choices
            await _pick(pilot, f"{stub.url} beta")
            await wait_for(pilot, lambda: app.engine.model_name == "beta", timeout=15)
            await send(pilot, "Hello?")
            assert stub.bodies("/v1/chat/completions")[-1]["model"] == "beta"
