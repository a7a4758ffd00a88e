"""Turns at an engine for requests from several places at once (the app's chat panes).

A local model serves one reply at a time: a second request waits its turn, in the order
requests came, and a request cancelled while it waits leaves the queue at once. An
engine that serves requests concurrently (a server) gives every request its turn
straight away.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

WAIT_POLL = 0.05  # seconds between looks at a waiting request's cancel flag


class RequestQueue:
    """First come, first served turns at one engine (``concurrent``: no waiting)."""

    def __init__(self, concurrent: bool = False) -> None:
        self.concurrent = concurrent
        self._changed = threading.Condition()
        self._waiting: deque[object] = deque()
        self._serving: object | None = None

    @property
    def waiting(self) -> int:
        """How many requests wait for their turn."""
        with self._changed:
            return len(self._waiting)

    @contextmanager
    def turn(
        self, cancel: threading.Event, on_wait: Callable[[], None] = lambda: None
    ) -> Iterator[bool]:
        """Wait for this request's turn: yields True once it is this request's, False if
        ``cancel`` was set first. ``on_wait`` is called once if it has to wait."""
        if self.concurrent:
            yield not cancel.is_set()
            return
        ticket = object()
        with self._changed:
            self._waiting.append(ticket)
            if self._serving is not None or self._waiting[0] is not ticket:
                on_wait()
            while self._serving is not None or self._waiting[0] is not ticket:
                if cancel.is_set():
                    self._waiting.remove(ticket)
                    self._changed.notify_all()
                    break
                self._changed.wait(WAIT_POLL)
            else:
                self._waiting.popleft()
                self._serving = ticket
        if self._serving is not ticket:
            yield False
            return
        try:
            yield not cancel.is_set()
        finally:
            with self._changed:
                self._serving = None
                self._changed.notify_all()
