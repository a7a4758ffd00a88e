"""Signals from outside the terminal: ``kill`` ends the app as Ctrl+Q does."""

from __future__ import annotations

from collections.abc import Callable


def quit_on_signals(quit_with: Callable[[int], None]) -> None:
    """SIGTERM and SIGINT (from ``kill``; Ctrl+C is a key in the app) call ``quit_with``
    with the signal's number, on the running event loop."""
    import asyncio
    import signal

    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(number, quit_with, int(number))
        except (NotImplementedError, RuntimeError, ValueError):  # pragma: no cover
            pass  # not the main thread (tests), or not a Unix loop
