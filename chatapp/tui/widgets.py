"""Small widgets and dialogs: the prompt box, the loading view, text and confirm dialogs."""

from __future__ import annotations

import re

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, ProgressBar, Static, TextArea

from chatapp.attachments import complete_path
from chatapp.tui.textual_internals import KeysFirst, run_own_binding


class OrderedInput(KeysFirst, Input):
    """Textual's Input with its bound keys applied in order with the characters typed
    (``run_own_binding``): every one-line field of the app is one."""

    async def key_first(self, event: events.Key) -> bool:
        return await run_own_binding(self, event)


class OrderedTextArea(KeysFirst, TextArea):
    """Textual's TextArea with its bound keys applied in order (``run_own_binding``)."""

    async def key_first(self, event: events.Key) -> bool:
        return await run_own_binding(self, event)


class PromptBox(OrderedTextArea):
    """The message box: Enter sends, Shift+Enter or Ctrl+J inserts a newline."""

    class Submitted(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class PathCompleted(Message):
        """Tab completed an ``@path`` in the box to a file."""

        def __init__(self, path: str) -> None:
            super().__init__()
            self.path = path

    def __init__(self) -> None:
        super().__init__(id="prompt", soft_wrap=True, show_line_numbers=False, compact=True)
        self.placeholder = "Message (Enter to send, Shift+Enter for a new line)"

    async def key_first(self, event: events.Key) -> bool:
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            text = self.text.strip()
            if text:
                self.post_message(self.Submitted(text))
            return True
        if event.key == "tab" and self._complete_mention():
            event.stop()
            event.prevent_default()
            return True
        if event.key in ("shift+enter", "ctrl+j"):
            event.stop()
            event.prevent_default()
            if not self.read_only:
                start, end = self.selection
                self.replace("\n", start, end, maintain_selection_offset=False)
            return True
        return await super().key_first(event)

    def _complete_mention(self) -> bool:
        """Tab right after ``@partial``: the path completed as far as it can be (a file:
        ``PathCompleted``). False where the word before the cursor is not a mention."""
        row, column = self.cursor_location
        before = self.document.get_line(row)[:column]
        found = re.search(r"(?:^|\s)@(\S*)$", before)
        if found is None:
            return False
        partial = found.group(1)
        completed = complete_path(partial)
        if completed is None:
            self.app.bell()
            return True
        self.insert(completed[len(partial) :])
        if not completed.endswith("/"):
            self.post_message(self.PathCompleted(completed))
        return True


class LoadingView(Vertical):
    """What the model loader is doing, with progress."""

    def compose(self) -> ComposeResult:
        yield Static("Starting…", id="loading-text")
        yield ProgressBar(total=100, show_eta=False, id="loading-bar")

    def set_stage(self, text: str, fraction: float | None) -> None:
        self.query_one("#loading-text", Static).update(text)
        bar = self.query_one(ProgressBar)
        if fraction is None:
            bar.update(total=None)
        else:
            bar.update(total=100, progress=round(fraction * 100))

    def set_error(self, text: str) -> None:
        self.add_class("-error")
        self.query_one("#loading-text", Static).update(text)
        self.query_one(ProgressBar).display = False


class TextPrompt(ModalScreen[str | None]):
    """Ask for one line of text (a preset name, a system prompt)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, value: str = "", placeholder: str = "") -> None:
        super().__init__()
        self._title = title
        self._value = value
        self._placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self._title)
            yield OrderedInput(value=self._value, placeholder=self._placeholder, id="dialog-input")
            yield Static("", id="dialog-error")
            with Horizontal(classes="buttons"):
                yield Button("OK", variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def on_input_submitted(self) -> None:
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self._submit()
        else:
            self.dismiss(None)

    def _submit(self) -> None:
        self.dismiss(self.query_one("#dialog-input", Input).value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class TextAreaPrompt(ModalScreen[str | None]):
    """Edit several lines of text (the dialogue preamble)."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Save", priority=True),
    ]

    def __init__(self, title: str, value: str = "") -> None:
        super().__init__()
        self._title = title
        self._value = value

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label(self._title)
            yield OrderedTextArea(self._value, id="dialog-text", soft_wrap=True)

    def action_save(self) -> None:
        self.dismiss(self.query_one("#dialog-text", TextArea).text)

    def action_cancel(self) -> None:
        self.dismiss(None)


class Confirm(ModalScreen[bool]):
    """Yes/no question."""

    BINDINGS = [
        Binding("escape", "answer(False)", "No"),
        Binding("y", "answer(True)", "Yes"),
        Binding("n", "answer(False)", "No"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self._question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self._question)
            with Horizontal(classes="buttons"):
                yield Button("Yes (y)", variant="warning", id="yes")
                yield Button("No (n)", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)
