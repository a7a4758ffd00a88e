"""A fake token source with the engine's interface, for fast UI tests and the UI benchmark.

It produces a fixed list of text pieces at a set rate; everything else (stop, busy,
stats, finish reasons) behaves as ``LocalEngine`` does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from chatapp.engine.chat_format import Message
from chatapp.engine.local import EngineBusy, ReplyStats
from chatapp.params import SamplingParams


@dataclass
class FakeLoaded:
    name: str = "fake"
    quant: str = "none"
    dtype: str = "none"
    device: str = "cpu"
    load_seconds: float = 0.0


class FakeTokenSource:
    """Streams ``pieces`` (one per 'token') at ``tokens_per_second``."""

    def __init__(
        self, pieces: Sequence[str] | None = None, tokens_per_second: float = 500.0
    ) -> None:
        self.pieces = list(pieces) if pieces is not None else [f"word{i} " for i in range(20)]
        self.tokens_per_second = tokens_per_second
        self.loaded = FakeLoaded()
        self.calls: list[tuple[list[Message], SamplingParams]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    def stop(self) -> None:
        self._stop.set()

    def stream_reply(
        self,
        messages: Sequence[Message],
        params: SamplingParams,
        on_text: Callable[[str], None] = lambda piece: None,
        *,
        on_token: Any = None,
        logits_processor: Any = None,
        lens: Any = None,  # a fake source has no next-token tables to record
        wait: bool = False,
    ) -> ReplyStats:
        if not self._lock.acquire(blocking=wait):
            raise EngineBusy("A reply is already being generated; stop it (Esc) or wait.")
        try:
            self._stop.clear()
            self.calls.append((list(messages), params))
            start = time.perf_counter()
            first = None
            produced = 0
            delay = 1.0 / self.tokens_per_second
            limit = min(len(self.pieces), params.max_new_tokens)
            reason = "length" if limit < len(self.pieces) else "eos"
            for i in range(limit):
                target = start + (i + 1) * delay
                pause = target - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                if first is None:
                    first = time.perf_counter()
                produced += 1
                if on_token is not None:
                    on_token(i, None)
                on_text(self.pieces[i])
                if self._stop.is_set():
                    reason = "stopped"
                    break
            elapsed = time.perf_counter() - start
            return ReplyStats(
                prompt_tokens=sum(len(m.content.split()) for m in messages),
                new_tokens=produced,
                time_to_first_token=(first or time.perf_counter()) - start,
                elapsed=elapsed,
                finish_reason=reason,  # type: ignore[arg-type]
                text="".join(self.pieces[:produced]),
            )
        finally:
            self._lock.release()
