"""What generating a reply and inspecting one need of the local engine: its model,
tokenizer, cache, prefill and configuration (``LocalEngine`` has them). Named here as a
protocol so that those modules need not import the engine that uses them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from chatapp.engine.context import ContextPlan
from chatapp.engine.kv_cache import KVCache
from chatapp.engine.prefill import ChunkedPrefill
from chatapp.engine.types import Message
from chatapp.params import SamplingParams


class ModelParts(Protocol):
    """A loaded local model with what a reply is generated or inspected with."""

    model: Any
    tokenizer: Any
    kv_cache: KVCache
    prefill: ChunkedPrefill
    compile_config: Any
    defer_stop_check: bool
    stop_ids: list[int]

    @property
    def survivor_sampling(self) -> bool: ...

    @property
    def stop_strings(self) -> tuple[str, ...]: ...

    def plan(self, messages: Sequence[Message], params: SamplingParams) -> ContextPlan: ...

    def generation_config(self, params: SamplingParams) -> Any: ...

    def sampling_stages(self, config: Any, ids: Any) -> Any: ...
