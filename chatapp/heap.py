"""Keeping Python's cyclic garbage collector off what chatapp loads once.

Loading is ~390,000 objects (torch, transformers, the model; Textual in the app) made in a
few seconds, and the collector walked them again and again as they came: 954 collections
costing 0.63 s (0.5 s of them full ones) of the one-shot's ~5 s on 2 cores. Once loaded,
each full collection still walked them all: 190-220 ms holding the GIL, every few replies,
on whichever thread allocated last (seen mid-reply on the UI thread: a stall of the screen
and of the generation). So the ``chatapp`` command starts with the collector paused
(``pause``), and once the model is loaded what is there is frozen out of every later
collection and the collector resumes (``HeapFreezer.freeze``): a full collection then
walks only what the chats made since, 20-40 ms here. No gc.collect() before the freeze
(~300 ms): what is garbage then is what loading left, ~11,000 small objects (no change
in resident memory when collected).
"""

from __future__ import annotations

import gc
import threading

_collections_at_pause: int | None = None  # set by pause()
_collections_while_paused: int | None = None  # set when collecting resumes


def collections() -> int:
    """How many collections (of any generation) have run in this process."""
    return sum(generation["collections"] for generation in gc.get_stats())


def pause() -> None:
    """No cyclic garbage collection until ``loaded``, ``HeapFreezer.freeze`` or ``resume``
    (the ``chatapp`` command's first step; a command that loads no model resumes at once)."""
    global _collections_at_pause
    gc.disable()
    _collections_at_pause = collections()


def resume() -> None:
    global _collections_while_paused
    if not gc.isenabled() and _collections_at_pause is not None:
        _collections_while_paused = collections() - _collections_at_pause
    gc.enable()


def loaded() -> None:
    """The model is loaded (the one-shot command): if collecting was paused, freeze what is
    there and resume. (Not paused, as when a test calls ``chatapp.cli.main``: nothing, so
    nothing in that process stays frozen.)"""
    if _collections_at_pause is not None and not gc.isenabled():
        gc.freeze()
        resume()


def report() -> dict:
    """For ``CHATAPP_TIMINGS``: the collector's state, how many objects are frozen, and
    how many collections ran while it was paused (None: it was not)."""
    return {
        "enabled": gc.isenabled(),
        "frozen": gc.get_freeze_count(),
        "collections_while_paused": _collections_while_paused,
    }


class HeapFreezer:
    """Freezes what is loaded (``gc.freeze``) and resumes collecting; ``end`` undoes the
    freeze for good, so a later app in the same process (the tests) starts from a heap
    collected as usual. ``freeze`` may be called again (the app: once the warm-up and the
    int8 copy have added theirs) and from another thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ended = False

    def freeze(self) -> None:
        with self._lock:
            if not self._ended:
                gc.freeze()
                resume()

    def end(self) -> None:
        with self._lock:
            self._ended = True
            gc.unfreeze()
