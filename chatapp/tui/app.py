"""The full-screen app: it composes the screen, loads the engine, and routes keys, the
message box and the panel to the focused chat pane. Each pane owns its conversation and
its streaming reply; the lens and the preset dialogs have controllers of their own."""

from __future__ import annotations

from pathlib import Path

from textual import events, on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Static

from chatapp.engine.protocol import Engine
from chatapp.engine.request_queue import RequestQueue
from chatapp.params import SamplingParams
from chatapp.presets import PresetStore
from chatapp.settings import SettingsFile
from chatapp.store import ChatStore
from chatapp.tui.attach import AttachActions
from chatapp.tui.chat_pane import ChatPane
from chatapp.tui.chats_screen import ChatsScreen
from chatapp.tui.commands import ChatCommands
from chatapp.tui.copying import CopyActions
from chatapp.tui.editor import edit_message
from chatapp.tui.events import EngineFailed, EngineReady, LensReplayed, LoadProgress, WhatIfReady
from chatapp.tui.lens import LensView
from chatapp.tui.lens_controller import LensController
from chatapp.tui.model_loader import EngineFactory, ModelLoader
from chatapp.tui.model_switch import ModelSwitcher
from chatapp.tui.panel import ParamPanel
from chatapp.tui.preset_dialogs import PresetDialogs
from chatapp.tui.prompt_shape import PromptShapeDialogs
from chatapp.tui.screen import ChatScreen
from chatapp.tui.signals import quit_on_signals
from chatapp.tui.textual_internals import version_warning
from chatapp.tui.themes import use_themes
from chatapp.tui.widgets import LoadingView, PromptBox


