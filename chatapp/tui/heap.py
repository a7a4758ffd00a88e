"""Keeping Python's garbage collector off what the app loads once."""

from __future__ import annotations

import gc
import threading


class HeapFreezer:
    """Leaves what is loaded so far (torch, transformers, the model, Textual) out of every
    later garbage collection (``gc.freeze``): it lives as long as the app.

    Python's full collection walks every object it tracks, ~390,000 once the bundled model
    is loaded: 190-220 ms on 2 cores, holding the GIL, every few replies, on whichever
    thread allocated last (seen mid-reply on the UI thread: a stall of the screen and of
    the generation). Frozen, a full collection walks only what the chats made since:
    20-40 ms here. No gc.collect() first (another ~200 ms): what is garbage then is what
    loading left, a few hundred objects. ``end`` undoes it, for good: a later app in the
    same process (the tests) starts from a heap collected as usual."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # freeze() may come from another thread (warm-up)
        self._ended = False

    def freeze(self) -> None:
        with self._lock:
            if not self._ended:
                gc.freeze()

    def end(self) -> None:
        with self._lock:
            self._ended = True
            gc.unfreeze()
