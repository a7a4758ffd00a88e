"""The chat pane: renders a ``Conversation``; replies stream into Markdown."""

from __future__ import annotations

from functools import lru_cache

from markdown_it import MarkdownIt
from rich.markdown import Markdown as RichMarkdown
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widget import Widget
from textual.widgets import Button, Markdown, Static

from chatapp.conversation import Conversation, ReplyVersion, Turn
from chatapp.engine.lens import StepRecord

SHOWN_AT_OPEN = 20  # turns mounted when a chat opens (more than a screenful); earlier on request


@lru_cache(maxsize=1)
def _markdown_parser() -> MarkdownIt:
    """One parser for every reply: Markdown.append would otherwise build one per flush."""
    return MarkdownIt("gfm-like")


class UserMessage(Vertical):
    """The user's message of one turn."""

    def __init__(self, turn: Turn, index: int) -> None:
        super().__init__(classes="message user-message")
        self.turn = turn
        self.turn_index = index

    @property
    def text(self) -> str:
        return self.turn.user

    def compose(self) -> ComposeResult:
        yield Static("You", classes="role")
        yield Static(self.turn.user, classes="body", markup=False)


TAIL_STEP = 6  # the tail grows this many lines at a time (each growth is a layout)


class StreamTail(Widget):
    """The end of a streaming reply not yet handed to its Markdown: the line being
    written, its inline Markdown (bold, code) drawn by Rich. A new piece only repaints this widget; the screen is laid
    out again only when its height (in wrapped lines) changes, so a flush does not cost
    a layout of everything on the screen."""

    DEFAULT_CSS = "StreamTail { height: 0; }"

    def __init__(self) -> None:
        super().__init__(classes="tail")
        self.text = ""
        self._lines = 0
        self._width = 0

    def render(self) -> RichMarkdown:
        return RichMarkdown(self.text)

    def show(self, text: str, settled: bool = False) -> None:
        """Draw ``text``. Its height only grows while text is added, a few lines at a time;
        it may shrink when ``settled`` (text just moved to the Markdown, which costs a
        layout anyway)."""
        self.text = text
        width = self.content_size.width
        lines = self._count_lines(text, width)
        height = -(-lines // TAIL_STEP) * TAIL_STEP
        if width != self._width or height > self._lines or (settled and height != self._lines):
            self._lines, self._width = height, width
            self.styles.height = height  # a layout, only when the height changes
        else:
            self.refresh()

    def _count_lines(self, text: str, width: int) -> int:
        if not text:
            return 0
        if width <= 0:
            return text.count("\n") + 1
        console = self.app.console
        return len(console.render_lines(RichMarkdown(text), console.options.update_width(width)))


class AssistantMessage(Vertical):
    """The reply of one turn: shows one of its versions, with its parameters and stats."""

    def __init__(self, turn: Turn, index: int) -> None:
        super().__init__(classes="message assistant-message")
        self.turn = turn
        self.turn_index = index

    def compose(self) -> ComposeResult:
        version = self.turn.reply
        yield Static("Model", classes="role")
        yield Markdown(
            version.text if version else "", classes="body", parser_factory=_markdown_parser
        )
        yield StreamTail()
        yield Static("", classes="heat")
        yield Static("", classes="meta")
        yield Static("", classes="context-note")

    def on_mount(self) -> None:
        self.query_one(".heat", Static).display = False
        self.query_one(".context-note", Static).display = False
        if self.turn.versions:
            self.show_meta()

    # -- the model's view -----------------------------------------------------------------
    @property
    def versions(self) -> list[ReplyVersion]:
        return self.turn.versions

    @property
    def shown(self) -> int:
        return self.turn.shown

    @property
    def version(self) -> ReplyVersion | None:
        """The version shown, or None before the first reply starts."""
        return self.turn.reply

    @property
    def lens_steps(self) -> list[StepRecord]:
        """The lens steps of the version shown (empty until recorded or recomputed)."""
        return self.version.lens_steps if self.version else []

    @property
    def text(self) -> str:
        return self.version.text if self.version else ""

    @property
    def markdown(self) -> Markdown:
        return self.query_one(Markdown)

    @property
    def tail(self) -> StreamTail:
        return self.query_one(StreamTail)

    @property
    def shown_text(self) -> str:
        """The text on screen: the Markdown's and, while streaming, the tail's."""
        return self.markdown.source + self.tail.text

    # -- drawing --------------------------------------------------------------------------
    def set_context_note(self, text: str) -> None:
        """What the context window forced for this reply (empty: nothing)."""
        note = self.query_one(".context-note", Static)
        note.update(text)
        note.display = bool(text)

    def show_heat(self, on: bool) -> None:
        """Colour each token by the probability it was drawn with (needs lens data)."""
        from chatapp.tui.lens import heat_markup

        version = self.version
        steps = version.lens_steps if version and version.lens_complete else []
        heat = self.query_one(".heat", Static)
        active = on and bool(steps)
        if active:
            heat.update(heat_markup(steps, self.turn_index))
        heat.display = active
        self.markdown.display = not active

    def start_streaming(self) -> None:
        """The version just started (the model's newest) streams in from empty."""
        self.markdown.update("")
        self.query_one(".meta", Static).update(f"{self.version.params.summary()} · generating…")
        self.add_class("-streaming")

    def show_meta(self) -> None:
        version = self.version
        if version is None:
            return
        meta = version.meta()
        if len(self.versions) > 1:
            meta = f"v{self.shown + 1}/{len(self.versions)} · " + meta
        self.query_one(".meta", Static).update(meta)
        self.remove_class("-streaming")
        self.set_class(version.status in ("stopped", "interrupted"), "-stopped")

    async def redraw(self) -> None:
        """Show the version the turn now points at."""
        await self.markdown.update(self.text)
        self.show_meta()


class ChatPane(VerticalScroll):
    """The scrolling list of messages; a long chat mounts its newest turns first."""

    def __init__(self) -> None:
        super().__init__(id="chat")
        self.chat: Conversation | None = None
        self.first_mounted = 0  # index of the first turn on screen

    def compose(self) -> ComposeResult:
        yield Static(
            "Type a message below and press Enter. Esc stops a reply; F2 hides the "
            "parameter panel; Ctrl+O lists your chats; Ctrl+P opens the command palette.",
            id="welcome",
        )

    async def show_chat(self, chat: Conversation) -> None:
        """Replace what is shown with ``chat`` (its last turns; earlier ones on request)."""
        self.chat = chat
        await self.query(".message, #earlier").remove()
        self.first_mounted = max(0, len(chat.turns) - SHOWN_AT_OPEN)
        widgets = []
        for index in range(self.first_mounted, len(chat.turns)):
            widgets += self._widgets(chat.turns[index], index)
        if self.first_mounted:
            widgets.insert(0, self._earlier_button())
        if widgets:
            await self.mount_all(widgets)
        self.scroll_end(animate=False)

    def _earlier_button(self) -> Button:
        count = self.first_mounted
        return Button(
            f"Show {min(count, SHOWN_AT_OPEN)} earlier turns ({count} not shown)", id="earlier"
        )

    @staticmethod
    def _widgets(turn: Turn, index: int) -> list[Vertical]:
        widgets: list[Vertical] = [UserMessage(turn, index)]
        if turn.versions:
            widgets.append(AssistantMessage(turn, index))
        return widgets

    async def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id != "earlier" or self.chat is None:
            return
        event.stop()
        start = max(0, self.first_mounted - SHOWN_AT_OPEN)
        widgets = []
        for index in range(start, self.first_mounted):
            widgets += self._widgets(self.chat.turns[index], index)
        self.first_mounted = start
        await event.button.remove()
        if start:
            widgets.insert(0, self._earlier_button())
        await self.mount_all(widgets, after=self.query_one("#welcome"))

    async def add_turn(self, turn: Turn, index: int) -> AssistantMessage:
        """Mount a new turn (the user's message and its reply, about to stream)."""
        reply = AssistantMessage(turn, index)
        await self.mount_all([UserMessage(turn, index), reply])
        return reply

    def assistant_messages(self) -> list[AssistantMessage]:
        return list(self.query(AssistantMessage))

    def reply_for(self, turn_index: int) -> AssistantMessage | None:
        for reply in self.query(AssistantMessage):
            if reply.turn_index == turn_index:
                return reply
        return None
