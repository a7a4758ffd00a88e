"""The chats screen (Ctrl+O): every saved chat, newest first; typing searches them all."""

from __future__ import annotations

import time

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from chatapp.conversation import ChatSession
from chatapp.store import ChatSummary
from chatapp.tui.widgets import Confirm, OrderedInput, TextPrompt


def _when(timestamp: float) -> str:
    age = time.time() - timestamp
    if age < 86_400:
        return time.strftime("%H:%M", time.localtime(timestamp))
    return time.strftime("%Y-%m-%d", time.localtime(timestamp))


class ChatsScreen(ModalScreen[int | None]):
    """Pick a chat to open (its id), search, rename or delete; Esc goes back."""

    BINDINGS = [
        Binding("escape", "dismiss_screen", "Back"),
        Binding("up", "move(-1)", "Up", show=False, priority=True),
        Binding("down", "move(1)", "Down", show=False, priority=True),
        Binding("enter", "open", "Open", priority=True),
        Binding("ctrl+r", "rename", "Rename", priority=True),
        Binding("ctrl+d", "delete", "Delete", priority=True),
    ]

    def __init__(self, session: ChatSession) -> None:
        super().__init__()
        self.session = session
        self.chats: list[ChatSummary] = []

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="chats"):
            yield Static("Chats · type to search · Enter opens · Ctrl+R renames · Ctrl+D deletes")
            yield OrderedInput(placeholder="Search every message…", id="chat-search")
            yield OptionList(id="chat-list")
            yield Static("", id="chat-count")

    def on_mount(self) -> None:
        self.refresh_list()
        self.query_one("#chat-search", Input).focus()

    @on(Input.Changed, "#chat-search")
    def _search(self) -> None:
        self.refresh_list()

    def refresh_list(self) -> None:
        query = self.query_one("#chat-search", Input).value
        self.chats = self.session.list_chats(query)
        options = []
        for chat in self.chats:
            line = Text(chat.title, style="bold")
            line.append(f"  {_when(chat.updated)} · {chat.messages} messages", style="dim")
            if chat.snippet:
                line.append("\n  " + chat.snippet, style="italic")
            options.append(Option(line, id=str(chat.id)))
        listing = self.query_one("#chat-list", OptionList)
        listing.set_options(options)
        if options:
            listing.highlighted = 0
        what = f"matching {query.strip()!r}" if query.strip() else "saved"
        count = f"{len(self.chats)} {'chat' if len(self.chats) == 1 else 'chats'} {what}"
        if self.session.store.problem:
            count += " · " + self.session.store.problem
        self.query_one("#chat-count", Static).update(count)

    def _selected(self) -> ChatSummary | None:
        index = self.query_one("#chat-list", OptionList).highlighted
        if index is None or not 0 <= index < len(self.chats):
            return None
        return self.chats[index]

    def action_move(self, delta: int) -> None:
        listing = self.query_one("#chat-list", OptionList)
        if self.chats:
            current = listing.highlighted or 0
            listing.highlighted = max(0, min(len(self.chats) - 1, current + delta))

    @on(OptionList.OptionSelected)
    def action_open(self) -> None:
        chat = self._selected()
        if chat is not None:
            self.dismiss(chat.id)

    def action_dismiss_screen(self) -> None:
        self.dismiss(None)

    def action_rename(self) -> None:
        chat = self._selected()
        if chat is None:
            return

        def named(title: str | None) -> None:
            if title and title.strip():
                self.session.rename(chat.id, title.strip())
                self.refresh_list()
                self.notify(f"Renamed to {title.strip()}")

        self.app.push_screen(TextPrompt("Rename chat to:", value=chat.title), named)

    def action_delete(self) -> None:
        chat = self._selected()
        if chat is None:
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self.session.delete(chat.id)
                self.refresh_list()
                self.notify(f"Deleted chat {chat.title}")

        self.app.push_screen(
            Confirm(f"Delete the chat {chat.title!r} and its {chat.messages} messages?"), answer
        )
