"""``LocalEngine``: stream one reply at a time from a local transformers model.

A conversation is cheap to continue: the engine keeps the KV cache of the last request
(``chatapp.engine.kv_cache``), and replies are spliced into the next prompt as the ids the
model generated, so the next request normally evaluates only the new turn. The lens's
recomputations live in ``chatapp.engine.inspection``.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from chatapp.engine import framework_internals as internals
from chatapp.engine.chat_format import (
    DIALOGUE_PREAMBLE,
    DIALOGUE_STOPS,
    ChatFormat,
    default_format,
    encode_prompt,
    stop_token_ids,
)
from chatapp.engine.columns import ColumnText, generate_columns
from chatapp.engine.context import ContextPlan, ContextTooLong, plan_context
from chatapp.engine.divergence import Divergence
from chatapp.engine.generation import TextCallback, TokenCallback, generate_reply
from chatapp.engine.inspection import find_divergence, replay_steps, what_if_step
from chatapp.engine.kv_cache import KVCache
from chatapp.engine.lens import LensRecorder, build_processors
from chatapp.engine.loading import load_model
from chatapp.engine.prefill import ChunkedPrefill
from chatapp.engine.protocol import describe_loaded
from chatapp.engine.quantization import LoadedModel, auto_compile
from chatapp.engine.sampling import survivor_stages
from chatapp.engine.types import (
    NO_INT8_COPY,
    Capabilities,
    EngineBusy,
    Int8Status,
    Message,
    ProgressFn,
    ReplyStats,
    StepRecord,
    no_progress,
)
from chatapp.params import PARAMS, SamplingParams

__all__ = ["ContextPlan", "ContextTooLong", "LocalEngine"]


LOCAL_CAPABILITIES = Capabilities(
    kind="local",
    supported=frozenset(spec.name for spec in PARAMS),
    lens="stages",
    lens_note="every sampling stage, computed here",
)

T = TypeVar("T")


class LocalEngine:
    """A loaded model that streams replies; imports no UI code.

    One reply at a time: a second ``stream_reply`` while one runs raises ``EngineBusy``
    (or waits, with ``wait=True``).
    """

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        context: int | None = None,
        chat_format: ChatFormat | None = None,
        compile: bool = False,
    ) -> None:
        from transformers import GenerationConfig

        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        eos = self.model.generation_config.eos_token_id
        self.stop_ids = stop_token_ids(self.tokenizer, eos)
        self.raw_stop_ids = stop_token_ids(self.tokenizer, eos, end_of_turn=False)
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.stop_ids[0]
        # The spec alone decides sampling: the model's own defaults (e.g. a top_k in its
        # generation_config.json) must not fill in values the user did not choose.
        self.model.generation_config = GenerationConfig(
            bos_token_id=self.tokenizer.bos_token_id,
            eos_token_id=self.stop_ids,
            pad_token_id=self.pad_id,
        )
        model_window = int(getattr(self.model.config, "max_position_embeddings", 0) or 8192)
        self.context_window = min(context, model_window) if context else model_window
        self.chat_format: ChatFormat = chat_format or default_format(self.tokenizer, loaded.name)
        self.preamble = DIALOGUE_PREAMBLE
        self.warnings: list[str] = []
        version_warning = internals.version_warning()
        if version_warning:
            self.warnings.append(version_warning)
        self.prefill = ChunkedPrefill(self.model)
        self._lock = threading.Lock()
        self._cancel = threading.Event()  # the running request's stop flag
        # The fast path: one static KV cache for the engine's life (see KVCache) and
        # generate's own torch.compile of the decode step.
        self.compiled = compile
        self.compile_reason = ""  # why --compile's auto chose so ("" when asked for)
        static: Any = None
        self.compile_config: Any = None  # generate's CompileConfig on the fast path
        # The compiled step's CUDA graphs belong to the thread that recorded them (torch
        # keeps its graph trees per thread): a reply on a new thread (the app starts one per
        # reply) would record them again. So the fast path generates on one thread of its
        # own, for the engine's life; the caller waits for it.
        self._runner: concurrent.futures.ThreadPoolExecutor | None = None
        # The fast path on CUDA reads each step's token a step late, the lens too (its
        # recorder pairs each step's table with the token handed over for it, oldest
        # first). The app always passes a recorder (F3 may switch it on mid-reply), so
        # replies with a recorder defer too.
        self.defer_stop_check = (
            compile and self.model.device.type == "cuda" and internals.allow_deferred_stop_check()
        )
        if compile and loaded.one_token_steps is not None:
            # torch.compile traces the forward pass: no process-wide switch inside it.
            loaded.one_token_steps.remove()
            loaded.one_token_steps = None
        if compile:
            self._runner = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="chatapp-generate"
            )
            from transformers import StaticCache

            static = StaticCache(config=self.model.config, max_cache_len=self.context_window)
            self.compile_config = internals.compile_config(
                all_devices=self.model.device.type != "cuda"
            )
        self.kv_cache = KVCache(self.model, static)

    @classmethod
    def load(
        cls,
        model: str | None = None,
        quant: str = "auto",
        dtype: str = "auto",
        progress: ProgressFn = no_progress,
        *,
        context: int | None = None,
        chat_format: ChatFormat | None = None,
        compile: bool | None = None,
        reply_tokens: int | None = None,
        background: bool = False,
    ) -> LocalEngine:
        """Load a model (see ``load_model``) and wrap it; with ``compile``, also compile
        and warm up the fast path, reporting it through ``progress`` (None: as
        ``auto_compile`` decides for the model loaded). ``background``: int8-dynamic's
        int8 copy is made on a thread (see ``int8_pending``)."""
        loaded = load_model(
            model,
            quant=quant,
            dtype=dtype,
            progress=progress,
            reply_tokens=reply_tokens,
            background=background,
        )
        compile_reason = ""
        if compile is None:
            compile, compile_reason = auto_compile(loaded)
        engine = cls(loaded, context=context, chat_format=chat_format, compile=compile)
        engine.compile_reason = compile_reason
        if compile:
            engine.warm_up(progress)
        return engine

    def warm_up(self, progress: ProgressFn = no_progress) -> float:
        """Run two short replies so that torch.compile has compiled (and, on CUDA,
        captured) the decode step before the user's first message; returns seconds."""
        from chatapp import heap
        from chatapp.params import SamplingParams

        # Compiling makes garbage by the graph (dynamo, inductor): if the chatapp command
        # paused the collector while loading, freeze the loaded model now and collect
        # as usual, or all of it would stay, frozen for good at Ready (chatapp/heap.py).
        heap.loaded()
        start = time.perf_counter()
        progress("Compiling the decode step (torch.compile; the first run takes a while)", None)
        for n, tokens in enumerate((3, 6), start=1):
            self.stream_reply(
                [Message("user", "Hello")], SamplingParams(do_sample=False, max_new_tokens=tokens)
            )
            progress(f"Warming up the compiled model ({n}/2)", None)
        self.reset()
        progress(f"Compiled in {time.perf_counter() - start:.0f} s", 1.0)
        return time.perf_counter() - start

    # -- what it is -----------------------------------------------------------------------
    @property
    def survivor_sampling(self) -> bool:
        """A sampled reply draws among the stages' survivors (chatapp.engine.sampling): on
        the CPU, where auto chose the mode."""
        return self.loaded.auto and self.model.device.type == "cpu"

    @property
    def capabilities(self) -> Capabilities:
        return LOCAL_CAPABILITIES

    @property
    def model_name(self) -> str:
        return self.loaded.name

    def describe(self) -> str:
        text = describe_loaded(self.loaded, self.chat_format, self.context_window)
        if self.int8_pending:
            text += " · making the int8 copy (replies use the float weights until then)"
        if self.compiled:
            text += " · static cache + torch.compile"
        if self.compile_reason:
            text += f" ({self.compile_reason})"
        return text

    @property
    def int8_pending(self) -> bool:
        """int8-dynamic's int8 copy is still being made on its thread."""
        return self.int8_status().pending

    def int8_status(self) -> Int8Status:
        """Where int8-dynamic's int8 copy stands (nothing pending in other modes)."""
        int8 = self.loaded.int8
        if int8 is None:
            return NO_INT8_COPY
        if not int8.ready.is_set():
            return Int8Status(pending=True)
        if int8.error is not None:
            return Int8Status(seconds=int8.seconds, error=str(int8.error))
        return Int8Status(seconds=int8.seconds)

    def _switch_int8(self) -> None:
        """Per request, under the lock: the int8 weights if they are made, for the whole
        request (a reply never mixes the two). When that changes, the kept KV cache is
        dropped: its decoded tokens were computed with the other weights."""
        int8 = self.loaded.int8
        if int8 is None:
            return
        was = int8.on
        if int8.use(True) != was:
            self.kv_cache.clear()

    def engine_label(self) -> str:
        loaded = self.loaded
        fast = " compiled" if self.compiled else ""
        if self.int8_pending:
            fast += " (float weights: int8 copy not made yet)"
        return f"local {loaded.quant} {loaded.dtype} {loaded.device}{fast} · {self.chat_format}"

    # -- state ----------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._lock.locked()

    def stop(self) -> None:
        """Ask the running reply to end (during the prefill too); at most one more token."""
        self._cancel.set()

    def reset(self) -> None:
        """Forget the conversation's KV cache (a new chat, another chat)."""
        with self._lock:
            self.kv_cache.clear()

    def cache_bytes(self) -> int:
        """Memory held by the kept KV cache and the prompt snapshot."""
        return self.kv_cache.bytes()

    @property
    def reuse_cache(self) -> bool:
        """Requests reuse the kept KV cache (off: each prefills from scratch, for benchmarks)."""
        return self.kv_cache.reuse

    @reuse_cache.setter
    def reuse_cache(self, on: bool) -> None:
        self.kv_cache.reuse = on

    @property
    def prefill_chunk(self) -> int:
        """Tokens per chunk of a long prompt's prefill (on the CPU it follows the speed)."""
        return self.prefill.chunk

    # -- prompts --------------------------------------------------------------------------
    def encode(self, messages: Sequence[Message]) -> list[int]:
        """Prompt ids in this engine's chat format."""
        return encode_prompt(self.tokenizer, messages, self.chat_format, self.preamble)

    def prompt_ids(self, messages: Sequence[Message]) -> Any:
        """Prompt ids as a 1 x n tensor on the model's device."""
        import torch

        return torch.tensor([self.encode(messages)], dtype=torch.long, device=self.model.device)

    def plan(self, messages: Sequence[Message], params: SamplingParams) -> ContextPlan:
        """How the conversation fits the window (raises ``ContextTooLong``)."""
        return plan_context(self.encode, messages, params.max_new_tokens, self.context_window)

    def generation_config(self, params: SamplingParams) -> Any:
        stops = self.raw_stop_ids if self.chat_format == "raw" else self.stop_ids
        return params.to_generation_config(eos_token_id=stops, pad_token_id=self.pad_id)

    @property
    def stop_strings(self) -> tuple[str, ...]:
        return DIALOGUE_STOPS if self.chat_format == "dialogue" else ()

    # -- generation -------------------------------------------------------------------------
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
        cancel: threading.Event | None = None,
    ) -> ReplyStats:
        """Generate one reply, calling ``on_text`` with each decoded piece as it comes.

        ``cancel`` is the request's own stop flag: set before the request starts, it is
        still honoured (``stop()`` sets the running request's flag). With ``lens``, each
        step's next-token table is recorded stage by stage.
        """
        args = (messages, params, on_text, on_token, logits_processor, lens)
        return self._run(lambda: self._generate(*args), wait, cancel)

    def stream_columns(
        self,
        messages: Sequence[Message],
        columns: Sequence[SamplingParams],
        on_text: ColumnText = lambda row, piece: None,
        *,
        seeds: Sequence[int | None] | None = None,
        logprobs: bool = False,
        wait: bool = False,
        cancel: threading.Event | None = None,
    ) -> list[ReplyStats]:
        """One reply per entry of ``columns`` to the same ``messages``, generated in one
        batch (``chatapp.engine.columns``); ``on_text(row, piece)`` as each streams."""
        return self._run(
            lambda: generate_columns(
                self, messages, columns, on_text, self._cancel, seeds, logprobs
            ),
            wait,
            cancel,
        )

    def _run(self, work: Callable[[], T], wait: bool, cancel: threading.Event | None) -> T:
        """Hold the engine for one request (``cancel``: its stop flag) and run ``work`` on
        the generation thread, if there is one."""
        if not self._lock.acquire(blocking=wait):
            raise EngineBusy("A reply is already being generated; stop it (Esc) or wait.")
        try:
            self._cancel = cancel if cancel is not None else threading.Event()
            self._switch_int8()
            if self._runner is None:
                return work()
            future = self._runner.submit(work)
            try:
                return future.result()
            except KeyboardInterrupt:  # Ctrl+C in the waiting thread: stop the reply too
                self._cancel.set()
                future.result()
                raise
        finally:
            self._lock.release()

    def what_if(
        self,
        messages: Sequence[Message],
        reply_ids: Sequence[int],
        step: int,
        params: SamplingParams,
        top_n: int = 10,
        *,
        fitted_for: SamplingParams | None = None,
    ) -> StepRecord:
        """Step ``step`` of a finished reply, recomputed under other ``params``; the prompt
        is fitted to the window as it was for the reply's own values (``fitted_for``)."""
        with self._inspecting("the what-if"):
            return what_if_step(self, messages, reply_ids, step, params, top_n, fitted_for)

    def divergence(
        self,
        messages: Sequence[Message],
        replies: tuple[Sequence[int], Sequence[int]],
        params: tuple[SamplingParams, SamplingParams],
        columns: tuple[int, int] = (1, 2),
    ) -> Divergence | None:
        """Where two replies to ``messages`` (their token ids, drawn with ``params``)
        part, and which stage parted them (``chatapp.engine.divergence``)."""
        with self._inspecting("the comparison"):
            return find_divergence(self, messages, replies, params, columns)

    def replay_lens(
        self,
        messages: Sequence[Message],
        token_ids: Sequence[int],
        params: SamplingParams,
        top_n: int = 10,
        text: str | None = None,
    ) -> list[StepRecord]:
        """Every step's lens table for a finished reply, recomputed from its token ids and
        parameters. With ``text`` (the reply as shown), the pieces stop where it ends."""
        with self._inspecting("the lens"):
            return replay_steps(self, messages, token_ids, params, top_n, text)

    @contextmanager
    def _inspecting(self, what: str) -> Iterator[None]:
        """Hold the engine for a look at a finished reply, or say it is busy."""
        if not self._lock.acquire(blocking=False):
            raise EngineBusy(f"A reply is being generated; {what} waits until it ends.")
        try:
            self._switch_int8()
            yield
        finally:
            self._lock.release()

    def sampling_stages(self, config: Any, ids: Any) -> Any:
        """The sampling stages as a reply with this generation config applies them."""
        stages = build_processors(self.model, config, ids)
        return survivor_stages(stages) if self.survivor_sampling else stages

    def _generate(
        self,
        messages: Sequence[Message],
        params: SamplingParams,
        on_text: TextCallback,
        on_token: TokenCallback | None,
        logits_processor: Any,
        lens: LensRecorder | None,
    ) -> ReplyStats:
        return generate_reply(
            self, messages, params, on_text, on_token, logits_processor, lens, self._cancel
        )
