"""Files the user owns: presets and settings are edited in place, never lost."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from chatapp import paths
from chatapp.params import TUTORIAL_VALUES, SamplingParams
from chatapp.presets import PresetStore
from chatapp.settings import SettingsFile

ROOT = Path(__file__).resolve().parent.parent

SAVE_SCRIPT = """
import sys
from chatapp.params import SamplingParams
from chatapp.presets import PresetStore
store = PresetStore()          # both processes read the file before either saves
print("loaded", flush=True)
sys.stdin.readline()           # the test lets both go on at once
store.save(sys.argv[1], SamplingParams(temperature=float(sys.argv[2])))
print("saved", flush=True)
"""


def test_two_app_instances_each_saving_a_preset_keep_both(private_config):
    env = {**os.environ, "CHATAPP_CONFIG_DIR": str(private_config)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SAVE_SCRIPT, name, temp],
            env=env,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name, temp in (("First", "0.4"), ("Second", "1.4"))
    ]
    for proc in procs:
        assert proc.stdout.readline().strip() == "loaded"
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    store = PresetStore()
    assert store.get("First").params.temperature == 0.4
    assert store.get("Second").params.temperature == 1.4


def test_a_hand_edited_bad_entry_and_comments_survive_saving_another_preset(private_config):
    path = paths.presets_file()
    path.parent.mkdir(parents=True)
    path.write_text(
        "# my presets, tuned by hand\n"
        "[presets.Typo]\n"
        "temperature = 'hot'  # fix this later\n"
        "\n"
        "[presets.Good]\n"
        "temperature = 0.5\n",
        encoding="utf-8",
    )
    store = PresetStore()
    assert "Typo" in store.load_error and store.get("Typo") is None
    store.save("New", SamplingParams(temperature=0.9))
    store.rename("Good", "Better")
    text = path.read_text(encoding="utf-8")
    assert "# my presets, tuned by hand" in text
    assert "temperature = 'hot'  # fix this later" in text
    assert "[presets.Better]" in text and "[presets.Good]" not in text
    again = PresetStore()
    assert again.get("New").params.temperature == 0.9
    assert again.get("Better").params.temperature == 0.5
    assert "Typo" in again.load_error


def test_an_unreadable_settings_file_is_reported_and_kept_until_a_setting_changes(
    private_config,
):
    path = paths.settings_file()
    path.parent.mkdir(parents=True)
    path.write_text("theme = [unclosed\n", encoding="utf-8")
    settings = SettingsFile()
    assert str(path) in settings.load_error and settings.values.theme is None
    assert path.read_text(encoding="utf-8") == "theme = [unclosed\n"
    backup = settings.set("theme", "terminal-green")
    assert backup is not None and Path(backup).read_text() == "theme = [unclosed\n"
    assert SettingsFile().values.theme == "terminal-green"


def test_saving_a_setting_keeps_comments_and_other_keys(private_config):
    path = paths.settings_file()
    path.parent.mkdir(parents=True)
    path.write_text('# mine\nhelp_lang = "zh"  # Chinese help\nfuture_key = 3\n')
    SettingsFile().set("theme", "chatapp-light")
    text = path.read_text()
    assert '# mine\nhelp_lang = "zh"  # Chinese help\nfuture_key = 3\n' in text
    assert SettingsFile().values.theme == "chatapp-light"


def test_a_setting_of_the_wrong_type_is_reported_and_its_default_used(private_config):
    path = paths.settings_file()
    path.parent.mkdir(parents=True)
    path.write_text('theme = 5\nhelp_lang = "zh"\n', encoding="utf-8")
    settings = SettingsFile()
    assert settings.values.theme is None and settings.values.help_lang == "zh"
    assert str(path) in settings.load_error and "theme = 5" in settings.load_error
    assert path.read_text(encoding="utf-8") == 'theme = 5\nhelp_lang = "zh"\n'
    settings.set("theme", "chatapp-light")
    again = SettingsFile()
    assert again.load_error is None and again.values.theme == "chatapp-light"


def test_a_setting_that_does_not_exist_or_a_wrong_value_is_refused_before_writing(
    private_config,
):
    settings = SettingsFile()
    with pytest.raises(KeyError):
        settings.set("them", "chatapp-light")
    with pytest.raises(TypeError):
        settings.set("help_lang", 3)
    assert not paths.settings_file().exists() and settings.values.help_lang == "en"


def test_the_old_name_of_the_tutorial_preset_still_finds_it(private_config):
    store = PresetStore()
    assert "Tutorial" in store.names() and "Seed tutorial" not in store.names()
    assert store.get("Seed tutorial") is store.get("Tutorial")
    assert store.get("Tutorial").params == SamplingParams(**TUTORIAL_VALUES)


SAVE_LOOP = """
import sys
from chatapp.params import SamplingParams
from chatapp.presets import PresetStore
from chatapp.settings import SettingsFile
store, settings = PresetStore(), SettingsFile()
print("saving", flush=True)
i = 0
while True:
    store.save(f"Loop{i % 3}", SamplingParams(temperature=0.1 + (i % 10) / 10), overwrite=True)
    settings.set("theme", f"theme-{i}")
    i += 1
"""


def test_a_kill_mid_save_leaves_presets_and_settings_whole(private_config):
    import signal
    import time
    import tomllib

    paths.presets_file().parent.mkdir(parents=True)
    paths.presets_file().write_text("# mine\n[presets.Mine]\ntemperature = 0.5\n")
    paths.settings_file().write_text('help_lang = "zh"\n')
    env = {**os.environ, "CHATAPP_CONFIG_DIR": str(private_config)}
    for delay in [0.02 + 0.031 * k for k in range(20)]:  # kills land all through a save
        proc = subprocess.Popen(
            [sys.executable, "-c", SAVE_LOOP], env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout.readline().strip() == "saving"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        presets = tomllib.loads(paths.presets_file().read_text())
        assert presets["presets"]["Mine"] == {"temperature": 0.5}
        store = PresetStore()
        assert store.load_error is None and store.get("Mine").params.temperature == 0.5
        settings = SettingsFile()
        assert settings.load_error is None and settings.values.help_lang == "zh"


def test_list_settings_of_the_wrong_type_fall_back_and_are_named(private_config):
    """recent_models and servers are lists of text: anything else is named, its default
    used, and the file left as it is until a setting changes."""
    from chatapp import paths
    from chatapp.settings import SettingsFile

    path = paths.settings_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    text = 'servers = "http://one:8000/v1"\nrecent_models = [1, 2]\ntheme = "nord"\n'
    path.write_text(text, encoding="utf-8")
    settings = SettingsFile()
    assert settings.values.servers == [] and settings.values.recent_models == []
    assert settings.values.theme == "nord"
    assert "servers = 'http://one:8000/v1'" in settings.load_error
    assert "recent_models = [1, 2]" in settings.load_error
    assert path.read_text(encoding="utf-8") == text
    settings.set("recent_models", ["bundled"])
    assert SettingsFile().values.recent_models == ["bundled"]
    assert 'theme = "nord"' in path.read_text(encoding="utf-8")
