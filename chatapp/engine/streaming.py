"""Streaming a reply out of ``generate``: text pieces, stop strings, and the stop flag."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from chatapp.engine.decoding import IncrementalDecoder
from chatapp.engine.lens import LensRecorder
from chatapp.engine.stops import StopStringFilter


class ReplyStreamer:
    """transformers streamer: decodes each new token and hands text to the callback.

    With stop strings (the dialogue format's ``\\nUser:``), text that could be the start
    of one is held back until it is clear; a stop string that appears ends the reply and
    is never shown.
    """

    def __init__(
        self,
        decoder: IncrementalDecoder,
        on_text: Callable[[str], None],
        on_token: Callable[[int, Any], None] | None,
        lens: LensRecorder | None = None,
        stop_strings: Sequence[str] = (),
    ) -> None:
        self._decoder = decoder
        self._on_text = on_text
        self._on_token = on_token
        self._lens = lens
        self._stops = StopStringFilter(stop_strings)
        self._prompt_seen = False
        self.first_token_at: float | None = None
        self.pieces: list[str] = []
        self.busy_seconds = 0.0  # time spent here: decoding and the callbacks

    @property
    def stop_string_seen(self) -> bool:
        return self._stops.seen

    @property
    def text(self) -> str:
        """The reply's text so far, as shown."""
        return "".join(self.pieces)

    def put(self, value: Any) -> None:
        if not self._prompt_seen:  # generate() first hands over the prompt
            self._prompt_seen = True
            return
        start = time.perf_counter()
        if self.first_token_at is None:
            self.first_token_at = start
        for token_id in value.reshape(-1).tolist():
            if self._lens is not None:
                self._lens.on_sampled(token_id)
            if self._on_token is not None:
                self._on_token(token_id, None)
            self._take(self._decoder.push(token_id))
        self.busy_seconds += time.perf_counter() - start

    def _take(self, piece: str) -> None:
        self._emit(self._stops.push(piece))

    def _emit(self, piece: str) -> None:
        if piece:
            self.pieces.append(piece)
            if self._lens is not None:
                self._lens.on_piece(piece)
            self._on_text(piece)

    def end(self) -> None:
        self._take(self._decoder.flush())
        self._emit(self._stops.flush())


class StopOnEvent:
    """Stopping criterion that ends generation right after the current token."""

    def __init__(self, event: threading.Event) -> None:
        self._event = event

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        stop = self._event.is_set()
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


class StopOnText:
    """Stopping criterion: the streamer saw a stop string."""

    def __init__(self, streamer: ReplyStreamer) -> None:
        self._streamer = streamer

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        stop = self._streamer.stop_string_seen
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)
