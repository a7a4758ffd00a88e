"""The full-screen app: routes keys and worker reports between the chat, the panel and
the engine. The conversation lives in ``ChatSession``; the lens and the preset dialogs
are mixins from their own modules."""

from __future__ import annotations

import argparse
import threading
from collections.abc import Callable
from functools import partial

from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.theme import Theme
from textual.timer import Timer
from textual.widgets import Footer, Static

from chatapp.conversation import ChatSession
from chatapp.engine.context import ContextTooLong
from chatapp.engine.from_args import engine_from_args
from chatapp.engine.lens import LensRecorder
from chatapp.engine.protocol import Engine
from chatapp.engine.types import Message
from chatapp.heap import HeapFreezer
from chatapp.params import SamplingParams
from chatapp.presets import PresetStore
from chatapp.settings import SettingsFile
from chatapp.store import ChatStore
from chatapp.tui.chat import AssistantMessage, ChatPane, warm_code_highlighting
from chatapp.tui.chat_actions import ChatActions
from chatapp.tui.commands import ChatCommands
from chatapp.tui.events import EngineFailed, EngineReady, LoadProgress
from chatapp.tui.lens import LensView
from chatapp.tui.lens_controls import LensControls
from chatapp.tui.panel import ParamPanel
from chatapp.tui.preset_dialogs import PresetDialogs
from chatapp.tui.reply_stream import ReplyStreaming
from chatapp.tui.screen import ChatScreen
from chatapp.tui.themes import load_themes
from chatapp.tui.widgets import LoadingView, PromptBox

EngineFactory = Callable[[Callable[[str, "float | None"], None]], Engine]
DEFAULT_THEME = "chatapp-dark"


