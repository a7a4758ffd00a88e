"""Command palette entries: presets, themes, system prompt, clearing, export."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, Protocol

from textual.command import DiscoveryHit, Hit, Hits, Provider

from chatapp.tui.chat_log import toggle_thinking
from chatapp.tui.copying import CopyActions
from chatapp.tui.preset_dialogs import PresetDialogs
from chatapp.tui.prompt_shape import PromptShapeDialogs


class CommandTarget(Protocol):
    """What the palette's commands call: the app (named here, not imported, so that the
    app and its command provider do not import each other)."""

    preset_dialogs: PresetDialogs
    copying: CopyActions
    prompt_shape: PromptShapeDialogs
    available_themes: dict[str, Any]

    def action_save_preset(self) -> None: ...
    async def action_new_chat(self) -> None: ...
    def action_open_chats(self) -> None: ...
    def export_chat(self, fmt: str = "md") -> object: ...
    def action_copy_reply(self) -> None: ...
    def action_copy_code(self, number: int = 0) -> None: ...
    def action_toggle_language(self) -> None: ...
    def action_toggle_lens(self) -> None: ...
    def action_toggle_heat(self) -> None: ...
    async def action_show_version(self, step: int) -> None: ...
    async def action_compare(self, what: str) -> None: ...
    def action_sweep(self) -> None: ...
    def action_edit_in_editor(self) -> None: ...
    def action_attach_file(self) -> None: ...
    def action_switch_model(self) -> None: ...


class ChatCommands(Provider):
    """chatapp's own commands."""

    def _commands(self) -> Iterator[tuple[str, Callable[[], object], str]]:
        app: CommandTarget = self.app  # type: ignore[assignment]
        dialogs = app.preset_dialogs
        for preset in dialogs.presets.all():
            yield (
                f"Preset: {preset.name}",
                partial(dialogs.load, preset.name),
                preset.params.summary(),
            )
        for preset in dialogs.presets.all():
            if not preset.builtin:
                yield (f"Rename preset: {preset.name}", partial(dialogs.rename, preset.name), "")
                yield (f"Delete preset: {preset.name}", partial(dialogs.delete, preset.name), "")
        yield ("Save preset…", app.action_save_preset, "Save the current parameters (Ctrl+S)")
        for name in sorted(app.available_themes):
            yield (f"Theme: {name}", partial(setattr, app, "theme", name), "")
        yield (
            "Set system prompt…",
            app.prompt_shape.edit_system_prompt,
            "Instructions for the model",
        )
        for fmt, text in (
            ("turns", "the model's chat turns"),
            ("dialogue", "plain User:/Assistant: lines (base models)"),
            ("raw", "one running text, no template (--raw)"),
        ):
            yield (f"Chat format: {fmt}", partial(app.prompt_shape.set_chat_format, fmt), text)
        yield (
            "Edit dialogue preamble…",
            app.prompt_shape.edit_preamble,
            "The dialogue format's examples",
        )
        yield ("New chat", app.action_new_chat, "Ctrl+N: the current chat stays in the history")
        yield ("Chats…", app.action_open_chats, "Ctrl+O: open, search, rename or delete chats")
        yield ("Export chat to Markdown", app.export_chat, "Write the chat to a .md file")
        yield (
            "Export chat to JSON",
            partial(app.export_chat, "json"),
            "Every version with its parameters, seed, model and stats",
        )
        yield (
            "Copy message",
            app.action_copy_reply,
            "F9: the message picked with Alt+Up/Down, else the shown reply",
        )
        yield (
            "Copy last code block",
            app.action_copy_code,
            "Shift+F9: the last code block of F9's message",
        )
        for number, (info, body) in enumerate(app.copying.blocks(), start=1):
            first = body.strip().splitlines()[0][:40] if body.strip() else "(empty)"
            yield (
                f"Copy code block {number}" + (f" ({info})" if info else ""),
                partial(app.action_copy_code, number),
                first,
            )
        yield ("Toggle help language 中/EN", app.action_toggle_language, "F4")
        yield (
            "Toggle probability lens",
            app.action_toggle_lens,
            "F3: each step's next-token table",
        )
        yield ("Toggle heat map", app.action_toggle_heat, "F6: colour tokens by probability")
        yield (
            "Toggle thinking",
            partial(toggle_thinking, app),
            "hide or show reasoning models' thinking in every reply",
        )
        yield (
            "Compare…",
            partial(app.action_compare, "add"),
            "F5: another column of replies side by side, with its own values (2 to 4)",
        )
        yield ("Compare: close this column", partial(app.action_compare, "close"), "Shift+F5")
        yield (
            "Compare: next column",
            partial(app.action_compare, "next"),
            "F12: the panel edits it",
        )
        yield (
            "Compare: keep this column",
            partial(app.action_compare, "keep"),
            "the chat continues from the focused column's reply",
        )
        yield (
            "Model…",
            app.action_switch_model,
            "Ctrl+L: another model or server; the chat goes on with it",
        )
        yield (
            "Attach file…",
            app.action_attach_file,
            "a text file's contents into the message (or type @path; Tab completes it)",
        )
        yield (
            "Write the message in $EDITOR",
            app.action_edit_in_editor,
            "Ctrl+G: $VISUAL or $EDITOR on the message box's text",
        )
        yield (
            "Sweep…",
            app.action_sweep,
            "one or two parameters over a few values, seeded samples at each, plotted",
        )
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
