"""Stop strings on streamed text: what might begin one is held back until it is clear,
and a stop string that appears ends the reply and is never shown. Pure text, shared by
the local engine's streamer and the remote engine."""

from __future__ import annotations

from collections.abc import Sequence


class StopStringFilter:
    """Feed text pieces; get back the text that is safe to show."""

    def __init__(self, stop_strings: Sequence[str] = ()) -> None:
        self.stops = tuple(stop_strings)
        self.held = ""
        self.seen = False  # a stop string appeared: everything after it is dropped

    def push(self, piece: str) -> str:
        """The part of ``held + piece`` that can be shown now."""
        if self.seen or not piece:
            return ""
        if not self.stops:
            return piece
        text = self.held + piece
        hits = [text.find(s) for s in self.stops if s in text]
        if hits:
            self.seen = True
            self.held = ""
            return text[: min(hits)]
        keep = _longest_stop_prefix(text, self.stops)
        self.held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        """At the end: text held back that turned out not to be a stop string."""
        held, self.held = self.held, ""
        return "" if self.seen else held


def _longest_stop_prefix(text: str, stops: Sequence[str]) -> int:
    """Length of the longest end of ``text`` that begins some stop string."""
    best = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), best, -1):
            if stop.startswith(text[-n:]):
                best = n
                break
    return best
