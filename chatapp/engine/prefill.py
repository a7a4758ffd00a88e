"""A long prompt evaluated in chunks before ``generate`` runs, so that a stop is noticed
between them; on the CPU each chunk is sized from the speed of the last one."""

from __future__ import annotations

import threading
import time
from typing import Any

# Seconds between stop checks during a long prefill. Each chunk is a forward call of its
# own, and short ones cost prefill speed; a stop still ends a prefill within half a second.
PREFILL_SLICE = 0.3
FIRST_CHUNK = 256  # before any speed is measured, where the CPU computes the dtype natively
MIN_CHUNK, MAX_CHUNK = 32, 1024
# On a GPU a prompt of up to this many new tokens is evaluated in generate's own single
# pass, as raw generate does: a GPU's calls return before the work is done, so chunks
# sized by the clock would shrink for nothing and slow the prefill down.
GPU_CHUNK = 4096


def first_chunk(model: Any) -> int:
    """The prefill chunk: on a GPU, GPU_CHUNK for good; on the CPU a first one before any
    speed is measured (smallest where bf16 matmuls are emulated, and much slower)."""
    import torch

    if model.device.type != "cpu":
        return GPU_CHUNK
    from chatapp.engine.quantization import cpu_has_native_bf16

    if model.dtype == torch.bfloat16 and not cpu_has_native_bf16():
        return MIN_CHUNK
    return FIRST_CHUNK


class ChunkedPrefill:
    """Evaluates the part of a prompt that ``generate`` would not, chunk by chunk."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.chunk = first_chunk(model)

    def end(self, prompt_tokens: int, reused: int) -> int:
        """Where the chunked prefill stops: generate evaluates the last 1..chunk new tokens
        itself, in the one pass that also gives the first token's logits (a first prompt
        of at most a chunk is thus evaluated whole, exactly as a plain generate call)."""
        new = prompt_tokens - reused
        if new <= self.chunk:
            return reused
        return prompt_tokens - (new % self.chunk or self.chunk)

    def run(self, ids: Any, cache: Any, start: int, end: int, cancel: threading.Event) -> bool:
        """Evaluate ``ids[start:end]`` into ``cache``; False if stopped midway."""
        import torch

        position = start
        while position < end:
            if cancel.is_set():
                return False
            stop = min(position + self.chunk, end)
            began = time.perf_counter()
            self.model(
                input_ids=ids[:, position:stop],
                past_key_values=cache,
                use_cache=True,
                cache_position=torch.arange(position, stop, device=ids.device),
                logits_to_keep=1,
            )
            if self.model.device.type == "cpu":
                # Size the next chunks so one takes about PREFILL_SLICE seconds here (not on
                # a GPU, whose calls return before the work is done).
                rate = (stop - position) / max(time.perf_counter() - began, 1e-6)
                self.chunk = int(min(MAX_CHUNK, max(MIN_CHUNK, rate * PREFILL_SLICE)))
            position = stop
        return not cancel.is_set()
