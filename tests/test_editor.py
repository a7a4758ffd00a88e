"""Ctrl+G: the message written in $VISUAL or $EDITOR. Headless (the app cannot hand the
terminal over, so the editor runs without it), and on a pseudo-terminal, where the app
steps aside for the editor and comes back with its text."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from chatapp.tui.textual_internals import notifications
from tests.tui_helpers import fake_app, ready, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from bench_common import LEAVE_ALT_SCREEN, PtyChild, wait_for_output  # noqa: E402

# An "editor": adds a line to the file it is given (or fails with status 3).
EDITOR = """
import sys
path = sys.argv[-1]
text = open(path, encoding="utf-8").read()
if "fail" in text:
    sys.exit(3)
open(path, "w", encoding="utf-8").write(text + "\\n第二行 from the editor\\n")
"""


@pytest.fixture
def editor(tmp_path, monkeypatch):
    script = tmp_path / "editor.py"
    script.write_text(EDITOR, encoding="utf-8")
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", f"{sys.executable} {script}")
    return script


async def test_ctrl_g_puts_the_editors_text_back_in_the_box(editor):
    app, source = fake_app(["Fine."])
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        box = app.query_one("#prompt")
        box.insert("First line")
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: "from the editor" in box.text)
        assert box.text == "First line\n第二行 from the editor"
        assert box.cursor_location == box.document.end and app.focused is box
        done = app.replies_done
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.replies_done > done)
        assert source.calls[-1][0][-1].content == "First line\n第二行 from the editor"


async def test_no_editor_or_a_failing_one_leaves_the_box_as_it_was(editor, monkeypatch):
    app, source = fake_app(["Fine."])
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        box = app.query_one("#prompt")
        box.insert("please fail")
        await pilot.press("ctrl+g")
        await pilot.pause(0.2)
        assert box.text == "please fail"
        assert any("exited with status 3" in n for n in notifications(app))
        monkeypatch.delenv("EDITOR")
        await pilot.press("ctrl+g")
        await pilot.pause(0.1)
        assert box.text == "please fail"
        assert any("Set $VISUAL or $EDITOR" in n for n in notifications(app))
        assert source.calls == []


def test_the_app_hands_the_terminal_to_the_editor_and_takes_it_back(editor, tmp_path):
    """The real terminal driver (a pseudo-terminal): the app leaves its screen for the
    editor (App.suspend) and, once it exits, draws the box with the editor's text."""
    fake = os.path.join(os.path.dirname(__file__), "fake_chatapp.py")
    env = {
        **os.environ,
        "CHATAPP_CONFIG_DIR": str(tmp_path / "config"),
        "CHATAPP_DATA_DIR": str(tmp_path / "data"),
    }
    child = PtyChild([sys.executable, fake], env, rows=24, cols=80)
    try:
        wait_for_output(child, b"Ready", 30)
        child.write(b"Draft")
        time.sleep(0.3)
        start = len(child.buffer)
        child.write(b"\x07")  # Ctrl+G
        wait_for_output(child, b"from the editor", 15)
        after = bytes(child.buffer[start:])
        assert LEAVE_ALT_SCREEN in after  # the terminal was the editor's meanwhile
        assert after.rindex(b"\x1b[?1049h") > after.index(LEAVE_ALT_SCREEN)  # and back
        assert child.proc.poll() is None
    finally:
        child.proc.kill()
        child.proc.wait()
