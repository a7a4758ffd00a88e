"""Chat-level commands, mixed into the app: new, open and export chats, copy, formats."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from chatapp import paths
from chatapp.tui.chat import ChatPane
from chatapp.tui.chats_screen import ChatsScreen
from chatapp.tui.lens import LensView
from chatapp.tui.panel import ParamPanel
from chatapp.tui.widgets import TextAreaPrompt, TextPrompt

if TYPE_CHECKING:  # pragma: no cover
    from chatapp.tui.app import ChatApp

    _Base = ChatApp
else:
    _Base = object

_CODE_BLOCK = re.compile(r"```[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


def last_code_block(text: str) -> str | None:
    """The body of the last fenced code block in ``text`` (an unclosed one counts)."""
    blocks = _CODE_BLOCK.findall(text)
    return blocks[-1].rstrip("\n") if blocks else None


class ChatActions(_Base):
    """New, open and export chats; copy replies; chat format and system prompt."""

    # -- chats ----------------------------------------------------------------------------
    async def action_new_chat(self) -> None:
        """Start a new chat; the one on screen stays in the history."""
        await self._stop_and_wait()
        self.session.new_chat()
        await self._show_session_chat()
        self._set_status("New chat")

    async def _stop_and_wait(self) -> None:
        if self.generating:
            self.action_stop_reply()
            await self.workers.wait_for_complete()

    async def _show_session_chat(self) -> None:
        self.lens_target = None
        self.query_one(LensView).display = False
        await self.query_one(ChatPane).show_chat(self.session.chat)
        if self.source is not None:
            self.source.reset()  # the KV cache is rebuilt from the next message's prompt
        replies = self.query_one(ChatPane).assistant_messages()
        if replies and replies[-1].version and replies[-1].version.stats is not None:
            self._show_context(replies[-1], replies[-1].version.stats)

    async def open_chat(self, chat_id: int, restore_params: bool = True) -> bool:
        """Show a stored chat; False (and a message) when there is none with that id.
        ``restore_params``: the panel takes the sampling values of the chat's last reply,
        so that the chat goes on as it was."""
        await self._stop_and_wait()
        if not self.session.open(chat_id):
            self.notify(f"No chat with id {chat_id} in {self.chats.path}", severity="error")
            return False
        await self._show_session_chat()
        chat = self.session.chat
        self._set_status(f"Opened chat {chat.id}: {chat.title} · {len(chat.turns)} turns")
        last = next((t.reply for t in reversed(chat.turns) if t.reply is not None), None)
        if restore_params and last is not None and last.params != self.params:
            self.query_one(ParamPanel).apply(last.params)
            self.notify("Parameters of the chat's last reply: " + last.params.summary(), timeout=10)
        return True

    def action_open_chats(self) -> None:
        async def chosen(chat_id: int | None) -> None:
            if chat_id is not None:
                await self.open_chat(chat_id)
            elif self.query_one(ChatPane).chat is not self.session.chat:
                await self._show_session_chat()  # the open chat was deleted

        self.push_screen(ChatsScreen(self.session), chosen)

    def export_chat(self, fmt: str = "md") -> Path:
        """Write the chat to the data folder as Markdown or JSON; returns its path."""
        chat = self.session.chat
        if fmt == "json":
            text = json.dumps(chat.to_json(), ensure_ascii=False, indent=2)
        else:
            text = chat.to_markdown()
        name = f"chat-{chat.id or 'new'}-{time.strftime('%Y%m%d-%H%M%S')}.{fmt}"
        path = paths.data_dir() / "exports" / name
        paths.atomic_write_text(path, text)
        self.notify(f"Chat exported to {path}")
        return path

    # -- copying (OSC 52: works over SSH) ------------------------------------------------
    def _shown_reply_text(self) -> str | None:
        replies = [r for r in self.query_one(ChatPane).assistant_messages() if r.text]
        if self.lens_target is not None and self.lens_target[0].text:
            return self.lens_target[0].text
        return replies[-1].text if replies else None

    def action_copy_reply(self) -> None:
        text = self._shown_reply_text()
        if not text:
            self.notify("No reply to copy yet.", severity="warning")
            return
        self.copy_to_clipboard(text)
        self.notify(f"Copied the reply ({len(text):,} characters) to the clipboard")

    def action_copy_code(self) -> None:
        text = self._shown_reply_text()
        code = last_code_block(text or "")
        if code is None:
            self.notify("The reply has no code block to copy.", severity="warning")
            return
        self.copy_to_clipboard(code)
        lines = code.count("\n") + 1
        self.notify(f"Copied the reply's last code block ({lines} lines) to the clipboard")

    # -- panel and language ----------------------------------------------------------------
    def action_toggle_panel(self) -> None:
        panel = self.query_one(ParamPanel)
        panel.display = not panel.display

    def action_toggle_language(self) -> None:
        lang = self.query_one(ParamPanel).toggle_language()
        self.settings.set("help_lang", lang)

    # -- prompt shape --------------------------------------------------------------------
    def set_chat_format(self, chat_format: str) -> None:
        """turns, dialogue or raw: how the conversation becomes the next prompt."""
        if self.source is None or self.generating:
            self.notify("Wait for the model (or the reply) first.", severity="warning")
            return
        self.source.chat_format = chat_format
        self.source.reset()
        self.notify(f"Chat format: {chat_format} (applies to the next reply)")

    def edit_preamble(self) -> None:
        """Edit the dialogue format's opening text and example exchanges."""
        if self.source is None:
            return

        def done(text: str | None) -> None:
            if text is not None:
                self.source.preamble = text if text.endswith("\n") or not text else text + "\n"
                self.notify("Dialogue preamble set (applies to the next reply)")

        self.push_screen(
            TextAreaPrompt("Dialogue preamble (Ctrl+S saves, Esc cancels):", self.source.preamble),
            done,
        )

    def edit_system_prompt(self) -> None:
        def done(text: str | None) -> None:
            if text is None:
                return
            self.session.set_system(text.strip())
            self.notify("System prompt set" if text.strip() else "System prompt cleared")

        self.push_screen(
            TextPrompt("System prompt (applies to the next reply):", value=self.system_prompt),
            done,
        )
