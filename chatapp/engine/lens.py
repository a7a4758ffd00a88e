"""The probability lens: what each sampling stage did to the next-token table.

The stages are the very ``LogitsProcessor`` objects transformers builds for a
``GenerationConfig`` (through the function ``generate`` itself calls, see
``framework_internals.logits_processors``), applied one at a time so each stage's distribution can be recorded.  While the
lens records, ``generate`` runs with every sampling option neutral and one processor,
``LensPipeline``, that applies those stages in order: the token is drawn from exactly
the final distribution shown.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from chatapp.engine import framework_internals as internals
from chatapp.engine.sampling import survivor_ids
from chatapp.engine.types import Candidate, StepRecord

__all__ = ["LensPipeline", "LensRecorder", "analyze_step", "analyze_steps"]

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


# Stages whose effect on one row depends on that row's scores alone (and, for the
# repetition penalty, on which tokens its context holds, not where or how often): they can
# run over many steps at once, each row given its own context padded by repeating its
# last token. Any other stage (no-repeat-n-gram, say) runs row by row.
_ROW_WISE = {
    "RepetitionPenaltyLogitsProcessor",
    "TemperatureLogitsWarper",
    "TopKLogitsWarper",
    "TopPLogitsWarper",
    "SurvivorTopP",
    "MinPLogitsWarper",
    "TypicalLogitsWarper",
    "EpsilonLogitsWarper",
    "EtaLogitsWarper",
}


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
    kept: list[tuple[Any, Any]] = []
    scores, records = analyze_steps(
        index,
        input_ids,
        [input_ids.shape[-1]],
        logits,
        processors,
        tokenizer,
        top_n,
        check_mass=check_mass,
        keep=kept,
    )
    return scores, records[0], kept


def analyze_steps(
    first: int,
    context: Any,
    ends: list[int],
    logits: Any,
    processors: Any,
    tokenizer: Any,
    top_n: int = 10,
    drawn: list[int] | None = None,
    check_mass: bool = False,
    keep: list[tuple[Any, Any]] | None = None,
) -> tuple[Any, list[StepRecord]]:
    """Steps ``first``, ``first + 1``, … at once: row r of ``logits`` (rows x vocab) is
    the step whose context is ``context[:, :ends[r]]``. Returns (final scores, records).

    With ``drawn`` (a token per row), each record gets its drawn token. With ``keep``
    (one row only), each stage's (scores, logsumexp) is appended to it, for
    ``add_sampled`` once the token is known.
    """
    import torch

    rows = logits.shape[0]
    scores = logits.float()
    width = max(ends)
    # Row r's context, padded by repeating its last token (see _ROW_WISE).
    positions = torch.arange(width, device=context.device)
    limits = torch.tensor(ends, device=context.device).unsqueeze(1) - 1
    row_ids = context[0, torch.minimum(positions.unsqueeze(0), limits)]
    raw_lse = torch.logsumexp(scores, dim=-1, keepdim=True)
    top_ids = torch.topk(scores, top_n, dim=-1).indices
    picks = (
        top_ids
        if drawn is None
        else torch.cat([top_ids, torch.tensor(drawn, device=scores.device).unsqueeze(1)], dim=1)
    )
    stages = ["raw"]
    probs = [(scores.gather(1, picks) - raw_lse).exp()]
    survivors = [[int(scores.shape[-1])] * rows]
    masses = [(scores - raw_lse).exp().sum(-1)] if check_mass else []
    entropy_before = _entropy_bits(scores, raw_lse)
    if keep is not None:
        keep.append((scores, raw_lse))
    # Filters only ever remove tokens, so once one has run, later stages are measured over
    # each row's survivors alone (``alive``: ids, padded with removed ones where a row
    # has fewer): a few dozen entries instead of the whole vocabulary.
    alive: Any = None
    lse, subset = raw_lse, scores
    for processor in processors:
        if type(processor).__name__ in _ROW_WISE:
            scores = _for_rows(processor, rows)(row_ids, scores)
        else:
            scores = torch.cat(
                [processor(context[:, : ends[r]], scores[r : r + 1]) for r in range(rows)]
            )
        stages.append(stage_name(processor))
        if alive is None and stages[-1] not in _NON_FILTERS:
            alive, valid = survivor_ids(scores)
            alive = alive.clamp(max=scores.shape[-1] - 1)
        if alive is None:
            lse = torch.logsumexp(scores, dim=-1, keepdim=True)
            survivors.append(survivors[-1])
        else:
            subset = scores.gather(1, alive).masked_fill(~valid, float("-inf"))
            lse = torch.logsumexp(subset, dim=-1, keepdim=True)
            survivors.append(torch.isfinite(subset).sum(-1).tolist())
        probs.append((scores.gather(1, picks) - lse).exp())
        if check_mass:
            masses.append((scores - lse).exp().sum(-1))
        if keep is not None:
            keep.append((scores, lse))
    # The last stage's distribution: the whole row, or its survivors once a filter ran.
    entropy_after = _entropy_bits(scores if alive is None else subset, lse)
    table = torch.stack(probs, dim=-1).tolist()  # rows x picks x stages
    top = top_ids.tolist()
    mass_rows = torch.stack(masses, dim=-1).tolist() if check_mass else [[]] * rows
    records = []
    for r in range(rows):
        record = StepRecord(
            index=first + r,
            stages=list(stages),
            candidates=[
                Candidate(tid, readable_token(tokenizer, tid), table[r][c])
                for c, tid in enumerate(top[r])
            ],
            survivors=[int(stage[r]) for stage in survivors],
            entropy_before=entropy_before[r],
            entropy_after=entropy_after[r],
            mass=mass_rows[r],
        )
        if drawn is not None:
            _mark_drawn(record, int(drawn[r]), table[r][top_n], tokenizer)
        records.append(record)
    return scores, records


def _for_rows(processor: Any, rows: int) -> Any:
    """``processor`` for ``rows`` rows of one context: the repetition penalty's per-row
    prompt padding (one row's, from ``generate``) is repeated for each."""
    ignore = getattr(processor, "prompt_ignore_length", None)
    if rows == 1 or ignore is None or isinstance(ignore, int) or ignore.shape[0] == rows:
        return processor
    rowed = copy.copy(processor)
    rowed.prompt_ignore_length = ignore.expand(rows)
    return rowed


def _entropy_bits(scores: Any, lse: Any) -> list[float]:
    """Each row's entropy in bits, its probabilities ``exp(scores - lse)`` (removed
    tokens, at -inf, weigh nothing)."""
    import torch

    probs = (scores - lse).exp()
    # H = lse - sum(p * score), one pass; a row with -inf scores (0 * -inf) is summed again.
    nats = lse[:, 0] - torch.linalg.vecdot(probs, scores)
    bad = torch.isnan(nats)
    if bool(bad.any()):
        terms = torch.where(probs[bad] > 0, probs[bad] * (scores[bad] - lse[bad]), 0.0)
        nats[bad] = -terms.sum(-1)
    return [max(0.0, value / _LOG2) for value in nats.tolist()]


def add_sampled(
    record: StepRecord, token_id: int, kept: list[tuple[Any, Any]], tokenizer: Any
) -> None:
    """Mark the drawn token (adding its row if it was not among the top candidates)."""
    _mark_drawn(
        record,
        int(token_id),
        lambda: [float((s[0, token_id] - lse[0, 0]).exp()) for s, lse in kept],
        tokenizer,
    )


def _mark_drawn(
    record: StepRecord,
    token_id: int,
    probs: list[float] | Callable[[], list[float]],
    tokenizer: Any,
) -> None:
    """Mark ``token_id`` as the drawn token, adding its row (``probs``: a probability per
    stage, or what computes them when needed) when it is not among the top candidates."""
    record.sampled_id = token_id
    if record.sampled is None:
        row = probs() if callable(probs) else probs
        record.candidates.append(Candidate(token_id, readable_token(tokenizer, token_id), row))
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
