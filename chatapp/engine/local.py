"""``LocalEngine``: stream one reply at a time from a local transformers model."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from chatapp.engine.chat_format import Message, encode_prompt, stop_token_ids
from chatapp.engine.decoding import IncrementalDecoder
from chatapp.engine.lens import (
    LensPipeline,
    LensRecorder,
    StepRecord,
    add_sampled,
    analyze_step,
    build_processors,
)
from chatapp.engine.loading import LoadedModel, ProgressFn, _no_progress, _quiet, load_model
from chatapp.params import PARAMS, SamplingParams

FinishReason = Literal["eos", "length", "stopped"]
TextCallback = Callable[[str], None]
TokenCallback = Callable[[int, Any], None]


class EngineBusy(RuntimeError):
    """A second reply was asked for while one is still being generated."""


@dataclass
class ReplyStats:
    """What one reply cost and why it ended."""

    prompt_tokens: int
    new_tokens: int
    time_to_first_token: float  # seconds from the request to the first new token
    elapsed: float  # seconds from the request to the end
    finish_reason: FinishReason
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    streaming_seconds: float = 0.0  # spent decoding text and in the callbacks

    @property
    def tokens_per_second(self) -> float:
        """New tokens over the whole request time (prefill included)."""
        return self.new_tokens / self.elapsed if self.elapsed > 0 else 0.0

    def summary(self) -> str:
        return (
            f"{self.new_tokens} tokens · {self.tokens_per_second:.1f} tok/s · "
            f"first token {self.time_to_first_token:.2f} s · {self.finish_reason}"
        )


class _ReplyStreamer:
    """transformers streamer: decodes each new token and hands text to the callback."""

    def __init__(
        self,
        decoder: IncrementalDecoder,
        on_text: TextCallback,
        on_token: TokenCallback | None,
        lens: LensRecorder | None = None,
    ) -> None:
        self._decoder = decoder
        self._on_text = on_text
        self._on_token = on_token
        self._lens = lens
        self._prompt_seen = False
        self.first_token_at: float | None = None
        self.pieces: list[str] = []
        self.busy_seconds = 0.0  # time spent here: decoding and the callbacks

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
            self._emit(self._decoder.push(token_id))
        self.busy_seconds += time.perf_counter() - start

    def _emit(self, piece: str) -> None:
        if piece:
            self.pieces.append(piece)
            if self._lens is not None:
                self._lens.on_piece(piece)
            self._on_text(piece)

    def end(self) -> None:
        self._emit(self._decoder.flush())


class _StopOnEvent:
    """Stopping criterion that ends generation right after the current token."""

    def __init__(self, event: threading.Event) -> None:
        self._event = event

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        stop = self._event.is_set()
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


class LocalEngine:
    """A loaded model that streams replies; imports no UI code.

    One reply at a time: a second ``stream_reply`` while one runs raises ``EngineBusy``
    (or waits, with ``wait=True``).
    """

    def __init__(self, loaded: LoadedModel) -> None:
        from transformers import GenerationConfig

        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.stop_ids = stop_token_ids(self.tokenizer, self.model.generation_config.eos_token_id)
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.stop_ids[0]
        # The spec alone decides sampling: the model's own defaults (e.g. a top_k in its
        # generation_config.json) must not fill in values the user did not choose.
        self.model.generation_config = GenerationConfig(
            bos_token_id=self.tokenizer.bos_token_id,
            eos_token_id=self.stop_ids,
            pad_token_id=self.pad_id,
        )
        self._lock = threading.Lock()
        self._stop = threading.Event()

    @classmethod
    def load(
        cls,
        model: str | None = None,
        quant: str = "auto",
        dtype: str = "auto",
        progress: ProgressFn = _no_progress,
    ) -> LocalEngine:
        """Load a model (see ``load_model``) and wrap it."""
        return cls(load_model(model, quant=quant, dtype=dtype, progress=progress))

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    def stop(self) -> None:
        """Ask the running reply to end; it stops after at most one more token."""
        self._stop.set()

    def generation_config(self, params: SamplingParams) -> Any:
        return params.to_generation_config(eos_token_id=self.stop_ids, pad_token_id=self.pad_id)

    def prompt_ids(self, messages: Sequence[Message]) -> Any:
        import torch

        ids = encode_prompt(self.tokenizer, messages)
        return torch.tensor([ids], dtype=torch.long, device=self.model.device)

    def stream_reply(
        self,
        messages: Sequence[Message],
        params: SamplingParams,
        on_text: TextCallback = lambda piece: None,
        *,
        on_token: TokenCallback | None = None,
        logits_processor: Any = None,
        lens: LensRecorder | None = None,
        wait: bool = False,
    ) -> ReplyStats:
        """Generate one reply, calling ``on_text`` with each decoded piece as it comes.

        With ``lens``, each step's next-token table is recorded stage by stage.
        """
        if not self._lock.acquire(blocking=wait):
            raise EngineBusy("A reply is already being generated; stop it (Esc) or wait.")
        try:
            return self._generate(messages, params, on_text, on_token, logits_processor, lens)
        finally:
            self._lock.release()

    def what_if(
        self,
        messages: Sequence[Message],
        reply_ids: Sequence[int],
        step: int,
        params: SamplingParams,
        top_n: int = 10,
    ) -> StepRecord:
        """Step ``step`` of a finished reply, recomputed under other ``params``.

        The logits come from one forward pass over the prompt and the reply so far, so
        nothing needs to be kept from the original generation.
        """
        import torch

        if not self._lock.acquire(blocking=False):
            raise EngineBusy("A reply is being generated; the what-if waits until it ends.")
        try:
            prompt = self.prompt_ids(messages)
            prefix = torch.tensor([list(reply_ids[:step])], dtype=torch.long, device=prompt.device)
            ids = torch.cat([prompt, prefix], dim=1)
            with torch.inference_mode():
                logits = self.model(input_ids=ids).logits[:, -1, :]
                processors = build_processors(self.model, self.generation_config(params), ids)
                _, record, logprobs = analyze_step(
                    step, ids, logits, processors, self.tokenizer, top_n
                )
                add_sampled(record, int(reply_ids[step]), logprobs, self.tokenizer)
        finally:
            self._lock.release()
        record.what_if = params.summary()
        return record

    def _lens_config(self, params: SamplingParams) -> Any:
        """Every stage at its spec's neutral value: the lens pipeline applies the real ones."""
        neutral = {spec.name: spec.neutral for spec in PARAMS if spec.neutral is not None}
        return self.generation_config(params.replace(**neutral))

    def _generate(
        self,
        messages: Sequence[Message],
        params: SamplingParams,
        on_text: TextCallback,
        on_token: TokenCallback | None,
        logits_processor: Any,
        lens: LensRecorder | None,
    ) -> ReplyStats:
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        self._stop.clear()
        start = time.perf_counter()
        input_ids = self.prompt_ids(messages)
        streamer = _ReplyStreamer(IncrementalDecoder(self.tokenizer), on_text, on_token, lens)
        if params.do_sample and params.seed is not None:
            torch.manual_seed(params.seed)
        config = self.generation_config(params)
        extra: dict[str, Any] = {}
        if lens is not None:
            lens.tokenizer = self.tokenizer
            stages = build_processors(self.model, config, input_ids)
            pipeline = LensPipeline(stages, lens)
            extra["logits_processor"] = LogitsProcessorList([pipeline, *(logits_processor or [])])
            config = self._lens_config(params)
        elif logits_processor is not None:
            extra["logits_processor"] = logits_processor
        with torch.inference_mode(), _quiet():
            output = self.model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                generation_config=config,
                streamer=streamer,
                stopping_criteria=StoppingCriteriaList([_StopOnEvent(self._stop)]),
                **extra,
            )
        elapsed = time.perf_counter() - start
        new_ids = output[0, input_ids.shape[1] :].tolist()
        if self._stop.is_set():
            reason: FinishReason = "stopped"
        elif new_ids and new_ids[-1] in self.stop_ids:
            reason = "eos"
        else:
            reason = "length"
        first = streamer.first_token_at
        return ReplyStats(
            prompt_tokens=int(input_ids.shape[1]),
            new_tokens=len(new_ids),
            time_to_first_token=(first - start) if first is not None else elapsed,
            elapsed=elapsed,
            finish_reason=reason,
            text="".join(streamer.pieces),
            token_ids=new_ids,
            streaming_seconds=streamer.busy_seconds,
        )
