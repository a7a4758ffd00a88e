"""Attached files: ``@path`` in a message, "Attach file…" and Tab completion in the
message box; refusals (binary, unreadable, too big, too long for the window) keep the
box's text and send nothing; the attached text is saved with the message."""

from __future__ import annotations

import os

import pytest

from chatapp.attachments import AttachmentError, complete_path, expand, mentions, read_attachment
from chatapp.conversation import ChatSession
from chatapp.store import ChatStore
from chatapp.tui.textual_internals import notifications
from tests.tui_helpers import fake_app, ready, send, wait_for


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.md").write_text("# Notes\n\nUse ```code``` here.\n", encoding="utf-8")
    (tmp_path / "main.py").write_text("print('你好')\n", encoding="utf-8")
    (tmp_path / "blob.bin").write_bytes(b"\x89PNG\0\0\x01")
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "module_one.py").write_text("x = 1\n", encoding="utf-8")
    (tmp_path / "src" / "module_two.py").write_text("y = 2\n", encoding="utf-8")
    (tmp_path / "my notes.txt").write_text("spaced\n", encoding="utf-8")
    return tmp_path


def test_expand_puts_each_file_in_a_fenced_block_named_after_it(files):
    text, attached = expand("Explain @main.py and @notes.md, ask @someone, see @src")
    assert [a.path.name for a in attached] == ["main.py", "notes.md"]
    assert text == (
        "Explain main.py and notes.md, ask @someone, see @src\n\n"
        "main.py:\n```python\nprint('你好')\n```\n\n"
        "notes.md:\n````markdown\n# Notes\n\nUse ```code``` here.\n````"
    )
    assert expand("No files here, mail me@example.com") == (
        "No files here, mail me@example.com",
        [],
    )
    assert mentions('a @"my notes.txt" b @x') == ["my notes.txt", "x"]
    assert expand('Read @"my notes.txt"')[0].endswith("my notes.txt:\n```\nspaced\n```")


@pytest.mark.parametrize(
    "name,said",
    [("blob.bin", "binary"), ("latin1.txt", "not UTF-8"), ("missing.txt", "no such file")],
)
def test_a_file_that_cannot_be_attached_says_why(files, name, said):
    with pytest.raises(AttachmentError, match=said):
        read_attachment(name)
    if name != "missing.txt":  # a mention of a missing file is left as written
        with pytest.raises(AttachmentError, match=said):
            expand(f"Look at @{name}")


def test_a_file_too_big_or_unreadable_is_refused(files, monkeypatch):
    from chatapp import attachments

    monkeypatch.setattr(attachments, "MAX_BYTES", 10)
    with pytest.raises(AttachmentError, match="too big"):
        read_attachment("notes.md")
    if os.geteuid() != 0:  # root reads anything
        (files / "main.py").chmod(0)
        with pytest.raises(AttachmentError, match="cannot be read"):
            read_attachment("main.py")


def test_paths_complete_as_far_as_the_files_agree(files):
    assert complete_path("ma") == "main.py"
    assert complete_path("sr") == "src/"
    assert complete_path("src/mod") == "src/module_"
    assert complete_path("src/module_") is None  # two files: nothing more to add
    assert complete_path("zzz") is None
    assert complete_path(f"{files}/src/module_o") == f"{files}/src/module_one.py"  # absolute
    assert complete_path("/tm") == "/tmp/"  # a folder at the root


async def test_an_attached_file_is_sent_and_saved_with_the_message(files):
    app, source = fake_app(["Done."])
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        box = app.query_one("#prompt")
        box.insert("Explain @ma")
        await pilot.press("tab")  # completes the path, says its tokens
        assert box.text == "Explain @main.py"
        await wait_for(pilot, lambda: any("main.py:" in n for n in notifications(app)))
        assert any("tokens" in n for n in notifications(app))
        await send(pilot, "")  # Enter: the box's text
        sent = source.calls[-1][0][-1].content
        assert sent == "Explain main.py\n\nmain.py:\n```python\nprint('你好')\n```"
        chat_id = app.pane.session.chat.id
    saved = ChatSession(ChatStore())
    assert saved.open(chat_id) and saved.chat.turns[0].user == sent


async def test_a_refused_file_sends_nothing_and_the_box_keeps_its_text(files):
    app, source = fake_app(["Done."])
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        box = app.query_one("#prompt")
        box.insert("What is in @blob.bin")
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert source.calls == [] and box.text == "What is in @blob.bin"
        assert any("binary" in n and "Nothing was sent" in n for n in notifications(app))


async def test_a_file_too_long_for_the_window_is_refused(files):
    (files / "long.txt").write_text("word " * 6000, encoding="utf-8")
    app, source = fake_app(["Done."])  # the fake engine's window: 4,096 tokens
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        box = app.query_one("#prompt")
        box.insert("Summarise @long.txt")
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert source.calls == [] and box.text == "Summarise @long.txt"
        assert any(
            "context window" in n.lower() or "too long" in n.lower() for n in notifications(app)
        )


async def test_attach_file_from_the_palette_writes_the_mention(files):
    from textual.widgets import Input

    app, source = fake_app(["Done."])
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        app.action_attach_file()
        await wait_for(pilot, lambda: bool(app.screen.query("#dialog-input")))
        field = app.screen.query_one("#dialog-input", Input)
        field.value = "my notes.txt"
        await pilot.press("enter")
        box = app.query_one("#prompt")
        await wait_for(pilot, lambda: box.text == '@"my notes.txt" ')
        app.action_attach_file()
        await wait_for(pilot, lambda: bool(app.screen.query("#dialog-input")))
        app.screen.query_one("#dialog-input", Input).value = "blob.bin"
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert box.text == '@"my notes.txt" '  # refused: nothing written
        assert any("binary" in n for n in notifications(app))
