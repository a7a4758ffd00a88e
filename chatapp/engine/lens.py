"""The probability lens: what each sampling stage did to the next-token table.

The stages are the very ``LogitsProcessor`` objects transformers builds for a
``GenerationConfig`` (through the function ``generate`` itself calls, see
``framework_internals.logits_processors``), applied one at a time so each stage's distribution can be recorded.  While the
lens records, ``generate`` runs with every sampling option neutral and one processor,
``LensPipeline``, that applies those stages in order: the token is drawn from exactly
the final distribution shown.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from typing import Any

from chatapp.engine import framework_internals as internals
from chatapp.engine.types import Candidate, StepRecord

__all__ = ["LensPipeline", "LensRecorder", "analyze_step"]

STAGE_NAMES = {
    "RepetitionPenaltyLogitsProcessor": "repetition_penalty",
    "NoRepeatNGramLogitsProcessor": "no_repeat_ngram",
    "TemperatureLogitsWarper": "temperature",
    "TopKLogitsWarper": "top_k",
    "TopPLogitsWarper": "top_p",
    "SurvivorTopP": "top_p",
    "MinPLogitsWarper": "min_p",
    "TypicalLogitsWarper": "typical_p",
}
_LOG2 = math.log(2)
# Stages that reshape the table but never remove a token from it.
_NON_FILTERS = {"repetition_penalty", "temperature"}


def readable_token(tokenizer: Any, token_id: int) -> str:
    """A token shown so that whitespace and byte tokens are visible."""
    text = tokenizer.convert_ids_to_tokens(int(token_id))
    if text is None:
        return f"<{token_id}>"
    return str(text).replace("▁", "␣").replace(" ", "␣").replace("\n", "⏎").replace("\t", "⇥")


def build_processors(model: Any, generation_config: Any, input_ids: Any) -> Any:
    """The logits processors ``generate`` would build for this config (same function)."""
    return internals.logits_processors(model, generation_config, input_ids)


def stage_name(processor: Any) -> str:
    return STAGE_NAMES.get(type(processor).__name__, type(processor).__name__)


def analyze_step(
    index: int,
    input_ids: Any,
    logits: Any,
    processors: Any,
    tokenizer: Any,
    top_n: int = 10,
    check_mass: bool = False,
) -> tuple[Any, StepRecord, list[tuple[Any, Any]]]:
    """Apply each stage to ``logits`` (1 x vocab).

    Returns (final scores, record, [(scores, logsumexp) per stage]); a token's
    probability after stage i is ``exp(scores_i[token] - logsumexp_i)``.
    """
    import torch

    scores = logits.float()
    stages = ["raw"]
    kept = [(scores, torch.logsumexp(scores, dim=-1, keepdim=True))]
    survivors = [int(scores.shape[-1])]
    # Filters only ever remove tokens, so once one has run, later stages are measured
    # over its survivors alone: a few dozen entries instead of the whole vocabulary.
    alive: Any = None
    for processor in processors:
        scores = processor(input_ids, scores)
        stages.append(stage_name(processor))
        if alive is None and stages[-1] not in _NON_FILTERS:
            alive = torch.isfinite(scores[0]).nonzero().squeeze(-1)
        if alive is None:
            lse = torch.logsumexp(scores, dim=-1, keepdim=True)
            survivors.append(survivors[-1])
        else:
            subset = scores[0, alive]
            lse = torch.logsumexp(subset, dim=-1).reshape(1, 1)
            finite = torch.isfinite(subset)
            survivors.append(int(finite.sum()))
            alive = alive[finite]
        kept.append((scores, lse))
    raw, raw_lse = kept[0]
    top_ids = torch.topk(raw[0], top_n).indices
    stacked = torch.stack([(s[0, top_ids] - lse[0]).exp() for s, lse in kept]).T.tolist()
    candidates = [
        Candidate(tid, readable_token(tokenizer, tid), row)
        for tid, row in zip(top_ids.tolist(), stacked, strict=False)
    ]
    record = StepRecord(
        index=index,
        stages=stages,
        candidates=candidates,
        survivors=survivors,
        entropy_before=_entropy_bits(raw - raw_lse),
        entropy_after=_entropy_bits(
            (kept[-1][0] if alive is None else kept[-1][0][:, alive]) - kept[-1][1]
        ),
    )
    if check_mass:
        record.mass = [float((s - lse).exp().sum()) for s, lse in kept]
    return scores, record, kept


def _entropy_bits(logprobs: Any) -> float:
    import torch

    finite = logprobs[torch.isfinite(logprobs)]
    return max(0.0, float(-(finite.exp() * finite).sum()) / _LOG2)


def add_sampled(
    record: StepRecord, token_id: int, kept: list[tuple[Any, Any]], tokenizer: Any
) -> None:
    """Mark the drawn token (adding its row if it was not among the top candidates)."""
    record.sampled_id = int(token_id)
    if record.sampled is None:
        probs = [float((s[0, token_id] - lse[0, 0]).exp()) for s, lse in kept]
        record.candidates.append(
            Candidate(int(token_id), readable_token(tokenizer, token_id), probs)
        )
    record.sampled_prob = record.sampled.probs[-1] if record.sampled else None


class LensRecorder:
    """Collects a ``StepRecord`` per generated token while a reply streams.

    ``active`` may be switched on mid-reply (the lens opened during a reply): steps
    from then on are recorded, each with its true position in ``index``.  While
    inactive, the stages are only applied, exactly as ``generate`` would apply them.
    """

    def __init__(self, top_n: int = 10, check_mass: bool = False, active: bool = True) -> None:
        self.top_n = top_n
        self.check_mass = check_mass
        self.active = active
        self.steps: list[StepRecord] = []
        self._step = 0  # tokens handed over so far (``on_sampled``)
        self._computed = 0  # steps whose stages have run (``record``)
        # Each computed step waits here for its token, oldest first (None: computed while
        # inactive). Usually one at a time; on CUDA's fast path generate hands each token
        # over a step late (the deferred stop check), so the next step is computed first,
        # and its very last step is computed but never handed over (and never kept).
        self._pending: deque[tuple[StepRecord, list[tuple[Any, Any]]] | None] = deque()
        self._last_recorded = False
        self._lock = threading.Lock()
        self.tokenizer: Any = None
        self.seconds = 0.0  # time spent in the stages (applying, and analysing when active)

    @property
    def complete(self) -> bool:
        """Every generated token so far has its step recorded."""
        return len(self.steps) == self._step

    def record(self, input_ids: Any, logits: Any, processors: Any) -> Any:
        index = self._computed
        self._computed += 1
        if not self.active:
            start = time.perf_counter()
            scores = logits
            for processor in processors:
                scores = processor(input_ids, scores)
            self._pending.append(None)
            self.seconds += time.perf_counter() - start
            return scores
        start = time.perf_counter()
        scores, record, kept = analyze_step(
            index, input_ids, logits, processors, self.tokenizer, self.top_n, self.check_mass
        )
        self._pending.append((record, kept))
        self.seconds += time.perf_counter() - start
        return scores

    def on_sampled(self, token_id: int) -> None:
        self._step += 1
        pending = self._pending.popleft() if self._pending else None
        self._last_recorded = pending is not None
        if pending is None:
            return
        record, kept = pending
        add_sampled(record, token_id, kept, self.tokenizer)
        with self._lock:
            self.steps.append(record)

    def add_step(self, record: StepRecord) -> None:
        """Count one generated token whose step was computed elsewhere (a fake source, or
        a server's log-probabilities); it is kept while the recorder is active."""
        self._step += 1
        self._last_recorded = self.active
        if self.active:
            with self._lock:
                self.steps.append(record)

    def on_piece(self, piece: str) -> None:
        with self._lock:
            if self.steps and self._last_recorded:
                self.steps[-1].piece += piece


class LensPipeline:
    """The single logits processor used while recording: the real stages, in order."""

    def __init__(self, processors: Any, recorder: LensRecorder) -> None:
        self.processors = processors
        self.recorder = recorder

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        return self.recorder.record(input_ids, scores, self.processors)
