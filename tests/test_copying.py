"""Copy anything: code blocks found as Markdown finds them, any message picked by keys,
and code block N of it through the palette (fake engine)."""

from __future__ import annotations

import pytest

from chatapp.tui.copying import code_blocks, last_code_block
from tests.test_history_tui import notifications
from tests.tui_helpers import fake_app, ready, send

REPLY = (
    "Two ways:\n\n"
    "~~~sh\nls -l\n~~~\n\n"
    "````markdown\nA fence inside:\n```py\nx = 1\n```\n````\n\n"
    "    indented = True\n\n"
    "and ```inline``` is not a block.\n"
)


@pytest.mark.parametrize(
    "text,expected",
    [
        (
            REPLY,
            [
                ("sh", "ls -l"),
                ("markdown", "A fence inside:\n```py\nx = 1\n```"),
                ("", "indented = True"),
            ],
        ),
        ("```python\nprint('hi')\n```", [("python", "print('hi')")]),
        ("Unclosed:\n```\nstill = 'going'\n", [("", "still = 'going'")]),
        ("- a list\n\n  ```js\n  f()\n  ```\n", [("js", "f()")]),
        ("No code here, only `inline`.", []),
    ],
    ids=["tilde-long-indented", "backticks", "unclosed", "in-a-list", "none"],
)
def test_code_blocks_are_found_as_markdown_reads_them(text, expected):
    assert code_blocks(text) == expected
    assert last_code_block(text) == (expected[-1][1] if expected else None)


async def test_pick_any_message_and_copy_it_or_its_code_block_n():
    app, _ = fake_app([REPLY])
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await send(pilot, "How do I list files?")
        await send(pilot, "And in Python?")
        await pilot.press("f9")  # nothing picked: the last reply
        assert app.clipboard == REPLY
        await pilot.press("alt+up")  # the last message: the second reply
        await pilot.press("alt+up")  # the user's second message
        picked = app.copying.picked
        assert picked.has_class("-picked") and picked.text == "And in Python?"
        await pilot.press("f9")
        assert app.clipboard == "And in Python?"
        assert any("Copied your message" in n for n in notifications(app))
        await pilot.press("shift+f9")  # a message of the user's has no code block
        assert app.clipboard == "And in Python?"
        await pilot.press("alt+up")  # the first reply
        assert not picked.has_class("-picked") and app.copying.picked.has_class("-picked")
        await pilot.press("shift+f9")
        assert app.clipboard == "indented = True"
        app.action_copy_code(2)  # as the palette's "Copy code block 2 (markdown)" does
        assert app.clipboard == "A fence inside:\n```py\nx = 1\n```"
        app.action_copy_code(4)
        await pilot.pause()
        assert app.clipboard == "A fence inside:\n```py\nx = 1\n```"
        assert any("has 3 code blocks" in n for n in notifications(app))
        for _ in range(5):
            await pilot.press("alt+up")  # stops at the first message
        assert app.copying.picked.text == "How do I list files?"


async def test_the_palette_lists_the_picked_messages_code_blocks():
    from chatapp.tui.commands import ChatCommands

    app, _ = fake_app([REPLY])
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await send(pilot, "How do I list files?")
        names = [name for name, _, _ in ChatCommands(app.screen)._commands()]
        assert "Copy code block 1 (sh)" in names and "Copy code block 3" in names
        assert "Copy code block 2 (markdown)" in names
