"""Copying to the clipboard (OSC 52: works over SSH): any message of the chat, picked
with Alt+Up/Alt+Down, or a reply; the whole text or one of its code blocks."""

from __future__ import annotations

from collections.abc import Callable

from markdown_it import MarkdownIt
from textual.app import App
from textual.widget import Widget

from chatapp.tui.chat_log import AssistantMessage, UserMessage
from chatapp.tui.chat_pane import ChatPane
from chatapp.tui.lens_controller import LensController

_PARSER = MarkdownIt("commonmark")


def code_blocks(text: str) -> list[tuple[str, str]]:
    """Each code block of ``text`` as Markdown reads it: (its info string, its body).
    Fenced with ``` or ~~~ of any length (an unclosed one runs to the end), or indented."""
    return [
        (token.info.strip(), token.content.rstrip("\n"))
        for token in _PARSER.parse(text)
        if token.type in ("fence", "code_block")
    ]


def last_code_block(text: str) -> str | None:
    """The body of the last code block in ``text``."""
    blocks = code_blocks(text)
    return blocks[-1][1] if blocks else None


def _what(message: Widget) -> str:
    return "your message" if isinstance(message, UserMessage) else "the reply"


class CopyActions:
    """F9 copies the picked message (Alt+Up/Alt+Down), else the reply shown in the lens,
    else the focused pane's last reply; Shift+F9 its last code block, and the palette
    any of its code blocks."""

    def __init__(self, app: App[int], lens: LensController, pane: Callable[[], ChatPane]) -> None:
        self.app = app
        self.lens = lens
        self.pane = pane
        self.picked: Widget | None = None  # a UserMessage or AssistantMessage

    # -- picking a message ----------------------------------------------------------------
    def _messages(self) -> list[Widget]:
        return [
            w
            for w in self.pane().log.query(".message")
            if isinstance(w, UserMessage | AssistantMessage)
        ]

    def pick(self, delta: int) -> None:
        """Pick the message ``delta`` away from the picked one (from the end at first)."""
        messages = self._messages()
        if not messages:
            self.app.notify("No message to pick yet.", severity="warning")
            return
        current = self.picked if self.picked in messages else None
        if current is None:
            index = len(messages) - 1 if delta < 0 else 0
        else:
            index = max(0, min(len(messages) - 1, messages.index(current) + delta))
        if current is not None:
            current.remove_class("-picked")
        self.picked = messages[index]
        self.picked.add_class("-picked")
        self.picked.scroll_visible(animate=False)
        blocks = len(code_blocks(self._text_of(self.picked)))
        more = f" · {blocks} code block{'s' if blocks != 1 else ''}" if blocks else ""
        self.app.notify(f"Picked {_what(self.picked)}{more} · F9 copies it", timeout=2)

    @staticmethod
    def _text_of(message: Widget) -> str:
        return message.text if isinstance(message, UserMessage | AssistantMessage) else ""

    def _source(self) -> tuple[str, str] | None:
        """(what it is, its text): the picked message, the lens's reply, the last reply."""
        if self.picked is not None and self.picked.is_mounted and self._text_of(self.picked):
            return _what(self.picked), self._text_of(self.picked)
        target = self.lens.target
        if target is not None and target[0].text:
            return "the reply", target[0].text
        replies = [r for r in self.pane().log.assistant_messages() if r.text]
        return ("the reply", replies[-1].text) if replies else None

    def blocks(self) -> list[tuple[str, str]]:
        """The code blocks F9's message holds (for the palette)."""
        source = self._source()
        return code_blocks(source[1]) if source else []

    # -- copying --------------------------------------------------------------------------
    def copy_reply(self) -> None:
        source = self._source()
        if source is None:
            self.app.notify("No reply to copy yet.", severity="warning")
            return
        what, text = source
        self.app.copy_to_clipboard(text)
        self.app.notify(f"Copied {what} ({len(text):,} characters) to the clipboard")

    def copy_code(self, number: int = 0) -> None:
        """Code block ``number`` (from 1) of F9's message; 0: its last one."""
        source = self._source()
        blocks = code_blocks(source[1]) if source else []
        what = source[0] if source else "the reply"
        if not blocks:
            self.app.notify(f"{what.capitalize()} has no code block to copy.", severity="warning")
            return
        if not 0 <= number <= len(blocks):
            self.app.notify(
                f"{what.capitalize()} has {len(blocks)} code blocks.", severity="warning"
            )
            return
        code = blocks[number - 1][1]
        self.app.copy_to_clipboard(code)
        lines = code.count("\n") + 1
        which = "last code block" if number == 0 else f"code block {number}"
        size = f"{lines} line{'s' if lines != 1 else ''}"
        self.app.notify(f"Copied the {which} of {what} ({size}) to the clipboard")
