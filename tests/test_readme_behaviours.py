"""Behaviours the README promises: keys, command-line options, preset and settings files."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from chatapp import paths
from chatapp.chats_cli import COMMANDS
from chatapp.cli import build_parser, parse_command_line
from chatapp.engine.fake import FakeTokenSource
from chatapp.presets import PresetStore
from chatapp.tui.chat_log import AssistantMessage
from chatapp.tui.launch import make_app
from chatapp.tui.panel import ParamPanel
from chatapp.tui.textual_internals import notifications
from tests.tui_helpers import fake_app, ready, send, wait_for


def app_from_command_line(*argv: str, pieces=("ok",)):
    """The app exactly as ``chatapp ARGV`` would build it, over a fake token source."""
    args, params = parse_command_line(list(argv))
    source = FakeTokenSource(list(pieces))
    return make_app(args, params, lambda progress: source), source


README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def _readme_section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def _readme_command_lines() -> list[list[str]]:
    """Every ``chatapp …`` command in the README's shell blocks, as argv after ``chatapp``."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", README, flags=re.S):
        for line in block.splitlines():
            line = line.split("| ", 1)[-1].strip()  # echo … | chatapp …
            if line.startswith("chatapp"):
                commands.append(shlex.split(line, comments=True)[1:])
    return commands


# -- the README's commands and keys -----------------------------------------------------------
def test_every_command_line_in_the_readme_parses():
    commands = _readme_command_lines()
    assert len(commands) >= 10
    parser = build_parser()
    for argv in commands:
        parser.parse_args(argv)  # exits 2, naming the flag, on one that is not there
    used = {argv[0] for argv in commands if argv}
    assert set(COMMANDS) <= used  # each command has an example


def _readable(key: str) -> str:
    names = {"escape": "Esc", "enter": "Enter", "tab": "Tab", "end": "End"}
    return "+".join(names.get(part, part.capitalize()) for part in key.split("+"))


def _bindings_of(app) -> set[str]:
    """The keys chatapp's own classes bind, along the focused widget's chain."""
    nodes = [app, app.screen, *app.focused.ancestors_with_self]
    keys = set()
    for node in nodes:
        for cls in type(node).__mro__:
            if not cls.__module__.startswith("chatapp"):
                continue
            for binding in cls.__dict__.get("BINDINGS", ()):
                key = binding.key if hasattr(binding, "key") else binding[0]
                keys.update(k.strip() for k in key.split(","))
    return keys


async def test_the_readme_names_every_key_the_app_binds():
    keys_text = _readme_section("Keys in the app")
    app, _ = fake_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        bound = _bindings_of(app)
        app.query_one("#param-top_k").focus()
        await pilot.pause(0.05)
        bound |= _bindings_of(app)
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ChatsScreen")
        bound |= _bindings_of(app)
    assert {"ctrl+r", "f3", "ctrl+d", "up"} <= bound  # the app's, the chats list's, a field's
    missing = sorted(key for key in bound if _readable(key) not in keys_text)
    assert missing == []


# -- keys ---------------------------------------------------------------------------------
async def test_shift_enter_and_ctrl_j_insert_newlines_and_enter_sends():
    app, source = fake_app(["ok"])
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        box = app.query_one("#prompt")
        box.focus()
        await pilot.press("a", "shift+enter", "b", "ctrl+j", "c")
        assert box.text == "a\nb\nc"
        assert source.calls == []
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.replies_done == 1)
        assert source.calls[0][0][-1].content == "a\nb\nc"


async def test_plus_and_minus_nudge_the_focused_value():
    app, _ = fake_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        app.query_one("#param-top_k").focus()
        await pilot.press("plus")
        await pilot.pause(0.05)
        assert app.params.top_k == 55  # top_k's step is 5
        await pilot.press("minus", "minus", "minus")
        await pilot.pause(0.05)
        assert app.params.top_k == 40
        assert app.query_one("#param-top_k").value == "40"
        app.query_one("#param-temperature").focus()
        await pilot.press("plus")
        await pilot.pause(0.05)
        assert app.params.temperature == pytest.approx(0.8)


async def test_alt_left_and_alt_right_move_between_versions():
    app, _ = fake_app(["one ", "two"])
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await send(pilot, "hi")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: app.replies_done == 2)
        reply = app.query_one(AssistantMessage)
        await pilot.press("alt+left")
        await pilot.pause(0.05)
        assert reply.shown == 0 and "v1/2" in str(reply.query_one(".meta").render())
        await pilot.press("alt+right")
        await pilot.pause(0.05)
        assert reply.shown == 1 and "v2/2" in str(reply.query_one(".meta").render())
        await pilot.press("alt+right")  # already the newest: stays
        await pilot.pause(0.05)
        assert reply.shown == 1


# -- command-line options that reach the app -------------------------------------------------
async def test_theme_flag_chooses_the_theme_and_an_unknown_one_is_reported():
    app, _ = app_from_command_line("--theme", "terminal-green")
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        assert app.theme == "terminal-green"
    app, _ = app_from_command_line("--theme", "no-such-theme")
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        assert app.theme == "chatapp-dark"
        assert any("No theme named 'no-such-theme'" in n for n in notifications(app))


