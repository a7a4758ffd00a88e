"""The chat pane: user and assistant messages; replies stream into Markdown."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from markdown_it import MarkdownIt
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Markdown, Static

from chatapp.engine.chat_format import Message
from chatapp.engine.lens import StepRecord
from chatapp.engine.local import ReplyStats
from chatapp.params import SamplingParams


@dataclass
class ReplyVersion:
    """One generated version of an assistant reply and what produced it."""

    text: str
    params: SamplingParams
    stats: ReplyStats | None = None
    error: str | None = None
    lens_steps: list[StepRecord] = field(default_factory=list)  # when the lens recorded
    lens_complete: bool = False  # every token has its step (needed for the heat map)
    messages: list[Message] = field(default_factory=list)  # the prompt it answered

    def meta(self) -> str:
        parts = [self.params.summary()]
        if self.stats is not None:
            parts.append(
                f"{self.stats.tokens_per_second:.1f} tok/s · first token "
                f"{self.stats.time_to_first_token:.2f} s · {self.stats.new_tokens} tokens"
            )
            if self.stats.finish_reason == "stopped":
                parts.append("stopped")
            elif self.stats.finish_reason == "length":
                parts.append("hit max_new_tokens")
        if self.error:
            parts.append(f"error: {self.error}")
        return " · ".join(parts)


@lru_cache(maxsize=1)
def _markdown_parser() -> MarkdownIt:
    """One parser for every reply: Markdown.append would otherwise build one per flush."""
    return MarkdownIt("gfm-like")


class UserMessage(Vertical):
    def __init__(self, text: str) -> None:
        super().__init__(classes="message user-message")
        self.text = text

    def compose(self) -> ComposeResult:
        yield Static("You", classes="role")
        yield Static(self.text, classes="body", markup=False)


class AssistantMessage(Vertical):
    """A reply; keeps every regenerated version, one shown at a time."""

    def __init__(self) -> None:
        super().__init__(classes="message assistant-message")
        self.versions: list[ReplyVersion] = []
        self.shown = -1

    def compose(self) -> ComposeResult:
        yield Static("Model", classes="role")
        yield Markdown("", classes="body", parser_factory=_markdown_parser)
        yield Static("", classes="heat")
        yield Static("", classes="meta")
        yield Static("", classes="context-note")

    def on_mount(self) -> None:
        self.query_one(".heat", Static).display = False
        self.query_one(".context-note", Static).display = False

    def set_context_note(self, text: str) -> None:
        """What the context window forced for this reply (empty: nothing)."""
        note = self.query_one(".context-note", Static)
        note.update(text)
        note.display = bool(text)

    def show_heat(self, on: bool, reply_index: int) -> None:
        """Colour each token by the probability it was drawn with (needs lens data)."""
        from chatapp.tui.lens import heat_markup

        version = self.version
        steps = version.lens_steps if version and version.lens_complete else []
        heat = self.query_one(".heat", Static)
        active = on and bool(steps)
        if active:
            heat.update(heat_markup(steps, reply_index))
        heat.display = active
        self.markdown.display = not active

    @property
    def markdown(self) -> Markdown:
        return self.query_one(Markdown)

    @property
    def version(self) -> ReplyVersion | None:
        """The version shown, or None before the first reply starts."""
        return self.versions[self.shown] if self.versions else None

    @property
    def lens_steps(self) -> list[StepRecord]:
        """The lens steps recorded for the version shown (empty when none were)."""
        return self.version.lens_steps if self.version else []

    @property
    def text(self) -> str:
        return self.version.text if self.version else ""

    def start_version(self, params: SamplingParams) -> None:
        self.versions.append(ReplyVersion("", params))
        self.shown = len(self.versions) - 1
        self.markdown.update("")
        self.query_one(".meta", Static).update(f"{params.summary()} · generating…")
        self.add_class("-streaming")

    def finish_version(self, text: str, stats: ReplyStats | None, error: str | None = None) -> None:
        version = self.versions[self.shown]  # started by start_version
        version.text = text
        version.stats = stats
        version.error = error
        self.remove_class("-streaming")
        self.set_class(stats is not None and stats.finish_reason == "stopped", "-stopped")
        self._show_meta()

    def _show_meta(self) -> None:
        meta = self.versions[self.shown].meta()
        if len(self.versions) > 1:
            meta = f"v{self.shown + 1}/{len(self.versions)} · " + meta
        self.query_one(".meta", Static).update(meta)

    async def show_version(self, index: int) -> None:
        if not self.versions:
            return
        self.shown = max(0, min(index, len(self.versions) - 1))
        await self.markdown.update(self.versions[self.shown].text)
        stats = self.versions[self.shown].stats
        self.set_class(stats is not None and stats.finish_reason == "stopped", "-stopped")
        self._show_meta()


class ChatPane(VerticalScroll):
    """The scrolling list of messages."""

    def __init__(self) -> None:
        super().__init__(id="chat")

    def compose(self) -> ComposeResult:
        yield Static(
            "Type a message below and press Enter. Esc stops a reply; F2 hides the "
            "parameter panel; Ctrl+P opens the command palette.",
            id="welcome",
        )

    def assistant_messages(self) -> list[AssistantMessage]:
        return list(self.query(AssistantMessage))
