"""A fake token source with the engine's interface, for fast UI tests and the UI benchmark.

It produces a fixed list of text pieces at a set rate; everything else (stop, busy,
stats, finish reasons, lens recording) behaves as ``LocalEngine`` does, with made-up
next-token tables for the lens.  For tests and snapshots it can
hold a reply mid-stream (``pause_after``) and report the nominal timings of its rate
instead of the measured ones (``nominal_stats``), so a screen can be drawn the same way
every time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from chatapp.engine.chat_format import ChatFormat
from chatapp.engine.columns_each import stream_each
from chatapp.engine.context import ContextPlan, plan_context
from chatapp.engine.divergence import StagesUnknown
from chatapp.engine.lens import LensRecorder
from chatapp.engine.protocol import describe_loaded
from chatapp.engine.types import (
    NO_INT8_COPY,
    Candidate,
    Capabilities,
    EngineBusy,
    Int8Status,
    Message,
    ReplyStats,
    StepRecord,
)
from chatapp.params import PARAMS, SamplingParams


@dataclass
class FakeLoaded:
    name: str = "fake"
    quant: str = "none"
    dtype: str = "none"
    device: str = "cpu"
    load_seconds: float = 0.0


def _made_up_step(index: int, piece: str) -> StepRecord:
    """A plausible, repeatable next-token table for the fake source's token ``index``."""
    drawn = 0.95 - 0.85 * ((index * 7) % 10) / 9  # confident and unlikely tokens, mixed
    rest = 1.0 - drawn
    candidates = [
        Candidate(index, piece.replace(" ", "␣"), [drawn * 0.8, drawn]),
        Candidate(10_000 + index, f"alt{index}a", [rest * 0.6, rest * 0.7]),
        Candidate(20_000 + index, f"alt{index}b", [rest * 0.4, rest * 0.3]),
    ]
    return StepRecord(
        index=index,
        stages=["raw", "temperature"],
        candidates=candidates,
        survivors=[1000, 1000],
        entropy_before=2.0,
        entropy_after=1.5,
        sampled_id=index,
        sampled_prob=drawn,
        piece=piece,
    )