class ChatApp(App[int]):
    """Chat with a local model; the side panel steers how each reply is sampled."""

    CSS_PATH = "app.tcss"
    TITLE = "chatapp"
    COMMANDS = App.COMMANDS | {ChatCommands}
    BINDINGS = [
        Binding("escape", "stop_reply", "Stop"),
        Binding("ctrl+r", "regenerate", "Regen"),
        Binding("ctrl+n", "new_chat", "New"),
        Binding("ctrl+o", "open_chats", "Chats"),
        Binding("f2", "toggle_panel", "Panel", priority=True),
        Binding("f3", "toggle_lens", "Lens", priority=True),
        Binding("f9", "copy_reply", "Copy", priority=True),
        Binding("shift+f9", "copy_code", "Copy code", show=False, priority=True),
        Binding("alt+up", "pick_message(-1)", "Pick message", show=False, priority=True),
        Binding("alt+down", "pick_message(1)", "Pick message", show=False, priority=True),
        Binding("f6", "toggle_heat", "Heat map", show=False, priority=True),
        Binding("f7", "lens_step(-1)", "Prev step", show=False, priority=True),
        Binding("f8", "lens_step(1)", "Next step", show=False, priority=True),
        Binding("ctrl+s", "save_preset", "Save preset", show=False),
        Binding("ctrl+g", "edit_in_editor", "Editor", show=False, priority=True),
        Binding("ctrl+l", "switch_model", "Model", show=False, priority=True),
        Binding("f4", "toggle_language", "中/EN", show=False, priority=True),
        Binding("f5", "compare('add')", "Compare", show=False, priority=True),
        Binding("shift+f5", "compare('close')", "Close column", show=False, priority=True),
        Binding("f12", "compare('next')", "Next column", show=False, priority=True),
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
        chat_id: int | None = None,
        continue_last: bool = False,
        params_given: bool = False,
    ) -> None:
        super().__init__()
        self.engine_factory = engine_factory
        self.presets = PresetStore()
        self.settings = SettingsFile()
        self.history = ChatStore()
        self.initial_params = params or SamplingParams()
        self.initial_system = system or ""
        self.initial_preset = preset
        self.requested_theme = theme
        self.open_chat_id = chat_id
        self.continue_last = continue_last
        # The command line chose sampling values (flags or --preset): the chat opened at
        # start-up keeps them rather than its last reply's.
        self.params_given = params_given
        self.engine: Engine | None = None  # set once the engine is ready
        self.queue = RequestQueue()  # turns at the engine for the panes' replies
        self.load_error: str | None = None
        self.loader = ModelLoader(self, engine_factory, self._engine_changed)
        self._active: ChatPane | None = None
        self._blink_after_reply = True  # the message box's cursor blink, off while streaming
        self.replies_done = 0  # replies ended and drawn whole, in every pane
        self.preset_dialogs = PresetDialogs(self, self.presets)
        self.lens = LensController(
            self,
            view=lambda: self.query_one(LensView),
            pane=lambda: self.pane,
            engine=lambda: self.engine,
            params=lambda: self.params,
            say=self.set_status,
        )
        self.copying = CopyActions(self, self.lens, lambda: self.pane)
        self.attach = AttachActions(self, lambda: self.pane)
        self.switcher = ModelSwitcher(self)
        self.prompt_shape = PromptShapeDialogs(self, lambda: self.engine, lambda: self.pane)

    # -- layout -------------------------------------------------------------------------
    def get_default_screen(self) -> ChatScreen:
        return ChatScreen(id="_default")

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield LoadingView(id="loading")
                with Horizontal(id="panes"):
                    yield ChatPane(self.history, self.initial_params, self.initial_system)
                yield LensView()
                yield PromptBox()
            yield ParamPanel(
                self.initial_params, self.presets.names(), lang=self.settings.values.help_lang
            )
        yield Static("", id="status")
        yield Footer()

    async def on_mount(self) -> None:
        self._active = self.query_one(ChatPane)
        quit_on_signals(self._quit_on_signal)
        use_themes(self, self.requested_theme, self.settings)
        problems = (self.presets.load_error, self.settings.load_error, self.history.problem)
        for problem in (*problems, version_warning()):
            if problem:
                self.notify(problem, severity="warning", timeout=12)
        self.history.on_problem = lambda text: self.notify(text, severity="error", timeout=12)
        if self.initial_preset:
            # Only shows the name: the values (with any command-line overrides) are in force.
            self.preset_dialogs.names_changed(self.initial_preset)
        self.query_one(LensView).display = False
        self.query_one(PromptBox).focus()
        self.set_status("Loading the model…")
        self.loader.start()
        chat_id = self.history.last_chat_id() if self.continue_last else self.open_chat_id
        if chat_id is not None:
            await self.open_chat(chat_id, restore_params=not self.params_given)
        elif self.continue_last:
            self.notify("No saved chat to continue yet: this is a new one.")

    # -- the panes ------------------------------------------------------------------------
    @property
    def pane(self) -> ChatPane:
        """The focused chat pane: the one keys, the message box and the panel act on."""
        if self._active is None:
            self._active = self.query_one(ChatPane)
        return self._active

    @property
    def panes(self) -> list[ChatPane]:
        return list(self.query(ChatPane))

    async def add_pane(self) -> ChatPane:
        """Another chat pane beside the others, with the panel's values; it becomes the
        focused one."""
        pane = ChatPane(self.history, self.params, self.initial_system)
        await self.query_one("#panes").mount(pane)
        pane.heat_on = self.lens.heat_on
        pane.set_record_lens(self.lens.recording)
        if self.engine is not None:
            pane.attach(self.engine, self.queue)
        self._active = pane
        return pane

    def focus_pane(self, pane: ChatPane) -> None:
        """Make ``pane`` the focused one: the panel shows and edits its values."""
        if pane is not self._active:
            self._active = pane
            self.query_one(ParamPanel).apply(pane.params)

    @on(events.DescendantFocus)
    def _focus_moved(self, event: events.DescendantFocus) -> None:
        pane = next((n for n in event.widget.ancestors_with_self if isinstance(n, ChatPane)), None)
        if pane is not None:
            self.focus_pane(pane)

    @on(ChatPane.Chosen)
    def _pane_chosen(self, event: ChatPane.Chosen) -> None:
        self.focus_pane(event.pane)

    @on(ChatPane.ColumnFocused)
    def _column_focused(self, event: ChatPane.ColumnFocused) -> None:
        if event.pane is self.pane:
            self.query_one(ParamPanel).apply(event.pane.params)
            self.lens.compare_changed()

    @on(ChatPane.PartingShown)
    def _parting_shown(self, event: ChatPane.PartingShown) -> None:
        if event.pane is self.pane:
            self.lens.compare_changed()

    async def action_compare(self, what: str) -> None:
        """Compare: F5 adds a column (a copy of the focused one), Shift+F5 closes the
        focused one, F12 focuses the next; "keep" continues from the focused one."""
        compare = self.pane.compare
        actions = {"add": compare.add, "close": compare.close, "next": compare.next}
        if what == "keep":
            await compare.keep()
        else:
            actions[what]()

    def action_edit_in_editor(self) -> None:
        edit_message(self, self.query_one(PromptBox))

    def action_attach_file(self) -> None:
        self.attach.ask(self.query_one(PromptBox))

    @on(PromptBox.PathCompleted)
    def _path_completed(self, event: PromptBox.PathCompleted) -> None:
        self.attach.tell_tokens(event.path)

    def action_sweep(self) -> None:
        from chatapp.tui.sweep_screen import open_sweep  # plotext: only when asked for

        if self._can_generate():
            open_sweep(self.pane, self.query_one(PromptBox).text, self.params)

    @property
    def params(self) -> SamplingParams:
        """The valid values in force (a field with an invalid entry keeps its last valid one)."""
        return self.query_one(ParamPanel).params

    @property
    def generating(self) -> bool:  # the focused pane's reply is streaming
        return self.pane.streaming

    @on(LoadProgress)
    def _load_progress(self, event: LoadProgress) -> None:
        self.query_one(LoadingView).set_stage(event.text, event.fraction)

    @on(EngineReady)
    def _engine_ready(self, event: EngineReady) -> None:
        engine = self.engine = event.engine
        self.queue = RequestQueue(concurrent=engine.capabilities.concurrent)
        for pane in self.panes:
            pane.attach(engine, self.queue)
        self.query_one(LoadingView).display = False
        self.set_status("Ready · " + engine.describe())
        self.query_one(ParamPanel).mark_unsupported(
            engine.capabilities.supported, engine.capabilities.kind
        )
        for warning in engine.warnings:
            self.notify(warning, title="Engine", severity="warning", timeout=15)
        self.loader.ready(engine)

    def _engine_changed(self, engine: Engine) -> None:
        if not any(pane.streaming for pane in self.panes):
            self.set_status("Ready · " + engine.describe())

    @on(EngineFailed)
    def _engine_failed(self, event: EngineFailed) -> None:
        self.load_error = event.error
        self.loader.failed()
        self.query_one(LoadingView).set_error(
            f"The model could not load:\n{event.error}\n\nQuit with Ctrl+Q; try --model bundled."
        )
        self.notify(event.error, title="Model could not load", severity="error", timeout=15)
        self.set_status("No model: " + event.error)

    def set_status(self, text: str) -> None:
        """The status line (no layout needed; none left while the app is closing)."""
        for status in self.query("#status").results(Static):
            status.update(text, layout=False)

    @on(ChatPane.Status)
    def _pane_status(self, event: ChatPane.Status) -> None:
        if event.pane is self._active and self.is_running:
            self.set_status(event.text)

    @on(ParamPanel.Changed)
    def _params_changed(self, event: ParamPanel.Changed) -> None:
        self.pane.params = event.params  # the panel edits the focused pane's values
        self.lens.what_if()
        notes = [a.message for a in event.params.advice() if not a.ignored]
        self.set_status(
            "Next reply: " + event.params.summary() + (f" · note: {notes[0]}" if notes else "")
        )

    @on(ParamPanel.PresetChosen)
    def _preset_chosen(self, event: ParamPanel.PresetChosen) -> None:
        self.preset_dialogs.load(event.name)

    # -- replies --------------------------------------------------------------------------
    def _can_generate(self) -> bool:
        if self.engine is None:
            self.notify(
                self.load_error or "The model is still loading; Send works once it is ready.",
                severity="warning",
            )
            return False
        self.pane.params = self.params
        return True

    @on(PromptBox.Submitted)
    async def _submit(self, event: PromptBox.Submitted) -> None:
        def accepted() -> None:  # before the turn is mounted: one layout for both
            self._steady_cursor()
            self.query_one(PromptBox).clear()

        if self._can_generate():
            await self.pane.send(event.text, accepted)

    async def action_regenerate(self) -> None:
        if self._can_generate():
            await self.pane.regenerate(self._steady_cursor)

    def _steady_cursor(self) -> None:
        """No blinking while replies stream (each blink repaints the box), from before."""
        prompt = self.query_one(PromptBox)
        if not any(pane.streaming for pane in self.panes):
            self._blink_after_reply, prompt.cursor_blink = prompt.cursor_blink, False

    @on(ChatPane.ReplyStarted)
    def _reply_started(self, event: ChatPane.ReplyStarted) -> None:
        self.lens.reply_started()

    @on(ChatPane.ReplyEnded)
    def _reply_ended(self, event: ChatPane.ReplyEnded) -> None:
        if not any(pane.streaming for pane in self.panes):
            for prompt in self.query(PromptBox):  # none once the app shuts down
                prompt.cursor_blink = self._blink_after_reply
        if event.pane is self._active and self.is_running and event.reply is not None:
            self.lens.reply_ended(event.reply)
        self.replies_done += 1

    def action_stop_reply(self) -> None:
        """Esc: stop the focused pane's reply; when none streams, back to the message box
        (from the panel's fields, which Tab reached, or the chat)."""
        if not self.pane.stop() and not isinstance(self.focused, PromptBox):
            self.query_one(PromptBox).focus()

    async def action_show_version(self, step: int) -> None:
        await self.pane.show_version(step)

    async def action_new_chat(self) -> None:
        """Start a new chat in the focused pane; the one on screen stays in the history."""
        self.lens.forget()
        await self.pane.new_chat()

    async def open_chat(self, chat_id: int, restore_params: bool = True) -> bool:
        """Show a stored chat in the focused pane; False (and a message) when there is
        none with that id. ``restore_params``: the panel takes the values of the chat's
        last reply, so that the chat goes on as it was."""
        self.lens.forget()
        last = await self.pane.open_chat(chat_id)
        if last is False:
            return False
        if restore_params and isinstance(last, SamplingParams) and last != self.params:
            self.query_one(ParamPanel).apply(last)
            self.notify("Parameters of the chat's last reply: " + last.summary(), timeout=10)
        return True

    def action_open_chats(self) -> None:
        pane = self.pane

        async def chosen(chat_id: int | None) -> None:
            if chat_id is not None:
                await self.open_chat(chat_id)
            elif pane.log.chat is not pane.session.chat:
                await pane.show_session_chat()  # the open chat was deleted

        self.push_screen(ChatsScreen(pane.session), chosen)

    def export_chat(self, fmt: str = "md") -> Path:
        """Write the focused chat to the data folder as Markdown or JSON; returns its path."""
        path = self.pane.export(fmt)
        self.notify(f"Chat exported to {path}")
        return path

    # -- the lens -------------------------------------------------------------------------
    def action_toggle_lens(self) -> None:
        self.lens.toggle_lens()

    def action_toggle_heat(self) -> None:
        self.lens.toggle_heat()

    def action_lens_step(self, delta: int) -> None:
        self.lens.step(delta)

    def action_lens_select(self, turn_index: int, step: int) -> None:  # a token clicked
        self.lens.select(turn_index, step)

    @on(LensReplayed)
    def _lens_replayed(self, event: LensReplayed) -> None:
        self.lens.replayed(event)

    @on(WhatIfReady)
    def _what_if_ready(self, event: WhatIfReady) -> None:
        self.lens.what_if_ready(event)

    # -- panel, presets, copying, prompt shape -------------------------------------------
    def action_toggle_panel(self) -> None:
        panel = self.query_one(ParamPanel)
        panel.display = not panel.display

    def action_toggle_language(self) -> None:
        self.settings.set("help_lang", self.query_one(ParamPanel).toggle_language())

    def action_save_preset(self) -> None:
        self.preset_dialogs.save()

    def action_switch_model(self) -> None:
        self.switcher.ask()

    def action_copy_reply(self) -> None:
        self.copying.copy_reply()

    def action_copy_code(self, number: int = 0) -> None:
        self.copying.copy_code(number)

    def action_pick_message(self, delta: int) -> None:
        self.copying.pick(delta)

    def _keep_partial_replies(self) -> None:
        """However the app ends, replies still streaming stop and are kept, marked stopped."""
        for pane in self.panes:
            pane.keep_partial_reply()

    def on_unmount(self) -> None:
        self._keep_partial_replies()
        self.loader.end()

    async def action_quit(self) -> None:
        self._keep_partial_replies()  # each reply ends within one token; its worker exits
        self.exit(0)

    def _quit_on_signal(self, number: int) -> None:
        self._keep_partial_replies()
        self.exit(return_code=128 + number)