class ChatApp(LensControls, ReplyStreaming, PresetDialogs, ChatActions, App[int]):
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
        chat_id: int | None = None,
        continue_last: bool = False,
        params_given: bool = False,
    ) -> None:
        super().__init__()
        self.engine_factory = engine_factory
        self.store = PresetStore()
        self.settings = SettingsFile()
        self.chats = ChatStore()
        self.session = ChatSession(self.chats, system or "")
        self.initial_params = params or SamplingParams()
        self.initial_preset = preset
        self.requested_theme = theme
        self.open_chat_id = chat_id
        self.continue_last = continue_last
        # The command line chose sampling values (flags or --preset): the chat opened at
        # start-up keeps them rather than its last reply's.
        self.params_given = params_given
        self.source: Engine | None = None  # set once the engine is ready
        self.load_error: str | None = None
        self._pending: list[str] = []
        self._pending_lock = threading.Lock()
        self._ui_thread_id = threading.get_native_id()
        self._heap = HeapFreezer()  # frozen at Ready (and after the warm-up and int8 copy)
        self._reply_text = ""  # the streaming reply so far (drawn and saved)
        self._drawn_at = 0.0  # when streamed text was last drawn
        self._draw_unpainted = False  # drawn, and not yet on the screen
        self._reply_widget: AssistantMessage | None = None
        self._chat_pane: ChatPane | None = None  # the pane a reply streams into
        self._flush_timer: Timer | None = None
        self._blink_after_reply = True  # the message box's cursor blink, paused while streaming
        self.replies_done = 0  # finished replies, for tests and the UI benchmark
        self.stream_repairs = 0  # replies whose streamed text had to be replaced at the end
        self._cancel = threading.Event()
        self._recorder: LensRecorder | None = None

    @property
    def system_prompt(self) -> str:
        return self.session.chat.system

    # -- layout -------------------------------------------------------------------------
    def get_default_screen(self) -> ChatScreen:
        return ChatScreen(id="_default")

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

    async def on_mount(self) -> None:
        self._handle_signals()
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
        for problem in (self.store.load_error, self.settings.load_error, self.chats.problem):
            if problem:
                self.notify(problem, severity="warning", timeout=12)
        self.chats.on_problem = lambda text: self.notify(text, severity="error", timeout=12)
        if self.initial_preset:
            # Only shows the name: the values (with any command-line overrides) are in force.
            self._preset_names_changed(self.initial_preset)
        self.query_one(LensView).display = False
        self.query_one(PromptBox).focus()
        self._set_status("Loading the model…")
        threading.Thread(target=self._load_engine, name="load-model", daemon=True).start()
        chat_id = self.chats.last_chat_id() if self.continue_last else self.open_chat_id
        if chat_id is not None:
            await self.open_chat(chat_id, restore_params=not self.params_given)
        elif self.continue_last:
            self.notify("No saved chat to continue yet: this is a new one.")

    def _remember_theme(self, theme: Theme) -> None:
        if theme.name != self.settings.get("theme"):
            self.settings.set("theme", theme.name)

    # -- model loading (a daemon thread: quitting never waits for a load) ---------------
    def _load_engine(self) -> None:
        def progress(text: str, fraction: float | None) -> None:
            self.post_message(LoadProgress(text, fraction))

        try:
            source = self.engine_factory(progress)
        except Exception as exc:  # noqa: BLE001 - shown to the user, not raised
            self.post_message(EngineFailed(str(exc)))
            return
        self.post_message(EngineReady(source))

    @on(LoadProgress)
    def _load_progress(self, event: LoadProgress) -> None:
        self.query_one(LoadingView).set_stage(event.text, event.fraction)

    @on(EngineReady)
    def _engine_ready(self, event: EngineReady) -> None:
        self.source = event.source
        self.query_one(LoadingView).display = False
        self._set_status("Ready · " + self.source.describe())
        if self.source.int8_status().pending:
            self._int8_timer = self.set_interval(0.5, self._int8_made)
        for warning in self.source.warnings:
            self.notify(warning, title="Connection", severity="warning", timeout=15)
        capabilities = self.source.capabilities
        self.query_one(ParamPanel).mark_unsupported(capabilities.supported, capabilities.kind)
        self._heap.freeze()
        threading.Thread(target=self._warm_up, name="warm-up", daemon=True).start()

    @on(EngineFailed)
    def _engine_failed(self, event: EngineFailed) -> None:
        self.load_error = event.error
        self._heap.freeze()  # the collector resumes (paused while loading)
        self.query_one(LoadingView).set_error(
            f"The model could not load:\n{event.error}\n\nQuit with Ctrl+Q; try --model bundled."
        )
        self.notify(event.error, title="Model could not load", severity="error", timeout=15)
        self._set_status("No model: " + event.error)

    # -- status ---------------------------------------------------------------------------
    @property
    def params(self) -> SamplingParams:
        """The valid values in force (a field with an invalid entry keeps its last valid one)."""
        return self.query_one(ParamPanel).params

    @property
    def generating(self) -> bool:
        return self._reply_widget is not None

    def _set_status(self, text: str) -> None:
        # One row, as wide as the screen, whatever it says (app.tcss): no layout needed
        # (each was a layout of the whole screen, ~10 ms, at every reply's start and end).
        self.query_one("#status", Static).update(text, layout=False)

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
        if self._refused([*self.history(), Message("user", event.text)]):
            return  # the message stays in the box; nothing was sent
        self.query_one(PromptBox).clear()
        turn = self.session.add_user(event.text)
        index = len(self.session.chat.turns) - 1
        self._begin_version(index)
        await self.query_one(ChatPane).add_turn(turn, index)
        self._start_reply(index)

    def _refused(self, messages: list[Message]) -> bool:
        """True (and says why) when the newest message cannot fit the context window."""
        try:
            self.source.plan(messages, self.params)
        except ContextTooLong as exc:
            self.notify(str(exc), title="Too long for the context window", severity="error")
            self._set_status(str(exc))
            return True
        return False

    def history(self, upto: int | None = None) -> list[Message]:
        """The engine's messages (all turns, or up to turn ``upto``'s user message)."""
        return self.session.chat.messages(upto)

    def _begin_version(self, index: int) -> None:
        turn = self.session.chat.turns[index]
        self.session.start_reply(
            turn, self.params, self.source.model_name, self.source.engine_label()
        )

    # -- actions ----------------------------------------------------------------------------
    def action_stop_reply(self) -> None:
        """Esc: stop the reply streaming; when none is, back to the message box (from the
        panel's fields, which Tab reached, or the chat)."""
        if self.generating and self.source is not None:
            self._cancel.set()  # honoured even before the engine has started the request
            self.source.stop()
            self._set_status("Stopping…")
        elif not isinstance(self.focused, PromptBox):
            self.query_one(PromptBox).focus()

    async def action_regenerate(self) -> None:
        turns = self.session.chat.turns
        if not turns or self.query_one(ChatPane).reply_for(len(turns) - 1) is None:
            self.notify("Nothing to regenerate yet.", severity="warning")
            return
        if not self._can_generate() or self._refused(self.history(upto=len(turns) - 1)):
            return
        self._begin_version(len(turns) - 1)
        self._start_reply(len(turns) - 1)

    async def action_show_version(self, step: int) -> None:
        replies = self.query_one(ChatPane).assistant_messages()
        if not replies or self.generating:
            return
        reply = replies[-1]
        self.session.show_version(reply.turn, reply.shown + step)
        await reply.redraw()
        reply.show_heat(self.heat_on)

    def _int8_made(self) -> None:
        """Say so when the int8 copy (made on its thread after Ready) is in use."""
        int8 = self.source.int8_status()
        if int8.pending:
            return
        self._int8_timer.stop()
        if int8.error is not None:
            self.notify(
                f"The int8 copy failed ({int8.error}); replies use the float weights",
                severity="warning",
            )
        else:
            self.notify(
                f"int8 copy made in {int8.seconds:.1f} s: replies now decode in int8", timeout=4
            )
        self._heap.freeze()
        if not self.generating:
            self._set_status("Ready · " + self.source.describe())

    def on_unmount(self) -> None:
        self._keep_partial_reply()
        self._heap.end()

    def _warm_up(self) -> None:
        warm_code_highlighting()
        self._heap.freeze()  # what the warm-up made too

    def _keep_partial_reply(self) -> None:
        """However the app ends, a reply still generating is asked to stop, and what it
        streamed so far is kept, marked stopped."""
        if self.source is not None:
            self.source.stop()
        reply, self._reply_widget = self._reply_widget, None
        if reply is not None and reply.version is not None and reply.version.status == "streaming":
            # (Once the reply ended it is saved whole, and only its drawing was catching up.)
            with self._pending_lock:
                self._reply_text += "".join(self._pending)
            self.session.abandon_reply(reply.version, self._reply_text)

    async def action_quit(self) -> None:
        self._keep_partial_reply()  # the reply ends within one token; the worker then exits
        self.exit(0)

    def _handle_signals(self) -> None:
        """SIGTERM and SIGINT (from ``kill``; Ctrl+C is a key here) end the app as Ctrl+Q
        does: the partial reply is kept, the terminal restored; exit code 128 + signal."""
        import asyncio
        import signal

        loop = asyncio.get_running_loop()
        for number in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(number, self._quit_on_signal, int(number))
            except (NotImplementedError, RuntimeError, ValueError):  # pragma: no cover
                pass  # not the main thread (tests), or not a Unix loop

    def _quit_on_signal(self, number: int) -> None:
        self._keep_partial_reply()
        self.exit(return_code=128 + number)


def make_app(
    args: argparse.Namespace, params: SamplingParams, engine_factory: EngineFactory | None = None
) -> ChatApp:
    """The app as the command line configures it (shared by ``run_app`` and the tests)."""
    factory = engine_factory or partial(engine_from_args, args, background=True)
    return ChatApp(
        factory,
        params,
        preset=args.preset,
        theme=args.theme,
        system=args.system,
        chat_id=getattr(args, "chat", None),
        continue_last=getattr(args, "continue_last", False),
        params_given=getattr(args, "params_given", False),
    )


def run_app(args: argparse.Namespace, params: SamplingParams) -> int:
    """Open the app (``chatapp`` with no --prompt)."""
    app = make_app(args, params)
    app.run()
    if app.source is not None:
        app.source.stop()
    return app.return_code or 0
