"""Loading the engine on a daemon thread (quitting never waits for a load), and what
follows once it is ready: the heap frozen, code highlighting warmed, the int8 copy
watched. It reports with ``LoadProgress``, ``EngineReady`` and ``EngineFailed``."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from textual.app import App
from textual.timer import Timer

from chatapp.engine.protocol import Engine
from chatapp.heap import HeapFreezer
from chatapp.tui.events import EngineFailed, EngineReady, LoadProgress
from chatapp.tui.reply_text import warm_code_highlighting

EngineFactory = Callable[[Callable[[str, "float | None"], None]], Engine]
BACKGROUND_POLL = 0.5  # seconds between looks at the engine's background work


class ModelLoader:
    """Loads the engine for ``host`` and keeps the heap frozen as loading adds to it."""

    def __init__(
        self, host: App[Any], factory: EngineFactory, changed: Callable[[Engine], None]
    ) -> None:
        self.host = host
        self.factory = factory
        self._changed = changed  # called when the engine describes itself anew
        self.heap = HeapFreezer()  # frozen at Ready (and after the warm-up and int8 copy)
        self._timer: Timer | None = None
        self._engine: Engine | None = None

    def start(self) -> None:
        threading.Thread(target=self._load, name="load-model", daemon=True).start()

    def _load(self) -> None:
        def progress(text: str, fraction: float | None) -> None:
            self.host.post_message(LoadProgress(text, fraction))

        try:
            engine = self.factory(progress)
        except Exception as exc:  # noqa: BLE001 - shown to the user, not raised
            self.host.post_message(EngineFailed(str(exc)))
            return
        self.host.post_message(EngineReady(engine))

    def ready(self, engine: Engine) -> None:
        """The engine is in use: freeze what loading made, warm up, watch the int8 copy."""
        self._engine = engine
        if self._timer is not None:  # another engine's work watched before: not any more
            self._timer.stop()
            self._timer = None
        if engine.int8_status().pending:
            self._timer = self.host.set_interval(BACKGROUND_POLL, self._background_work_done)
        self.heap.freeze()
        threading.Thread(target=self._warm_up, name="warm-up", daemon=True).start()

    def failed(self) -> None:
        self.heap.freeze()  # the collector resumes (paused while loading)

    def _warm_up(self) -> None:
        warm_code_highlighting()
        self.heap.freeze()  # what the warm-up made too

    def _background_work_done(self) -> None:
        """Say so when the engine's background work (the int8 copy) is done."""
        assert self._engine is not None and self._timer is not None
        work = self._engine.int8_status()
        if work.pending:
            return
        self._timer.stop()
        if work.error is not None:
            self.host.notify(
                f"The int8 copy failed ({work.error}); replies use the float weights",
                severity="warning",
            )
        else:
            self.host.notify(
                f"int8 copy made in {work.seconds:.1f} s: replies now decode in int8", timeout=4
            )
        self.heap.freeze()
        self._changed(self._engine)

    def end(self) -> None:
        self.heap.end()
