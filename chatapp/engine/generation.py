"""Generating one reply: the prompt fitted to the window, the kept KV cache reused, a long
prompt prefilled in chunks, then ``generate`` with the sampling stages, the lens and the
stop checks."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from chatapp.engine import framework_internals as internals
from chatapp.engine.decoding import IncrementalDecoder
from chatapp.engine.lens import LensPipeline, LensRecorder
from chatapp.engine.model_parts import ModelParts
from chatapp.engine.sampling import DrawAmongSurvivors
from chatapp.engine.streaming import ReplyStreamer, StopOnEvent, StopOnText
from chatapp.engine.types import FinishReason, Message, ReplyStats
from chatapp.params import PARAMS, SamplingParams

TextCallback = Callable[[str], None]
TokenCallback = Callable[[int, Any], None]


def generate_reply(
    engine: ModelParts,
    messages: Sequence[Message],
    params: SamplingParams,
    on_text: TextCallback,
    on_token: TokenCallback | None,
    logits_processor: Any,
    lens: LensRecorder | None,
    cancel: threading.Event,
) -> ReplyStats:
    """One reply from ``engine``'s model (the caller holds the engine): the prompt fitted
    to the window, the kept KV cache reused, the rest prefilled in chunks, then
    ``generate`` with the stages (through the lens when it records) and ``cancel``."""
    import torch
    from transformers import LogitsProcessorList, StoppingCriteriaList

    start = time.perf_counter()
    plan = engine.plan(messages, params)
    ids = plan.prompt_ids
    if plan.clipped:
        params = params.replace(max_new_tokens=plan.max_new_tokens)
    input_ids = torch.tensor([ids], dtype=torch.long, device=engine.model.device)
    streamer = ReplyStreamer(
        IncrementalDecoder(engine.tokenizer), on_text, on_token, lens, engine.stop_strings
    )
    # Sampling always runs from a known seed, kept with the reply, so any reply can
    # be drawn again: the user's, or a fresh one when none was set.
    seed = None
    if params.do_sample:
        seed = params.seed if params.seed is not None else secrets.randbelow(2**31)

    def stats(new_ids: list[int], reason: FinishReason, reused: int) -> ReplyStats:
        elapsed = time.perf_counter() - start
        first = streamer.first_token_at
        return ReplyStats(
            prompt_tokens=len(ids),
            new_tokens=len(new_ids),
            time_to_first_token=(first - start) if first is not None else elapsed,
            elapsed=elapsed,
            finish_reason=reason,
            text=streamer.text,
            token_ids=new_ids,
            streaming_seconds=streamer.busy_seconds,
            reply_ids=reply_ids(engine, new_ids, streamer),
            reused_tokens=reused,
            left_out=plan.left_out,
            window=plan.window,
            max_new_tokens=params.max_new_tokens,
            clipped=plan.clipped,
            seed=seed,
        )

    cache, reused = engine.kv_cache.for_prompt(ids)
    with torch.inference_mode(), internals.quiet():
        # Long prompts are evaluated here, in chunks, so a stop is noticed between them.
        prefill_to = engine.prefill.end(len(ids), reused)
        if not engine.prefill.run(input_ids, cache, reused, prefill_to, cancel):
            engine.kv_cache.keep(cache, ids)
            return stats([], "stopped", reused)
        engine.kv_cache.take_snapshot(cache, ids, prefill_to)
        if seed is not None:
            torch.manual_seed(seed)
        config = engine.generation_config(params)
        if engine.compile_config is not None:
            config.compile_config = engine.compile_config
        extra: dict[str, Any] = {}
        survivors = engine.survivor_sampling and params.do_sample
        if lens is not None or survivors:
            # generate runs with every stage neutral; the stages run here, in order
            # (through the lens when it records), then the draw among their survivors.
            stages = engine.sampling_stages(config, input_ids)
            if lens is not None:
                lens.tokenizer = engine.tokenizer
                stages = [LensPipeline(stages, lens)]
            processors = [*stages, *(logits_processor or [])]
            if survivors:
                processors.append(DrawAmongSurvivors())
                config = lens_config(engine, params.replace(do_sample=False))
            else:
                config = lens_config(engine, params)
            extra["logits_processor"] = LogitsProcessorList(processors)
            if engine.compile_config is not None:
                config.compile_config = engine.compile_config
        elif logits_processor is not None:
            extra["logits_processor"] = logits_processor
        criteria: list[Any] = [StopOnEvent(cancel)]
        if engine.stop_strings:
            criteria.append(StopOnText(streamer))
        with internals.deferred_stop_check(engine.defer_stop_check):
            output = engine.model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                past_key_values=cache,
                generation_config=config,
                streamer=streamer,
                stopping_criteria=StoppingCriteriaList(criteria),
                **extra,
            )
    new_ids = output[0, len(ids) :].tolist()
    engine.kv_cache.keep(cache, ids + new_ids)
    engine.kv_cache.take_snapshot(cache, ids + new_ids, len(ids) - 1)  # while croppable
    if cancel.is_set():
        reason: FinishReason = "stopped"
    elif streamer.stop_string_seen or (new_ids and new_ids[-1] in config_eos(config)):
        reason = "eos"
    else:
        reason = "length"
    return stats(new_ids, reason, reused)


def reply_ids(engine: ModelParts, new_ids: list[int], streamer: ReplyStreamer) -> list[int] | None:
    """The generated ids that spell the reply's text (no stop token or stop string)."""
    ids = list(new_ids)
    while ids and ids[-1] in engine.stop_ids:
        ids.pop()
    if not streamer.stop_string_seen:
        return ids
    # Cut where the text ends; if a token straddles the stop string, re-tokenise.
    for end in range(len(ids), -1, -1):
        text = engine.tokenizer.decode(ids[:end], skip_special_tokens=True)
        if text == streamer.text:
            return ids[:end]
        if len(text) < len(streamer.text):
            return None
    return None


def config_eos(config: Any) -> set[int]:
    """The end-of-sequence ids of a generation config, as a set."""
    eos = config.eos_token_id
    if eos is None:
        return set()
    return {int(eos)} if isinstance(eos, int) else {int(e) for e in eos}


def lens_config(engine: ModelParts, params: SamplingParams) -> Any:
    """Every stage at its spec's neutral value: the lens pipeline applies the real ones."""
    neutral = {spec.name: spec.neutral for spec in PARAMS if spec.neutral is not None}
    return engine.generation_config(params.replace(**neutral))