async def test_system_and_preset_flags_shape_the_first_request():
    app, source = app_from_command_line(
        "--system", "Answer in one word.", "--preset", "Precise", "--top-k", "7"
    )
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await send(pilot, "Colour of the sky?")
        messages, params = source.calls[0]
        assert [(m.role, m.content) for m in messages] == [
            ("system", "Answer in one word."),
            ("user", "Colour of the sky?"),
        ]
        precise = PresetStore().get("Precise").params
        assert params == precise.replace(top_k=7)
        assert app.query_one("#preset-select").value == "Precise"


# -- presets through the palette and the dropdown -------------------------------------------
async def _palette(pilot, command: str) -> None:
    await pilot.press("ctrl+p")
    await pilot.pause(0.2)
    await pilot.press(*command)
    await pilot.pause(0.3)
    await pilot.press("enter")
    await pilot.pause(0.2)


async def test_load_a_preset_from_the_palette_and_from_the_dropdown():
    app, source = fake_app(["x"])
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await _palette(pilot, "Preset: Precise")
        assert app.params.temperature == 0.3 and app.params.top_k == 20
        assert app.query_one("#param-temperature").value == "0.3"
        app.query_one("#preset-select").value = "Greedy"  # as choosing it in the list does
        await pilot.pause(0.1)
        assert app.params.do_sample is False
        await send(pilot, "go")
        assert source.calls[0][1].do_sample is False


async def test_rename_and_delete_a_preset_from_the_palette():
    PresetStore().save("mine", PresetStore().get("Creative").params)
    app, _ = fake_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await _palette(pilot, "Rename preset: mine")
        dialog_input = app.screen.query_one("#dialog-input")
        dialog_input.value = "ours"
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert PresetStore().get("mine") is None
        assert PresetStore().get("ours").params == PresetStore().get("Creative").params
        assert "ours" in app.presets.names()
        await _palette(pilot, "Delete preset: ours")
        await pilot.press("y")
        await pilot.pause(0.1)
        assert PresetStore().get("ours") is None
        assert "ours" not in [str(v) for _, v in app.query_one("#preset-select")._options]


async def test_presets_file_can_be_moved_by_the_environment(tmp_path, monkeypatch):
    moved = tmp_path / "elsewhere" / "my-presets.toml"
    monkeypatch.setenv("CHATAPP_PRESETS_FILE", str(moved))
    app, _ = fake_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        app.preset_dialogs.save_as("moved", app.params.replace(top_k=3))
        await pilot.pause(0.05)
    assert moved.exists() and "moved" in moved.read_text()
    assert not (paths.config_dir() / "presets.toml").exists()
    assert PresetStore().get("moved").params.top_k == 3


# -- remembered settings and themes ---------------------------------------------------------
async def test_help_language_is_remembered_across_restarts():
    app, _ = fake_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.press("f4")
        await pilot.pause(0.05)
    app2, _ = fake_app()
    async with app2.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        assert app2.query_one(ParamPanel).lang == "zh"
        app2.query_one("#param-top_p").focus()
        await pilot.pause(0.05)
        assert "常用值如 0.9" in str(app2.query_one("#param-help").render())


async def test_a_user_theme_replaces_the_bundled_one_of_the_same_name():
    themes = paths.user_themes_dir()
    themes.mkdir(parents=True)
    (themes / "mine.toml").write_text(
        'name = "chatapp-dark"\ndark = true\nprimary = "#ff00ff"\nbackground = "#000000"\n'
    )
    app, _ = fake_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        assert app.theme == "chatapp-dark"
        assert app.current_theme.primary == "#ff00ff"
        assert app.current_theme.background == "#000000"


# -- preset files that are partly or wholly wrong --------------------------------------------
def _write_presets(content: bytes | str) -> None:
    path = paths.presets_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)


def test_one_bad_entry_is_skipped_and_named_and_the_others_load():
    _write_presets('[presets.good]\ntemperature = 0.5\n\n[presets.bad]\ntemperature = "hot"\n')
    store = PresetStore()
    assert store.get("good").params.temperature == 0.5
    assert store.get("bad") is None
    assert "bad: " in store.load_error and "temperature" in store.load_error


def test_a_builtin_name_in_the_file_is_skipped_and_said():
    _write_presets("[presets.Greedy]\ntemperature = 0.5\n")
    store = PresetStore()
    assert store.get("Greedy").builtin and store.get("Greedy").params.do_sample is False
    assert "Greedy: the name of a built-in preset" in store.load_error


@pytest.mark.parametrize(
    "content,reason",
    [
        ('presets = "not a table"\n', "'presets' is not a table"),
        (b"[presets.caf\xe9]\ntemperature = 0.5\n", "codec can't decode"),
    ],
    ids=["presets-not-a-table", "not-utf8"],
)
def test_an_unreadable_presets_file_is_reported_and_left_untouched(content, reason):
    _write_presets(content)
    before = paths.presets_file().read_bytes()
    store = PresetStore()
    assert reason in store.load_error and str(paths.presets_file()) in store.load_error
    assert [p.name for p in store.all()] == [p.name for p in store.all() if p.builtin]
    assert paths.presets_file().read_bytes() == before


def test_only_sampling_flags_or_a_preset_keep_a_continued_chat_from_its_own_values():
    assert not app_from_command_line("--continue")[0].params_given
    assert not app_from_command_line("--continue", "--theme", "chatapp-light")[0].params_given
    assert app_from_command_line("--continue", "--temperature", "0.75")[0].params_given
    assert app_from_command_line("--continue", "--top-k", "5")[0].params_given
