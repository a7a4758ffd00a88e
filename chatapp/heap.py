"""Keeping Python's cyclic garbage collector off what chatapp loads once.

Loading makes hundreds of thousands of long-lived objects (torch, transformers, the model;
Textual in the app) in a few seconds, and the collector would walk them again and again
as they come, a large share of the start. Once loaded, each full collection would still
walk them all while holding the GIL, on whichever thread allocated last: mid-reply, a
stall of the screen and of the generation. So the ``chatapp`` command starts with the
collector paused (``pause``), and once the model is loaded what is there is frozen out
of every later collection and the collector resumes (``loaded``, ``HeapFreezer.freeze``):
a full collection then walks only what the chats made since. There is no gc.collect()
before the freeze: what loading leaves as garbage is small objects holding little memory,
not worth a full walk. docs/performance.md has the figures and the commands that give them.
"""

from __future__ import annotations

import gc
import threading
from typing import Any

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
    """Collect as usual again, noting how many collections ran while paused."""
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


def report() -> dict[str, Any]:
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