class FakeTokenSource(StagesUnknown):
    """Streams ``pieces`` (one per 'token') at ``tokens_per_second``."""

    def __init__(
        self,
        pieces: Sequence[str] | None = None,
        tokens_per_second: float = 500.0,
        *,
        pause_after: int | None = None,
        nominal_stats: bool = False,
        capabilities: Capabilities | None = None,
        concurrent: bool = False,
    ) -> None:
        self.pieces = list(pieces) if pieces is not None else [f"word{i} " for i in range(20)]
        self.tokens_per_second = tokens_per_second
        self.pause_after = pause_after
        self.nominal_stats = nominal_stats
        self.paused = threading.Event()  # set while a reply waits at ``pause_after``
        self._resume = threading.Event()
        self.loaded = FakeLoaded()
        self.calls: list[tuple[list[Message], SamplingParams]] = []
        self.chat_format: ChatFormat = "turns"
        self.preamble = ""
        self.context_window = 4096
        self.resets = 0
        self.replays = 0
        self.warnings: list[str] = []
        self.capabilities = capabilities or Capabilities(
            kind="local",
            supported=frozenset(spec.name for spec in PARAMS),
            lens_note="made-up tables (fake source)",
            what_if=False,
            concurrent=concurrent,
        )
        self._stop = threading.Event()
        self._lock = threading.Lock()

    @property
    def model_name(self) -> str:
        return self.loaded.name

    def describe(self) -> str:
        return describe_loaded(self.loaded, self.chat_format, self.context_window)

    def engine_label(self) -> str:
        return f"fake · {self.chat_format}"

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    def stop(self) -> None:
        self._stop.set()

    def reset(self) -> None:
        """Forget the conversation (the real engine frees its KV cache)."""
        self.resets += 1

    def int8_status(self) -> Int8Status:
        """The fake source makes no int8 copy: nothing pending."""
        return NO_INT8_COPY

    def encode(self, messages: Sequence[Message]) -> list[int]:
        """One made-up token per word."""
        return [0] * sum(len(m.content.split()) + 2 for m in messages)

    def plan(self, messages: Sequence[Message], params: SamplingParams) -> ContextPlan:
        return plan_context(self.encode, messages, params.max_new_tokens, self.context_window)

    def replay_lens(
        self,
        messages: Sequence[Message],
        token_ids: Sequence[int],
        params: SamplingParams,
        top_n: int = 10,
        text: str | None = None,
    ) -> list[StepRecord]:
        """The made-up steps of a finished reply (the real engine recomputes them)."""
        self.replays += 1
        return [_made_up_step(i, self.pieces[i]) for i in token_ids if i < len(self.pieces)]

    def resume(self) -> None:
        """Let a reply held at ``pause_after`` go on."""
        self._resume.set()

    def _hold(self) -> None:
        self.paused.set()
        while not self._resume.wait(0.01) and not self._stop.is_set():
            pass
        self.paused.clear()

    def stream_columns(
        self,
        messages: Sequence[Message],
        columns: Sequence[SamplingParams],
        on_text: Callable[[int, str], None] = lambda row, piece: None,
        *,
        seeds: Sequence[int | None] | None = None,
        logprobs: bool = False,
        wait: bool = False,
        cancel: threading.Event | None = None,
    ) -> list[ReplyStats]:
        """One reply per entry of ``columns``: a request each (``columns_each``)."""
        return stream_each(
            self.stream_reply,
            messages,
            columns,
            on_text,
            seeds,
            cancel,
            self.capabilities.concurrent,
        )

    def stream_reply(
        self,
        messages: Sequence[Message],
        params: SamplingParams,
        on_text: Callable[[str], None] = lambda piece: None,
        *,
        on_token: Any = None,
        logits_processor: Any = None,
        lens: LensRecorder | None = None,
        wait: bool = False,
        cancel: threading.Event | None = None,
    ) -> ReplyStats:
        # A concurrent source serves every request at once, each with its own stop flag.
        lock = threading.Lock() if self.capabilities.concurrent else self._lock
        if not lock.acquire(blocking=wait):
            raise EngineBusy("A reply is already being generated; stop it (Esc) or wait.")
        try:
            stop = self._stop = cancel if cancel is not None else threading.Event()
            plan = self.plan(messages, params)
            if plan.clipped:
                params = params.replace(max_new_tokens=plan.max_new_tokens)
            self.calls.append((list(plan.messages), params))  # what is really sent
            start = time.perf_counter()
            first = None
            produced = 0
            delay = 1.0 / self.tokens_per_second
            limit = min(len(self.pieces), params.max_new_tokens)
            reason = "length" if limit < len(self.pieces) else "eos"
            if stop.is_set():
                limit, reason = 0, "stopped"
            for i in range(limit):
                if i == self.pause_after:
                    self._hold()
                    start = time.perf_counter() - i * delay  # the pause is not pacing
                    if stop.is_set():
                        reason = "stopped"
                        break
                target = start + (i + 1) * delay
                pause = target - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                if first is None:
                    first = time.perf_counter()
                produced += 1
                if on_token is not None:
                    on_token(i, None)
                if lens is not None:
                    lens.add_step(_made_up_step(i, self.pieces[i]))
                on_text(self.pieces[i])
                if stop.is_set():
                    reason = "stopped"
                    break
            elapsed = time.perf_counter() - start
            if self.nominal_stats:
                first, start, elapsed = delay, 0.0, produced * delay
            return ReplyStats(
                prompt_tokens=plan.used,
                left_out=plan.left_out,
                window=plan.window,
                max_new_tokens=params.max_new_tokens,
                clipped=plan.clipped,
                new_tokens=produced,
                time_to_first_token=(first or time.perf_counter()) - start,
                elapsed=elapsed,
                finish_reason=reason,  # type: ignore[arg-type]
                text="".join(self.pieces[:produced]),
                token_ids=list(range(produced)),
                reply_ids=list(range(produced)),
                seed=params.seed if params.seed is not None else (7 if params.do_sample else None),
            )
        finally:
            lock.release()
