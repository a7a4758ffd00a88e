"""The full-screen chat app: chat pane, live parameter panel, presets, themes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Markdown, Static

from chatapp import paths
from chatapp.engine.chat_format import Message
from chatapp.engine.context import ContextTooLong
from chatapp.engine.lens import LensRecorder
from chatapp.params import SamplingParams
from chatapp.presets import PresetError, PresetStore
from chatapp.settings import load_settings, save_setting
from chatapp.tui.chat import AssistantMessage, ChatPane, UserMessage
from chatapp.tui.commands import ChatCommands
from chatapp.tui.lens import LensView
from chatapp.tui.panel import ParamPanel
from chatapp.tui.themes import load_themes
from chatapp.tui.widgets import Confirm, LoadingView, PromptBox, TextAreaPrompt, TextPrompt

EngineFactory = Callable[[Callable[[str, "float | None"], None]], Any]
DEFAULT_THEME = "chatapp-dark"
FLUSH_INTERVAL = 0.05  # seconds between flushes of streamed text to the screen


def local_engine_factory(
    model: str | None,
    quant: str,
    dtype: str,
    context: int | None = None,
    chat_format: str | None = None,
) -> EngineFactory:
    """Loads the real model (in the loader thread)."""

    def factory(progress: Callable[[str, float | None], None]) -> Any:
        from chatapp.engine import LocalEngine
        from chatapp.engine.loading import silence_libraries

        silence_libraries()
        return LocalEngine.load(
            model,
            quant=quant,
            dtype=dtype,
            progress=progress,
            context=context,
            chat_format=chat_format,  # type: ignore[arg-type]
        )

    return factory


class ChatApp(App[int]):
    """Chat with a local model; the side panel steers how each reply is sampled."""

    CSS_PATH = "app.tcss"
    TITLE = "chatapp"
    COMMANDS = App.COMMANDS | {ChatCommands}
    BINDINGS = [
        Binding("escape", "stop_reply", "Stop"),
        Binding("ctrl+r", "regenerate", "Regen"),
        Binding("ctrl+n", "new_chat", "New"),
        Binding("f2", "toggle_panel", "Panel", priority=True),
        Binding("f3", "toggle_lens", "Lens", priority=True),
        Binding("f6", "toggle_heat", "Heat map", show=False, priority=True),
        Binding("f7", "lens_step(-1)", "Prev step", show=False, priority=True),
        Binding("f8", "lens_step(1)", "Next step", show=False, priority=True),
        Binding("ctrl+s", "save_preset", "Save preset", show=False),
        Binding("f4", "toggle_language", "中/EN", show=False, priority=True),
        Binding("alt+left", "show_version(-1)", "Prev version", show=False),
        Binding("alt+right", "show_version(1)", "Next version", show=False),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(
        self,
        engine_factory: EngineFactory,
        params: SamplingParams | None = None,
        *,
        preset: str | None = None,
        theme: str | None = None,
        system: str | None = None,
    ) -> None:
        super().__init__()
        self.engine_factory = engine_factory
        self.store = PresetStore()
        self.settings = load_settings()
        self.initial_params = params or SamplingParams()
        self.initial_preset = preset
        self.requested_theme = theme
        self.system_prompt = system or ""
        self.source: Any = None
        self.load_error: str | None = None
        self._pending: list[str] = []
        self._pending_lock = threading.Lock()
        self._stream: Any = None
        self._reply_widget: AssistantMessage | None = None
        self._flush_timer: Any = None
        self.replies_done = 0  # finished replies, for tests and the UI benchmark
        self.stream_repairs = 0  # replies whose streamed text had to be replaced at the end
        self.heat_on = False
        self._echo_preset: str | None = None
        self._cancel = threading.Event()
        self._recorder: LensRecorder | None = None
        self._lens_shown_at = 0.0
        self._lens_shown_count = 0
        self.lens_target: tuple[AssistantMessage, int] | None = None  # reply, step index

    # -- layout -------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield LoadingView(id="loading")
                yield ChatPane()
                yield LensView()
                yield PromptBox()
            yield ParamPanel(
                self.initial_params, self.store.names(), lang=self.settings.get("help_lang", "en")
            )
        yield Static("", id="status")
        yield Footer()

    def on_mount(self) -> None:
        loaded = load_themes()
        for theme in loaded.themes:
            self.register_theme(theme)
        for error in loaded.errors:
            self.notify(error, title="Theme skipped", severity="warning", timeout=8)
        wanted = self.requested_theme or self.settings.get("theme") or DEFAULT_THEME
        if wanted not in self.available_themes:
            self.notify(f"No theme named {wanted!r}; using {DEFAULT_THEME}", severity="warning")
            wanted = DEFAULT_THEME
        self.theme = wanted
        self.theme_changed_signal.subscribe(self, self._remember_theme)
        if self.store.load_error:
            self.notify(self.store.load_error, title="Presets", severity="warning", timeout=10)
        if self.initial_preset:
            # Only shows the name: the values (with any command-line overrides) are in
            # force already, so the Select's change event must not load the preset again.
            self._echo_preset = self.initial_preset
            self.query_one(ParamPanel).set_preset_names(self.store.names(), self.initial_preset)
        self.query_one(LensView).display = False
        self.query_one(PromptBox).focus()
        self._set_status("Loading the model…")
        threading.Thread(target=self._load_engine, name="load-model", daemon=True).start()

    def _remember_theme(self, theme: Any) -> None:
        if theme.name != self.settings.get("theme"):
            self.settings["theme"] = theme.name
            save_setting("theme", theme.name)

    # -- model loading (a daemon thread: quitting never waits for a load) ---------------
    def _load_engine(self) -> None:
        def progress(text: str, fraction: float | None) -> None:
            self._from_thread(self.query_one(LoadingView).set_stage, text, fraction)

        try:
            source = self.engine_factory(progress)
        except Exception as exc:  # noqa: BLE001 - shown to the user, not raised
            self._from_thread(self._engine_failed, str(exc))
            return
        self._from_thread(self._engine_ready, source)

    def _from_thread(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            self.call_from_thread(fn, *args)
        except RuntimeError:
            pass  # the app is shutting down

    def _engine_ready(self, source: Any) -> None:
        self.source = source
        self.query_one(LoadingView).display = False
        loaded = source.loaded
        self._set_status(
            f"Ready · {loaded.name} ({loaded.quant}, {loaded.dtype}, {loaded.device}) · "
            f"{source.chat_format} format · window {source.context_window:,} · "
            f"loaded in {loaded.load_seconds:.1f} s"
        )

    def _engine_failed(self, message: str) -> None:
        self.load_error = message
        self.query_one(LoadingView).set_error(
            f"The model could not load:\n{message}\n\nQuit with Ctrl+Q; try --model bundled."
        )
        self.notify(message, title="Model could not load", severity="error", timeout=15)
        self._set_status("No model: " + message)

    # -- status ---------------------------------------------------------------------------
    @property
    def params(self) -> SamplingParams:
        """The valid values in force (a field with an invalid entry keeps its last valid one)."""
        return self.query_one(ParamPanel).params

    @property
    def generating(self) -> bool:
        return self._reply_widget is not None

    def _set_status(self, text: str) -> None:
        self.query_one("#status", Static).update(text)

    @on(ParamPanel.Changed)
    def _params_changed(self, event: ParamPanel.Changed) -> None:
        self._what_if()
        notes = [a.message for a in event.params.advice() if not a.ignored]
        self._set_status(
            "Next reply: " + event.params.summary() + (f" · note: {notes[0]}" if notes else "")
        )

    # -- sending and streaming ----------------------------------------------------------
    def _can_generate(self) -> bool:
        if self.source is None:
            self.notify(
                self.load_error or "The model is still loading; Send works once it is ready.",
                severity="warning",
            )
            return False
        if self.generating:
            self.notify("A reply is still streaming: Esc stops it.", severity="warning")
            return False
        return True

    @on(PromptBox.Submitted)
    async def _submit(self, event: PromptBox.Submitted) -> None:
        if not self._can_generate():
            return
        messages = [*self.history(), Message("user", event.text)]
        if self._refused(messages):
            return  # the message stays in the box; nothing was sent
        self.query_one(PromptBox).clear()
        chat = self.query_one(ChatPane)
        await chat.mount(UserMessage(event.text))
        reply = AssistantMessage()
        await chat.mount(reply)
        await self._start_reply(reply, checked=True)

    def _refused(self, messages: list[Message]) -> bool:
        """True (and says why) when the newest message cannot fit the context window."""
        try:
            self.source.plan(messages, self.params)
        except ContextTooLong as exc:
            self.notify(str(exc), title="Too long for the context window", severity="error")
            self._set_status(str(exc))
            return True
        return False

    def history(self, upto: AssistantMessage | None = None) -> list[Message]:
        """The conversation as engine messages, up to (not including) ``upto``; replies
        carry the token ids they were generated as."""
        messages = [Message("system", self.system_prompt)] if self.system_prompt else []
        for widget in self.query_one(ChatPane).query(".message"):
            if widget is upto:
                break
            if isinstance(widget, UserMessage):
                messages.append(Message("user", widget.text))
            elif isinstance(widget, AssistantMessage) and widget.text:
                stats = widget.version.stats if widget.version else None
                ids = stats.reply_ids if stats is not None else None
                token_ids = tuple(ids) if ids is not None else None
                messages.append(Message("assistant", widget.text, token_ids))
        return messages

    async def _start_reply(self, reply: AssistantMessage, checked: bool = False) -> None:
        params = self.params
        messages = self.history(upto=reply)
        if not checked and self._refused(messages):  # a regenerate: check it here
            return
        reply.start_version(params)
        self._reply_widget = reply
        self._cancel = threading.Event()  # this reply's own stop flag (Esc sets it)
        reply.versions[-1].messages = messages
        # Always in the pipeline, so F3/F6 can switch recording on mid-reply; while
        # inactive it only applies the stages, as generate itself would.
        self._recorder = LensRecorder(active=self.recording)
        self._lens_shown_count = 0
        self._pending.clear()
        self._stream = Markdown.get_stream(reply.markdown)
        self._flush_timer = self.set_interval(FLUSH_INTERVAL, self._flush_stream)
        self.query_one(ChatPane).anchor()
        self._set_status(f"Generating ({params.summary()}) · Esc stops")
        self._generate(reply, messages, params, self._recorder, self._cancel)

    def _on_piece(self, piece: str) -> None:
        # Called on the generation thread: only buffer here; the timer draws.
        with self._pending_lock:
            self._pending.append(piece)

    async def _flush_stream(self) -> None:
        self._follow_lens()
        with self._pending_lock:
            if not self._pending:
                return
            text = "".join(self._pending)
            self._pending.clear()
        if self._stream is not None:
            await self._stream.write(text)

    @work(thread=True, exclusive=True, group="reply", name="reply")
    def _generate(
        self,
        reply: AssistantMessage,
        messages: list[Message],
        params: SamplingParams,
        recorder: LensRecorder | None,
        cancel: threading.Event,
    ) -> None:
        stats = None
        error = None
        try:
            stats = self.source.stream_reply(
                messages, params, self._on_piece, lens=recorder, cancel=cancel
            )
        except Exception as exc:  # noqa: BLE001 - shown in the message
            error = f"{type(exc).__name__}: {exc}"
        self._from_thread(self._finish_reply, reply, stats, error)

    async def _end_stream(self) -> None:
        """Draw what is still buffered and close the Markdown stream."""
        if self._flush_timer is not None:
            self._flush_timer.stop()
            self._flush_timer = None
        await self._flush_stream()
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None

    async def _finish_reply(self, reply: AssistantMessage, stats: Any, error: str | None) -> None:
        await self._end_stream()
        text = stats.text if stats is not None else ""
        if stats is not None and reply.markdown.source != text:
            # Streaming lost or garbled text: show the engine's whole reply, and count it
            # (the UI benchmark reports this; it should stay 0).
            self.stream_repairs += 1
            await reply.markdown.update(text)
        reply.finish_version(text, stats, error)
        self._reply_widget = None
        if self._recorder is not None:
            version = reply.versions[reply.shown]
            version.lens_steps = list(self._recorder.steps)
            version.lens_complete = self._recorder.complete
            self._recorder = None
            steps = version.lens_steps
            if steps:
                self.lens_target = (reply, len(steps) - 1)
                self._show_lens()
            reply.show_heat(self.heat_on, self._reply_index(reply))
        self.replies_done += 1
        if error:
            self.notify(error, title="Generation failed", severity="error")
            self._set_status("Generation failed: " + error)
        elif stats is not None:
            self._show_context(reply, stats)
            self._set_status(f"Done · {stats.summary()} · {self._context_meter(stats)}")

    @staticmethod
    def _context_meter(stats: Any) -> str:
        used = stats.prompt_tokens + stats.new_tokens
        return f"context {used:,}/{stats.window:,}"

    def _show_context(self, reply: AssistantMessage, stats: Any) -> None:
        """Say at the reply what the window forced, and dim the turns left out."""
        notes = []
        if stats.left_out:
            turns = "turn" if stats.left_out == 1 else "turns"
            notes.append(
                f"{stats.left_out} earlier {turns} no longer fit the {stats.window:,}-token "
                "window and were left out of this reply"
            )
        if stats.clipped:
            notes.append(f"max_new_tokens clipped to {stats.max_new_tokens} to fit the window")
        reply.set_context_note(" · ".join(notes))
        messages = list(self.query_one(ChatPane).query(".message"))
        users_seen = 0
        for widget in messages[: messages.index(reply)]:
            if isinstance(widget, UserMessage):
                users_seen += 1
            widget.set_class(users_seen <= stats.left_out, "-left-out")

    # -- actions ----------------------------------------------------------------------------
    def action_stop_reply(self) -> None:
        if self.generating and self.source is not None:
            self._cancel.set()  # honoured even before the engine has started the request
            self.source.stop()
            self._set_status("Stopping…")

    async def action_regenerate(self) -> None:
        replies = self.query_one(ChatPane).assistant_messages()
        if not replies:
            self.notify("Nothing to regenerate yet.", severity="warning")
            return
        if not self._can_generate():
            return
        await self._start_reply(replies[-1])

    async def action_show_version(self, step: int) -> None:
        replies = self.query_one(ChatPane).assistant_messages()
        if not replies or self.generating:
            return
        await replies[-1].show_version(replies[-1].shown + step)

    async def action_new_chat(self) -> None:
        if self.generating:
            self.action_stop_reply()
            await self.workers.wait_for_complete()
        chat = self.query_one(ChatPane)
        await chat.query(".message").remove()
        if self.source is not None:
            self.source.reset()  # frees the old conversation's KV cache
        self._set_status("New chat")

    def action_toggle_panel(self) -> None:
        panel = self.query_one(ParamPanel)
        panel.display = not panel.display

    def action_toggle_language(self) -> None:
        lang = self.query_one(ParamPanel).toggle_language()
        save_setting("help_lang", lang)

    def on_unmount(self) -> None:
        # However the app ends, a reply still generating is asked to stop.
        if self.source is not None:
            self.source.stop()

    async def action_quit(self) -> None:
        if self.source is not None:
            self.source.stop()  # the reply ends within one token; the worker then exits
        self.exit(0)

    # -- the probability lens -------------------------------------------------------------
    @property
    def recording(self) -> bool:
        """The lens records only while the lens or the heat map is on (otherwise: no cost)."""
        return self.query_one(LensView).display or self.heat_on

    def _reply_index(self, reply: AssistantMessage) -> int:
        return self.query_one(ChatPane).assistant_messages().index(reply)

    def _follow_lens(self) -> None:
        """While a reply streams, show its newest step (at most ~10 times a second)."""
        recorder = self._recorder
        lens = self.query_one(LensView)
        if recorder is None or not lens.display or not recorder.steps:
            return
        now = time.monotonic()
        count = len(recorder.steps)
        if count == self._lens_shown_count or now - self._lens_shown_at < 0.1:
            return
        self._lens_shown_at, self._lens_shown_count = now, count
        lens.show(recorder.steps[count - 1], f"{count} (streaming)")

    def _show_lens(self) -> None:
        if self.lens_target is None:
            return
        reply, index = self.lens_target
        steps = reply.lens_steps
        if steps:
            self.query_one(LensView).show(steps[index], f"{index + 1}/{len(steps)}")

    def action_toggle_lens(self) -> None:
        lens = self.query_one(LensView)
        lens.display = not lens.display
        if self._recorder is not None:
            self._recorder.active = self.recording
        if lens.display:
            self._show_lens()

    def action_toggle_heat(self) -> None:
        self.heat_on = not self.heat_on
        if self._recorder is not None:
            self._recorder.active = self.recording
        for i, reply in enumerate(self.query_one(ChatPane).assistant_messages()):
            reply.show_heat(self.heat_on, i)
        if self.heat_on and not any(
            r.lens_steps for r in self.query_one(ChatPane).assistant_messages()
        ):
            self.notify("The heat map colours replies generated from now on.")

    def action_lens_step(self, delta: int) -> None:
        if self.lens_target is None or self.generating:
            return
        reply, index = self.lens_target
        steps = reply.lens_steps
        self.lens_target = (reply, max(0, min(len(steps) - 1, index + delta)))
        self._show_lens()
        self._what_if()

    def action_lens_select(self, reply_index: int, step: int) -> None:
        """Open one step of one reply in the lens (clicking a token in the heat map)."""
        replies = self.query_one(ChatPane).assistant_messages()
        if not 0 <= reply_index < len(replies):
            return
        reply = replies[reply_index]
        if not 0 <= step < len(reply.lens_steps):
            return
        self.lens_target = (reply, step)
        self.query_one(LensView).display = True
        self._show_lens()
        self._what_if()

    def _what_if(self) -> None:
        """Recompute the selected step under the panel's values, if they differ."""
        if (
            self.lens_target is None
            or self.generating
            or not self.query_one(LensView).display
            or not hasattr(self.source, "what_if")
        ):
            return
        reply, index = self.lens_target
        version = reply.version
        if version is None or version.stats is None or not version.lens_steps:
            return
        if self.params == version.params:
            self._show_lens()
            return
        self._compute_what_if(version, index, self.params)

    @work(thread=True, exclusive=True, group="what-if", name="what-if")
    def _compute_what_if(self, version: Any, index: int, params: SamplingParams) -> None:
        try:
            position = version.lens_steps[index].index
            step = self.source.what_if(version.messages, version.stats.token_ids, position, params)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self._from_thread(self.notify, f"What-if failed: {exc}", severity="warning")
            return
        total = len(version.lens_steps)
        self._from_thread(self.query_one(LensView).show, step, f"{index + 1}/{total}")

    # -- presets ------------------------------------------------------------------------------
    @on(ParamPanel.PresetChosen)
    def _preset_chosen(self, event: ParamPanel.PresetChosen) -> None:
        if self._echo_preset is not None and event.name == self._echo_preset:
            self._echo_preset = None
            return
        self.load_preset(event.name)

    def load_preset(self, name: str) -> None:
        preset = self.store.get(name)
        if preset is None:
            self.notify(f"No preset named {name!r}", severity="error")
            return
        self.query_one(ParamPanel).apply(preset.params)
        self.notify(f"Preset {preset.name}: {preset.params.summary()}")

    def action_save_preset(self) -> None:
        panel = self.query_one(ParamPanel)
        if panel.errors:
            self.notify(
                "Invalid fields are not saved; their last valid values are: "
                + ", ".join(panel.errors),
                severity="warning",
            )

        def named(name: str | None) -> None:
            if name:
                self._save_preset(name.strip(), self.params)

        self.push_screen(
            TextPrompt("Save the current parameters as preset:", placeholder="name"), named
        )

    def _save_preset(self, name: str, params: SamplingParams, overwrite: bool = False) -> None:
        try:
            preset = self.store.save(name, params, overwrite=overwrite)
        except PresetError as exc:
            if "overwrite it?" in str(exc):

                def answer(yes: bool | None) -> None:
                    if yes:
                        self._save_preset(name, params, overwrite=True)

                self.push_screen(Confirm(str(exc)), answer)
            else:
                self.notify(str(exc), severity="error")
            return
        self.query_one(ParamPanel).set_preset_names(self.store.names())
        self.notify(f"Saved preset {preset.name} to {self.store.path}")

    def rename_preset(self, old: str) -> None:
        def named(new: str | None) -> None:
            if not new:
                return
            try:
                self.store.rename(old, new.strip())
            except PresetError as exc:
                self.notify(str(exc), severity="error")
                return
            self.query_one(ParamPanel).set_preset_names(self.store.names())
            self.notify(f"Renamed preset {old} to {new.strip()}")

        self.push_screen(TextPrompt(f"Rename preset {old} to:", value=old), named)

    def delete_preset(self, name: str) -> None:
        def answer(yes: bool | None) -> None:
            if not yes:
                return
            try:
                self.store.delete(name)
            except PresetError as exc:
                self.notify(str(exc), severity="error")
                return
            self.query_one(ParamPanel).set_preset_names(self.store.names())
            self.notify(f"Deleted preset {name}")

        self.push_screen(Confirm(f"Delete preset {name}?"), answer)

    # -- other commands ---------------------------------------------------------------------
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
            self.system_prompt = text.strip()
            self.notify("System prompt set" if self.system_prompt else "System prompt cleared")

        self.push_screen(
            TextPrompt("System prompt (applies to the next reply):", value=self.system_prompt), done
        )

    def export_chat(self) -> Path:
        """Write the chat to a Markdown file in the data folder; returns its path."""
        lines = [f"# chatapp conversation, {time.strftime('%Y-%m-%d %H:%M')}", ""]
        if self.system_prompt:
            lines += ["**System:** " + self.system_prompt, ""]
        for widget in self.query_one(ChatPane).children:
            if isinstance(widget, UserMessage):
                lines += ["## You", "", widget.text, ""]
            elif isinstance(widget, AssistantMessage) and widget.version is not None:
                version = widget.version
                lines += ["## Model", "", version.text, "", f"*{version.meta()}*", ""]
        path = paths.data_dir() / "exports" / f"chat-{time.strftime('%Y%m%d-%H%M%S')}.md"
        paths.atomic_write_text(path, "\n".join(lines))
        self.notify(f"Chat exported to {path}")
        return path


def make_app(
    args: Any, params: SamplingParams, engine_factory: EngineFactory | None = None
) -> ChatApp:
    """The app as the command line configures it (shared by ``run_app`` and the tests)."""
    factory = engine_factory or local_engine_factory(
        args.model, args.quant, args.dtype, args.context, args.chat_format
    )
    return ChatApp(factory, params, preset=args.preset, theme=args.theme, system=args.system)


def run_app(args: Any, params: SamplingParams) -> int:
    """Open the app (``chatapp`` with no --prompt)."""
    app = make_app(args, params)
    app.run()
    if app.source is not None:
        app.source.stop()
    return app.return_code or 0
