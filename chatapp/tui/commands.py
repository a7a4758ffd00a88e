"""Command palette entries: presets, themes, system prompt, clearing, export."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:  # pragma: no cover
    from chatapp.tui.app import ChatApp


class ChatCommands(Provider):
    """chatapp's own commands."""

    def _commands(self) -> Iterator[tuple[str, Callable[[], object], str]]:
        app: ChatApp = self.app  # type: ignore[assignment]
        for preset in app.store.all():
            yield (
                f"Preset: {preset.name}",
                partial(app.load_preset, preset.name),
                preset.params.summary(),
            )
        for preset in app.store.all():
            if not preset.builtin:
                yield (f"Rename preset: {preset.name}", partial(app.rename_preset, preset.name), "")
                yield (f"Delete preset: {preset.name}", partial(app.delete_preset, preset.name), "")
        yield ("Save preset…", app.action_save_preset, "Save the current parameters (Ctrl+S)")
        for name in sorted(app.available_themes):
            yield (f"Theme: {name}", partial(setattr, app, "theme", name), "")
        yield ("Set system prompt…", app.edit_system_prompt, "Instructions for the model")
        for fmt, text in (
            ("turns", "the model's chat turns"),
            ("dialogue", "plain User:/Assistant: lines (base models)"),
            ("raw", "one running text, no template (--raw)"),
        ):
            yield (f"Chat format: {fmt}", partial(app.set_chat_format, fmt), text)
        yield ("Edit dialogue preamble…", app.edit_preamble, "The dialogue format's examples")
        yield ("New chat", app.action_new_chat, "Ctrl+N: the current chat stays in the history")
        yield ("Chats…", app.action_open_chats, "Ctrl+O: open, search, rename or delete chats")
        yield ("Export chat to Markdown", app.export_chat, "Write the chat to a .md file")
        yield (
            "Export chat to JSON",
            partial(app.export_chat, "json"),
            "Every version with its parameters, seed, model and stats",
        )
        yield ("Copy reply", app.action_copy_reply, "F9: the shown reply, to the clipboard")
        yield (
            "Copy last code block",
            app.action_copy_code,
            "Shift+F9: the reply's last code block",
        )
        yield ("Toggle help language 中/EN", app.action_toggle_language, "F4")
        yield (
            "Toggle probability lens",
            app.action_toggle_lens,
            "F3: each step's next-token table",
        )
        yield ("Toggle heat map", app.action_toggle_heat, "F6: colour tokens by probability")
        yield ("Show previous reply version", partial(app.action_show_version, -1), "Alt+Left")
        yield ("Show next reply version", partial(app.action_show_version, 1), "Alt+Right")

    async def discover(self) -> Hits:
        for name, callback, help_text in self._commands():
            yield DiscoveryHit(name, callback, help=help_text or None)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, callback, help_text in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text or None)
