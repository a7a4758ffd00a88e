"""Copying a reply, or its last code block, to the clipboard (OSC 52: works over SSH)."""

from __future__ import annotations

import re
from collections.abc import Callable

from textual.app import App

from chatapp.tui.chat_pane import ChatPane
from chatapp.tui.lens_controller import LensController

_CODE_BLOCK = re.compile(r"```[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


def last_code_block(text: str) -> str | None:
    """The body of the last fenced code block in ``text`` (an unclosed one counts)."""
    blocks = _CODE_BLOCK.findall(text)
    return blocks[-1].rstrip("\n") if blocks else None


class CopyActions:
    """F9 and Shift+F9: the reply shown in the lens, else the focused pane's last one."""

    def __init__(self, app: App[int], lens: LensController, pane: Callable[[], ChatPane]) -> None:
        self.app = app
        self.lens = lens
        self.pane = pane

    def _shown_reply_text(self) -> str | None:
        target = self.lens.target
        if target is not None and target[0].text:
            return target[0].text
        replies = [r for r in self.pane().log.assistant_messages() if r.text]
        return replies[-1].text if replies else None

    def copy_reply(self) -> None:
        text = self._shown_reply_text()
        if not text:
            self.app.notify("No reply to copy yet.", severity="warning")
            return
        self.app.copy_to_clipboard(text)
        self.app.notify(f"Copied the reply ({len(text):,} characters) to the clipboard")

    def copy_code(self) -> None:
        code = last_code_block(self._shown_reply_text() or "")
        if code is None:
            self.app.notify("The reply has no code block to copy.", severity="warning")
            return
        self.app.copy_to_clipboard(code)
        lines = code.count("\n") + 1
        self.app.notify(f"Copied the reply's last code block ({lines} lines) to the clipboard")
