"""Attaching a file to the message: "Attach file…" asks for its path (completed as you
type), checks the file, writes ``@path`` into the message box and says how many tokens
it adds; Tab after ``@`` in the box completes a path (``PromptBox``). The file goes into
the message when it is sent (``chatapp.attachments.expand``, in the pane)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.app import App
from textual.suggester import Suggester
from textual.widgets import Input, TextArea

from chatapp.attachments import AttachmentError, complete_path, read_attachment
from chatapp.engine.types import Message
from chatapp.tui.widgets import TextPrompt


class PathSuggester(Suggester):
    """Suggests the rest of a path, as far as the files it could name agree."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        return complete_path(value) if value else None


def mention(path: str) -> str:
    return f'@"{path}"' if any(c.isspace() for c in path) else f"@{path}"


class AttachActions:
    """The palette's "Attach file…" and the token count of a file about to be sent."""

    def __init__(self, app: App[Any], pane: Callable[[], Any]) -> None:
        self.app = app
        self.pane = pane

    def ask(self, box: TextArea) -> None:
        prompt = TextPrompt("Attach a text file (its path; → takes the suggestion)")

        def chosen(path: str | None) -> None:
            box.focus()
            if not path or not path.strip():
                return
            try:
                read_attachment(path.strip())
            except AttachmentError as exc:
                self.app.notify(str(exc), title="Not attached", severity="error")
                return
            box.insert(mention(path.strip()) + " ")
            self.tell_tokens(path.strip())

        self.app.push_screen(prompt, chosen)
        prompt.call_after_refresh(self._suggest_paths, prompt)

    @staticmethod
    def _suggest_paths(prompt: TextPrompt) -> None:
        prompt.query_one("#dialog-input", Input).suggester = PathSuggester()

    def tell_tokens(self, path: str) -> None:
        """Say how many tokens the file adds to the message (or why it cannot go)."""
        try:
            attachment = read_attachment(path)
        except AttachmentError as exc:
            self.app.notify(str(exc), title="Not attached", severity="error")
            return
        engine = self.pane().engine
        if engine is None:
            return
        empty = len(engine.encode([Message("user", "")]))
        tokens = len(engine.encode([Message("user", attachment.block)])) - empty
        window = engine.context_window  # 0: a server that does not say
        holds = f" (the window holds {window:,})" if window else ""
        self.app.notify(
            f"{attachment.path.name}: {tokens:,} tokens{holds}; it goes into the message "
            "when you send it",
            title="Attached",
        )
