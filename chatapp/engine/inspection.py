"""The lens recomputed for a finished reply: one step under other values (what-if), or
every step from the reply's token ids (replay). Both run one forward pass over the prompt
and the reply, so nothing needs to be kept from the original generation."""

from __future__ import annotations

from collections.abc import Sequence

from chatapp.engine import framework_internals as internals
from chatapp.engine.decoding import IncrementalDecoder
from chatapp.engine.divergence import Divergence, explain, first_step_apart
from chatapp.engine.lens import add_sampled, analyze_step, analyze_steps, readable_token
from chatapp.engine.model_parts import ModelParts
from chatapp.engine.sampling import survivor_stages
from chatapp.engine.types import Message, StepRecord
from chatapp.params import SamplingParams

# Positions whose full-vocabulary logits are held at once during a replay.
REPLAY_CHUNK = 64
# Steps that go through the stages together: a few megabytes a tensor, small enough to
# be reused by the allocator (a larger one is mapped afresh, and its pages faulted in,
# for every operation).
ANALYZE_ROWS = 8


def what_if_step(
    engine: ModelParts,
    messages: Sequence[Message],
    reply_ids: Sequence[int],
    step: int,
    params: SamplingParams,
    top_n: int,
    fitted_for: SamplingParams | None,
) -> StepRecord:
    """Step ``step`` of a finished reply under ``params``; the caller holds the engine."""
    import torch

    model, tokenizer = engine.model, engine.tokenizer
    fitted = engine.plan(messages, fitted_for or params).prompt_ids
    prompt = torch.tensor([fitted], dtype=torch.long, device=model.device)
    prefix = torch.tensor([list(reply_ids[:step])], dtype=torch.long, device=prompt.device)
    ids = torch.cat([prompt, prefix], dim=1)
    with torch.inference_mode():
        logits = model(input_ids=ids, logits_to_keep=1).logits[:, -1, :]
        processors = engine.sampling_stages(engine.generation_config(params), ids)
        _, record, logprobs = analyze_step(step, ids, logits, processors, tokenizer, top_n)
        add_sampled(record, int(reply_ids[step]), logprobs, tokenizer)
    record.what_if = params.summary()
    return record


def stage_trace(
    engine: ModelParts,
    messages: Sequence[Message],
    prefix_ids: Sequence[int],
    params: SamplingParams,
    tokens: Sequence[int],
) -> list[tuple[str, list[float]]]:
    """After the reply's ``prefix_ids``, each stage's probability of each of ``tokens``
    under ``params`` (raw first); the caller holds the engine."""
    import torch

    from chatapp.engine.lens import stage_name

    model = engine.model
    fitted = engine.plan(messages, params).prompt_ids
    ids = torch.tensor([fitted + list(prefix_ids)], dtype=torch.long, device=model.device)
    picks = torch.tensor(list(tokens), dtype=torch.long, device=model.device)
    with torch.inference_mode(), internals.quiet():
        scores = model(input_ids=ids, logits_to_keep=1).logits[:, -1, :].float()
        trace = [("raw", torch.softmax(scores, dim=-1)[0, picks].tolist())]
        for processor in engine.sampling_stages(engine.generation_config(params), ids):
            scores = processor(ids, scores)
            trace.append((stage_name(processor), torch.softmax(scores, dim=-1)[0, picks].tolist()))
    return trace


def replay_steps(
    engine: ModelParts,
    messages: Sequence[Message],
    token_ids: Sequence[int],
    params: SamplingParams,
    top_n: int,
    text: str | None,
) -> list[StepRecord]:
    """Every step's table for a finished reply; the caller holds the engine. The steps of
    each chunk of positions go through the stages together (``analyze_steps``)."""
    import torch

    model, tokenizer = engine.model, engine.tokenizer
    prompt = engine.plan(messages, params).prompt_ids  # as fitted to the window
    reply = [int(t) for t in token_ids]
    ids = torch.tensor([prompt + reply], dtype=torch.long, device=model.device)
    first = len(prompt) - 1  # this position's logits give the reply's first token
    # Top-p over each step's survivors: the same rule as transformers' filter, without
    # sorting the whole vocabulary for every step.
    processors = survivor_stages(engine.sampling_stages(engine.generation_config(params), ids))
    decoder = IncrementalDecoder(tokenizer)
    steps: list[StepRecord] = []
    cache = engine.kv_cache.new()
    with torch.inference_mode(), internals.quiet():
        position = 0
        while position < first + len(reply):
            stop = min(position + REPLAY_CHUNK, first if position < first else len(ids[0]) - 1)
            out = model(
                input_ids=ids[:, position:stop],
                past_key_values=cache,
                use_cache=True,
                cache_position=torch.arange(position, stop, device=ids.device),
                logits_to_keep=0 if position >= first else 1,
            )
            for start in range(max(position, first), stop, ANALYZE_ROWS):
                end = min(start + ANALYZE_ROWS, stop)
                step = start - first
                _, records = analyze_steps(
                    step,
                    ids,
                    [first + 1 + step + row for row in range(end - start)],
                    out.logits[0, start - position : end - position],
                    processors,
                    tokenizer,
                    top_n,
                    drawn=reply[step : step + end - start],
                )
                for offset, record in enumerate(records):
                    record.piece = decoder.push(reply[step + offset])
                    steps.append(record)
            position = stop
    if steps:
        steps[-1].piece += decoder.flush()
    if text is not None:
        clip_pieces(steps, len(text))
    return steps


def clip_pieces(steps: list[StepRecord], length: int) -> None:
    """Cut the steps' pieces so that together they are ``length`` characters long."""
    used = 0
    for step in steps:
        room = max(0, length - used)
        step.piece = step.piece[:room]
        used += len(step.piece)


def find_divergence(
    engine: ModelParts,
    messages: Sequence[Message],
    replies: tuple[Sequence[int], Sequence[int]],
    params: tuple[SamplingParams, SamplingParams],
    columns: tuple[int, int],
) -> Divergence | None:
    """``LocalEngine.divergence``; the caller holds the engine."""
    step = first_step_apart(*replies)
    if step is None:
        return None
    if step >= min(len(r) for r in replies):
        ended = columns[0] if len(replies[0]) <= step else columns[1]
        return Divergence(step, f"step {step + 1}: column {ended}'s reply had ended")
    drawn = [int(replies[0][step]), int(replies[1][step])]
    prefix = replies[0][:step]
    traces = (
        stage_trace(engine, messages, prefix, params[0], drawn),
        stage_trace(engine, messages, prefix, params[1], drawn),
    )
    labels = (
        readable_token(engine.tokenizer, drawn[0]),
        readable_token(engine.tokenizer, drawn[1]),
    )
    return explain(step, labels, columns, params, traces)
