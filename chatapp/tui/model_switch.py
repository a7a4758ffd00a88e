"""Switching the model mid-chat ("Model…", Ctrl+L): a list of what can be loaded (the
bundled model, recent choices, the local Hugging Face cache, the servers in
settings.toml), or any path, hub id or server URL typed in. The choice loads on a thread
with its progress in the status line while the chat stays usable; once it is ready (and
no reply is streaming) it replaces the engine, and the next request evaluates the
conversation afresh under the new model's window. A load that fails leaves the current
model in place, with one line saying why."""

from __future__ import annotations

import argparse
import copy
import gc
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from chatapp.engine.protocol import Engine
from chatapp.tui.events import EngineReady
from chatapp.tui.widgets import OrderedInput

RECENT = 8  # choices remembered
Factory = Callable[[str, Callable[[str, "float | None"], None]], Engine]


def cached_models() -> list[str]:
    """The model repositories in the local Hugging Face cache (none without the local
    extras, or with no cache)."""
    try:
        from huggingface_hub import scan_cache_dir

        info = scan_cache_dir()
    except Exception:  # noqa: BLE001 - no hub library, or no cache folder: nothing to offer
        return []
    return sorted(repo.repo_id for repo in info.repos if repo.repo_type == "model")


def is_server(choice: str) -> bool:
    return choice.startswith(("http://", "https://"))


def engine_for(args: argparse.Namespace | None, choice: str, progress: Any) -> Engine:
    """The engine for ``choice`` (a server URL, or a model for ``--model``), with the
    launch's other options."""
    from chatapp.cli_options import add_engine_options
    from chatapp.engine.from_args import engine_from_args

    if args is None:  # the engine options' defaults
        parser = argparse.ArgumentParser()
        add_engine_options(parser)
        args = parser.parse_args([])
    options = copy.copy(args)
    if is_server(choice):  # "URL" (its default model) or "URL MODEL"
        url, _, model = choice.partition(" ")
        options.server, options.model = url, model.strip() or None
    else:
        options.server, options.model = None, choice
    return engine_from_args(options, progress, background=True)


class ModelPicker(ModalScreen[str | None]):
    """Pick a model or server, or type one; Esc goes back."""

    BINDINGS = [Binding("escape", "dismiss_picker", "Back")]

    def __init__(self, choices: list[tuple[str, str]], current: str) -> None:
        super().__init__()
        self.choices = choices  # (what it is, the choice)
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="model-picker"):
            yield Static(f"Model · now: {self.current} · Enter loads the one chosen or typed")
            yield OrderedInput(placeholder="a path, a hub id or a server URL", id="model-typed")
            yield OptionList(
                *(Option(f"{choice}  [dim]{what}[/dim]", id=str(i))
                  for i, (what, choice) in enumerate(self.choices)),
                id="model-list",
            )  # fmt: skip

    def on_mount(self) -> None:
        self.query_one("#model-list", OptionList).focus()

    @on(Input.Submitted, "#model-typed")
    def _typed(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.dismiss(event.value.strip())

    @on(OptionList.OptionSelected, "#model-list")
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.choices[int(event.option.id or 0)][1])

    def action_dismiss_picker(self) -> None:
        self.dismiss(None)


class ModelSwitcher:
    """The "Model…" flow for ``app`` (the ChatApp): what to offer, the load, the swap."""

    def __init__(self, app: App[Any], factory: Factory | None = None) -> None:
        self.app = app
        self.factory: Factory = factory or partial(engine_for, None)
        self.loading: str | None = None  # the choice being loaded
        self._ready: tuple[str, Engine] | None = None
        self._timer: Timer | None = None

    def choices(self) -> list[tuple[str, str]]:
        from chatapp.engine.from_args import local_extras_missing

        settings = self.app.settings.values
        found: list[tuple[str, str]] = []
        if not local_extras_missing():
            found.append(("the bundled offline Gemma 3 270M", "bundled"))
        found += [("recent", choice) for choice in settings.recent_models]
        found += [("in the Hugging Face cache", repo) for repo in cached_models()]
        engine = self.app.engine
        here = getattr(engine, "base_url", None)
        if here is not None:  # the server in use: each model it serves
            found += [("on this server", f"{here} {m}") for m in getattr(engine, "models", [])]
        found += [("server (settings.toml)", url) for url in settings.servers]
        seen: set[str] = set()
        return [(w, c) for w, c in found if not (c in seen or seen.add(c))]

    def ask(self) -> None:
        engine = self.app.engine
        if self.loading is not None:
            self.app.notify(f"Still loading {self.loading}…", severity="warning")
            return
        current = engine.model_name if engine is not None else "none yet"
        self.app.push_screen(ModelPicker(self.choices(), current), self._chosen)

    def _chosen(self, choice: str | None) -> None:
        if choice is None:
            return
        self.loading = choice
        self._say(f"Loading {choice}… the chat goes on with the current model")
        threading.Thread(
            target=self._load, args=(choice,), name="switch-model", daemon=True
        ).start()

    def _load(self, choice: str) -> None:
        loaded = threading.Event()

        def progress(text: str, fraction: float | None) -> None:
            if loaded.is_set() or not self.app.is_running:
                return  # background work after the load (the int8 copy): said elsewhere
            share = f" {fraction * 100:.0f}%" if fraction is not None else ""
            self.app.call_from_thread(self._say, f"Loading {choice}: {text}{share}")

        try:
            engine = self.factory(choice, progress)
        except Exception as exc:  # noqa: BLE001 - one line for the user
            if self.app.is_running:
                self.app.call_from_thread(self._failed, choice, str(exc))
            return
        loaded.set()
        if self.app.is_running:
            self.app.call_from_thread(self._loaded, choice, engine)

    @staticmethod
    def _release() -> None:
        """After the swap: the old model's objects were frozen out of collection when it
        loaded (``chatapp.heap``): unfreeze, collect what only it held (cycles included),
        and freeze what is left again."""
        frozen = gc.get_freeze_count() > 0
        gc.unfreeze()
        gc.collect()
        if frozen:
            gc.freeze()

    def _say(self, text: str) -> None:
        self.app.set_status(text)

    def _failed(self, choice: str, error: str) -> None:
        self.loading = None
        line = error.strip().splitlines()[0] if error.strip() else "it did not load"
        self.app.notify(f"{choice}: {line}", title="Model not loaded", severity="error")
        engine = self.app.engine
        self._say(f"Still {engine.describe()}" if engine is not None else f"{choice} did not load")

    def _loaded(self, choice: str, engine: Engine) -> None:
        self._ready = (choice, engine)
        if self._timer is None:
            self._timer = self.app.set_interval(0.2, self._swap_when_idle)
        self._swap_when_idle()

    def _swap_when_idle(self) -> None:
        """Replace the engine once no reply is streaming (a reply under way finishes on the
        model it started with)."""
        if self._ready is None or any(pane.streaming for pane in self.app.panes):
            return
        choice, engine = self._ready
        self._ready, self.loading = None, None
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if self.app.engine is not None:
            self.app.engine.stop()
        self.app.post_message(EngineReady(engine))  # the app's own way to take an engine
        self.app.call_later(self._release)
        recent = [choice, *(c for c in self.app.settings.values.recent_models if c != choice)]
        self.app.settings.set("recent_models", recent[:RECENT])
        self.app.notify(f"Now chatting with {engine.model_name}", title="Model", timeout=4)
