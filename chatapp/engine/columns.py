"""Several replies to one prompt in one batch: the compare columns and the sweep's samples.

The shared prompt is evaluated once, at batch size one, exactly as a single reply
evaluates it. Its KV cache is then copied once per row, and each decode step is one
forward pass over every row still going: the weights are read once per step for all of
them (on the CPU, memory-bound, two rows cost little more than one).

Each row has its own sampling stages (built as a single reply builds them, from its own
parameters and over its own ids), and its own random generator seeded with its own seed.
A row's draw is made as a single reply makes it: ``torch.multinomial`` over the softmax of
the processed scores (over the survivors when the engine samples that way), so a row
gives token for token the reply a single request with its parameters and seed gives,
as far as the batched forward pass gives the same scores (float32: the same; bf16: a
near-tie can flip, which ``bench/compare.py`` counts).
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from chatapp.engine import framework_internals as internals
from chatapp.engine.columns_each import row_seeds
from chatapp.engine.decoding import IncrementalDecoder
from chatapp.engine.generation import config_eos, reply_ids
from chatapp.engine.model_parts import ModelParts
from chatapp.engine.sampling import draw_token
from chatapp.engine.streaming import ReplyStreamer
from chatapp.engine.types import FinishReason, Message, ReplyStats
from chatapp.params import SamplingParams

ColumnText = Callable[[int, str], None]  # (row, piece)


@dataclass
class _Row:
    """One reply of the batch while it is generated."""

    index: int
    params: SamplingParams
    seed: int | None
    stages: Any
    eos: set[int]
    streamer: ReplyStreamer
    generator: Any
    survivors: bool
    ids: list[int] = field(default_factory=list)  # generated so far
    logprobs: list[float] = field(default_factory=list)  # raw log-probability of each
    reason: FinishReason | None = None
    ended_at: float = 0.0


def generate_columns(
    engine: ModelParts,
    messages: Sequence[Message],
    columns: Sequence[SamplingParams],
    on_text: ColumnText,
    cancel: threading.Event,
    seeds: Sequence[int | None] | None = None,
    logprobs: bool = False,
) -> list[ReplyStats]:
    """One reply per entry of ``columns`` to the same ``messages``, in one batch (the
    caller holds the engine). ``seeds``: each row's seed (default ``row_seeds``).
    ``logprobs``: keep each drawn token's log-probability under the raw scores."""
    import torch

    start = time.perf_counter()
    if not columns:
        return []
    seeds = list(seeds) if seeds is not None else row_seeds(columns)
    longest = max(columns, key=lambda p: p.max_new_tokens)
    plan = engine.plan(messages, longest)
    ids = plan.prompt_ids
    device = engine.model.device
    prompt = torch.tensor([ids], dtype=torch.long, device=device)
    rows: list[_Row] = []
    for index, params in enumerate(columns):
        if plan.clipped:
            params = params.replace(max_new_tokens=min(params.max_new_tokens, plan.max_new_tokens))
        config = engine.generation_config(params)
        generator = None
        if params.do_sample:
            generator = torch.Generator(device=device)
            generator.manual_seed(int(seeds[index] or 0))
        streamer = ReplyStreamer(
            IncrementalDecoder(engine.tokenizer),
            partial(on_text, index),
            None,
            None,
            engine.stop_strings,
        )
        streamer.put(prompt)  # the prompt, which a streamer is handed first
        rows.append(
            _Row(
                index,
                params,
                seeds[index],
                engine.sampling_stages(config, prompt),
                config_eos(config),
                streamer,
                generator,
                engine.survivor_sampling and params.do_sample,
            )
        )

    kv = engine.kv_cache
    if kv.static is not None:  # the fast path's static cache serves single replies only
        cache, reused = kv.new(), 0
    else:
        cache, reused = kv.for_prompt(ids)
    first_at: float | None = None
    with torch.inference_mode(), internals.quiet():
        prefill_to = engine.prefill.end(len(ids), reused)
        stopped = not engine.prefill.run(prompt, cache, reused, prefill_to, cancel)
        if not stopped:
            out = engine.model(
                input_ids=prompt[:, prefill_to:], past_key_values=cache, use_cache=True
            )
            logits = out.logits[:, -1, :].float()
            if kv.static is None:
                kv.keep(cache, ids)
                kv.take_snapshot(cache, ids, prefill_to)
            batch = copy.deepcopy(cache)
            batch.batch_repeat_interleave(len(rows))
            logits = logits.expand(len(rows), -1)
        live = list(rows)
        while not stopped and live:
            if cancel.is_set():
                break
            chosen = []
            for position, row in enumerate(live):
                token = _next_token(row, prompt, logits[position : position + 1], logprobs)
                row.ids.append(token)
                chosen.append(token)
                if first_at is None:
                    first_at = time.perf_counter()
                row.streamer.put(torch.tensor([token]))
                reason = _ended(row, token)
                if reason is not None:
                    row.reason, row.ended_at = reason, time.perf_counter()
                    row.streamer.end()
            going = [i for i, row in enumerate(live) if row.reason is None]
            if not going or cancel.is_set():
                break
            if len(going) < len(live):
                batch.batch_select_indices(torch.tensor(going, device=device))
                chosen = [chosen[i] for i in going]
                live = [live[i] for i in going]
            step = torch.tensor(chosen, dtype=torch.long, device=device).unsqueeze(-1)
            out = engine.model(input_ids=step, past_key_values=batch, use_cache=True)
            logits = out.logits[:, -1, :].float()
    now = time.perf_counter()
    stats = []
    for row in rows:
        if row.reason is None:
            row.reason, row.ended_at = "stopped", now
            row.streamer.end()
        elapsed = row.ended_at - start
        stats.append(
            ReplyStats(
                prompt_tokens=len(ids),
                new_tokens=len(row.ids),
                time_to_first_token=(first_at - start) if first_at is not None else elapsed,
                elapsed=elapsed,
                finish_reason=row.reason,
                text=row.streamer.text,
                token_ids=list(row.ids),
                streaming_seconds=row.streamer.busy_seconds,
                reply_ids=reply_ids(engine, row.ids, row.streamer),
                reused_tokens=reused,
                left_out=plan.left_out,
                window=plan.window,
                max_new_tokens=row.params.max_new_tokens,
                clipped=plan.clipped,
                seed=row.seed,
                logprobs=list(row.logprobs) if logprobs else None,
            )
        )
    return stats


def _next_token(row: _Row, prompt: Any, raw: Any, logprobs: bool) -> int:
    """The row's next token from its raw scores (1 x vocab, float32), drawn as a single
    reply draws it."""
    import torch

    ids = torch.cat(
        [prompt, torch.tensor([row.ids], dtype=torch.long, device=prompt.device)], dim=-1
    )
    scores = row.stages(ids, raw)
    if not row.params.do_sample:
        token = int(torch.argmax(scores, dim=-1)[0])
    elif row.survivors:
        token = draw_token(scores[0], row.generator)
    else:
        probs = torch.softmax(scores, dim=-1)
        token = int(torch.multinomial(probs, 1, generator=row.generator)[0, 0])
    if logprobs:
        row.logprobs.append(float(torch.log_softmax(raw[0], dim=-1)[token]))
    return token


def _ended(row: _Row, token: int) -> FinishReason | None:
    if token in row.eos or row.streamer.stop_string_seen:
        return "eos"
    if len(row.ids) >= row.params.max_new_tokens:
        return "length"
    return None
