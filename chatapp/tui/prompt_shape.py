"""How the conversation becomes the next prompt: the chat format, the dialogue
preamble and the system prompt (palette commands)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.app import App

from chatapp.engine.protocol import Engine
from chatapp.tui.chat_pane import ChatPane
from chatapp.tui.widgets import TextAreaPrompt, TextPrompt


class PromptShapeDialogs:
    """The palette's prompt-shape commands for ``host``'s engine and focused pane."""

    def __init__(
        self, host: App[Any], engine: Callable[[], Engine | None], pane: Callable[[], ChatPane]
    ) -> None:
        self.host, self._engine, self._pane = host, engine, pane

    def set_chat_format(self, chat_format: str) -> None:
        """turns, dialogue or raw: how the conversation becomes the next prompt."""
        engine = self._engine()
        if engine is None or any(pane.streaming for pane in self.host.query(ChatPane)):
            self.host.notify("Wait for the model (or the reply) first.", severity="warning")
            return
        engine.chat_format = chat_format
        engine.reset()
        self.host.notify(f"Chat format: {chat_format} (applies to the next reply)")

    def edit_preamble(self) -> None:
        """Edit the dialogue format's opening text and example exchanges."""
        engine = self._engine()
        if engine is None:
            return

        def done(text: str | None) -> None:
            if text is not None:
                engine.preamble = text if text.endswith("\n") or not text else text + "\n"
                self.host.notify("Dialogue preamble set (applies to the next reply)")

        self.host.push_screen(
            TextAreaPrompt("Dialogue preamble (Ctrl+S saves, Esc cancels):", engine.preamble),
            done,
        )

    def edit_system_prompt(self) -> None:
        """Edit the focused chat's system prompt (it applies from the next reply)."""
        session = self._pane().session

        def done(text: str | None) -> None:
            if text is None:
                return
            session.set_system(text.strip())
            self.host.notify("System prompt set" if text.strip() else "System prompt cleared")

        self.host.push_screen(
            TextPrompt("System prompt (applies to the next reply):", value=session.chat.system),
            done,
        )
