"""The side panel: fields, validation, help, presets and themes (Pilot, a fake token
source)."""

from __future__ import annotations

import pytest

from chatapp import paths
from chatapp.params import TUTORIAL_VALUES
from chatapp.presets import PresetStore
from chatapp.tui.chat_log import ChatLog
from chatapp.tui.panel import ParamPanel
from chatapp.tui.textual_internals import notifications
from tests.tui_helpers import (
    fake_app,
    ready,
    send,
    set_field,
)


async def test_f2_hides_the_panel_at_80x24():
    app, _ = fake_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        panel = app.query_one(ParamPanel)
        assert panel.display
        await pilot.press("f2")
        assert not panel.display
        assert app.query_one(ChatLog).size.width > 70
        await pilot.press("f2")
        assert panel.display


@pytest.mark.parametrize(
    "name,bad,kept",
    [
        ("temperature", "hot", 0.75),
        ("top_k", "2.5", 50),
        ("seed", "abc", None),
        ("max_new_tokens", "0", 256),
    ],
)
async def test_invalid_entry_shows_message_at_field_and_keeps_last_valid(name, bad, kept):
    app, source = fake_app(["x"])
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        if name == "seed":
            app.query_one("#advanced").collapsed = False
        await set_field(pilot, name, bad)
        field = app.query_one(f"#param-{name}")
        error = app.query_one(f"#error-{name}")
        assert field.has_class("-invalid")
        assert error.display and f"{name} must be" in str(error.render())
        assert getattr(app.params, name) == kept
        await send(pilot, "go")
        assert getattr(source.calls[0][1], name) == kept
        await set_field(pilot, name, "3")
        assert not field.has_class("-invalid") and not error.display
        assert getattr(app.params, name) == 3


async def test_greedy_dims_sampling_fields_with_the_tutorial_note():
    app, _ = fake_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        app.query_one("#param-do_sample").focus()
        await pilot.press("enter")  # toggles the switch
        await pilot.pause(0.05)
        assert app.params.do_sample is False
        for name in ("temperature", "top_k", "top_p", "min_p", "typical_p"):
            assert app.query_one(f"#row-{name}").has_class("-ignored")
        assert not app.query_one("#row-max_new_tokens").has_class("-ignored")
        assert "tutorial advises" in str(app.query_one("#greedy-note").render())


async def test_up_down_nudge_the_focused_value():
    app, _ = fake_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        app.query_one("#param-temperature").focus()
        await pilot.press("up")
        await pilot.pause(0.05)
        assert app.params.temperature == pytest.approx(0.8)
        await pilot.press("down", "down")
        await pilot.pause(0.05)
        assert app.params.temperature == pytest.approx(0.7)


async def test_focus_shows_help_and_f4_switches_to_the_tutorial_chinese():
    app, _ = fake_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        app.query_one("#param-top_p").focus()
        await pilot.pause(0.05)
        assert "Nucleus sampling" in str(app.query_one("#param-help").render())
        await pilot.press("f4")
        await pilot.pause(0.05)
        assert "nucleus sampling" in str(app.query_one("#param-help").render())
        assert "常用值如 0.9" in str(app.query_one("#param-help").render())


async def test_save_preset_then_restart_and_load_it():
    app, _ = fake_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await set_field(pilot, "temperature", "1.25")
        await pilot.press("ctrl+s")
        await pilot.pause(0.1)
        await pilot.press(*"mine", "enter")
        await pilot.pause(0.1)
    assert paths.presets_file().exists()
    app2, source2 = fake_app(["y"])
    async with app2.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        assert app2.params.temperature == 0.75
        app2.preset_dialogs.load("mine")
        await pilot.pause(0.1)
        assert app2.params.temperature == 1.25
        assert app2.query_one("#param-temperature").value == "1.25"
        await send(pilot, "go")
        assert source2.calls[0][1].temperature == 1.25


async def test_overwrite_asks_first_and_builtins_are_protected():
    PresetStore().save("mine", PresetStore().get("Creative").params)
    app, _ = fake_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await set_field(pilot, "top_k", "7")
        app.preset_dialogs.save_as("mine", app.params)
        await pilot.pause(0.1)
        await pilot.press("n")
        await pilot.pause(0.1)
        assert PresetStore().get("mine").params.top_k == 0
        app.preset_dialogs.save_as("mine", app.params)
        await pilot.pause(0.1)
        await pilot.press("y")
        await pilot.pause(0.1)
        assert PresetStore().get("mine").params.top_k == 7
        app.preset_dialogs.save_as("Greedy", app.params)
        await pilot.pause(0.05)
        assert any("built-in" in n for n in notifications(app))


async def test_preset_from_command_line_is_applied():
    store = PresetStore()
    app, source = fake_app(["z"], params=store.get("Tutorial").params, preset="Tutorial")
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await send(pilot, "go")
        assert {k: getattr(source.calls[0][1], k) for k in TUTORIAL_VALUES} == TUTORIAL_VALUES


async def test_corrupt_preset_file_is_reported_kept_and_backed_up_on_save():
    path = paths.presets_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("this is [not toml")
    app, _ = fake_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        notes = [n for n in notifications(app)]
        assert any(str(path) in n and "could not be read" in n for n in notes)
        assert path.read_text() == "this is [not toml"
        app.preset_dialogs.save_as("fresh", app.params)
        await pilot.pause(0.05)
    backups = list(path.parent.glob("presets.toml.bak-*"))
    assert backups and backups[0].read_text() == "this is [not toml"
    assert PresetStore().get("fresh") is not None


async def test_theme_switch_is_remembered_and_broken_theme_skipped():
    themes = paths.user_themes_dir()
    themes.mkdir(parents=True)
    (themes / "broken.toml").write_text('name = "broken"\nprimary = "notacolour"\n')
    app, _ = fake_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        assert app.theme == "chatapp-dark"
        assert sum("broken.toml" in n for n in notifications(app)) == 1
        assert "broken" not in app.available_themes
        app.theme = "chatapp-light"
        await pilot.pause(0.1)
    app2, _ = fake_app()
    async with app2.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        assert app2.theme == "chatapp-light"


async def test_command_palette_lists_chat_commands():
    app, _ = fake_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+p")
        await pilot.pause(0.2)
        await pilot.press(*"export chat")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause(0.2)
        exports = list((paths.data_dir() / "exports").glob("chat-*.md"))
        assert len(exports) == 1
