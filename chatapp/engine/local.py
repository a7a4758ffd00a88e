"""``LocalEngine``: stream one reply at a time from a local transformers model.

A conversation is cheap to continue: the engine keeps the KV cache of the last request
with the token ids it covers, and the next request evaluates only the tokens after their
longest common prefix. Replies are spliced into the next prompt as the ids the model
generated, so the prefix normally covers the whole cache.
"""

from __future__ import annotations

import concurrent.futures
import copy
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from chatapp.engine.chat_format import (
    DIALOGUE_PREAMBLE,
    DIALOGUE_STOPS,
    ChatFormat,
    Message,
    default_format,
    encode_prompt,
    stop_token_ids,
)
from chatapp.engine.context import ContextPlan, ContextTooLong, plan_context
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
from chatapp.engine.protocol import Capabilities, FinishReason, ReplyStats, describe_loaded
from chatapp.engine.sampling import DrawAmongSurvivors, survivor_stages
from chatapp.engine.streaming import ReplyStreamer, StopOnEvent, StopOnText
from chatapp.params import PARAMS, SamplingParams

TextCallback = Callable[[str], None]
TokenCallback = Callable[[int, Any], None]

__all__ = ["ContextPlan", "ContextTooLong", "EngineBusy", "LocalEngine", "ReplyStats"]


class EngineBusy(RuntimeError):
    """A second reply was asked for while one is still being generated."""


LOCAL_CAPABILITIES = Capabilities(
    kind="local",
    supported=frozenset(spec.name for spec in PARAMS),
    lens="stages",
    lens_note="every sampling stage, computed here",
)


# Set on the generating thread around one generate call: see _allow_deferred_stop_check.
_deferral = threading.local()


def _allow_deferred_stop_check() -> bool:
    """Let generate defer its stop check by a step on CUDA, for the fast path.

    Each decode step, generate reads the stop flag and the new token back from the GPU,
    so the host waits for the device and only then prepares the next step: on the H200
    the step's Python work (~3 ms: inputs, logits processors, stopping criteria) and the
    GPU's ~1 ms ran one after the other. transformers' ``DeferredStopCheck`` reads them a
    step late instead (tokens stream one step behind; one extra forward pass at the end
    is undone by cropping the cache), so the host queues step n+1 while the device runs
    step n; transformers turns it on only for Apple's MPS so far ("enable it for cuda if
    we observe perf gains"). This widens its ``is_supported`` to CUDA for the calls made
    with ``_deferral.on`` set, under the same cache condition. False where this
    transformers has no such class (then nothing changes)."""
    try:
        from transformers.generation import utils
    except ImportError:  # pragma: no cover
        return False
    check = getattr(utils, "DeferredStopCheck", None)
    if check is None or not hasattr(check, "is_supported"):
        return False
    if not getattr(check, "_chatapp_cuda", False):
        original = check.is_supported

        def is_supported(device: Any, cache: Any, cache_is_returned: bool, is_assistant: bool):
            if getattr(_deferral, "on", False) and device.type == "cuda" and not is_assistant:
                return cache is None or cache.is_croppable or not cache_is_returned
            return original(device, cache, cache_is_returned, is_assistant)

        check.is_supported = staticmethod(is_supported)
        check._chatapp_cuda = True
    return True


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
        self.reuse_cache = True  # off: every request prefills from scratch (benchmarks)
        self.prefill_chunk = _first_chunk(self.model)  # the CPU's then follows its speed
        self._lock = threading.Lock()
        self._cancel = threading.Event()  # the running request's stop flag
        self._cache: Any = None  # KV cache of the last request …
        self._cache_ids: list[int] = []  # … and the token ids it covers
        self._snapshot: tuple[list[int], Any] | None = None  # the cache at a prompt's end
        # The fast path: one static KV cache for the engine's life (its tensors keep their
        # addresses, so the compiled decode step is reused turn after turn) and generate's
        # own torch.compile of the decode step.
        self.compiled = compile
        self.compile_reason = ""  # why --compile's auto chose so ("" when asked for)
        self._static: Any = None
        # The compiled step's CUDA graphs belong to the thread that recorded them (torch
        # keeps its graph trees per thread): a reply on a new thread (the app starts one per
        # reply) would record them again. So the fast path generates on one thread of its
        # own, for the engine's life; the caller waits for it.
        self._runner: concurrent.futures.ThreadPoolExecutor | None = None
        # The fast path on CUDA reads each step's token a step late, the lens too (its
        # recorder pairs each step's table with the token handed over for it, oldest
        # first). The app always passes a recorder (F3 may switch it on mid-reply), so
        # while only replies without one deferred, the app's replies never did.
        self.defer_stop_check = (
            compile and self.model.device.type == "cuda" and _allow_deferred_stop_check()
        )
        if compile and loaded.one_token_steps is not None:
            # torch.compile traces the forward pass: no process-wide switch inside it.
            loaded.one_token_steps.remove()
            loaded.one_token_steps = None
        if compile:
            self._runner = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="chatapp-generate"
            )
            from transformers import CompileConfig, StaticCache

            self._static = StaticCache(config=self.model.config, max_cache_len=self.context_window)
            self._compile_config = CompileConfig()
            # generate compiles on CUDA by itself; elsewhere only when told to.
            self._compile_config._compile_all_devices = self.model.device.type != "cuda"

    @classmethod
    def load(
        cls,
        model: str | None = None,
        quant: str = "auto",
        dtype: str = "auto",
        progress: ProgressFn = _no_progress,
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
        from chatapp.engine.loading import auto_compile

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

    def warm_up(self, progress: ProgressFn = _no_progress) -> float:
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
        int8 = self.loaded.int8
        return int8 is not None and not int8.ready.is_set()

    def _switch_int8(self) -> None:
        """Per request, under the lock: the int8 weights if they are made, for the whole
        request (a reply never mixes the two). When that changes, the kept KV cache is
        dropped: its decoded tokens were computed with the other weights."""
        int8 = self.loaded.int8
        if int8 is None:
            return
        was = int8.on
        if int8.use(True) != was:
            self._cache, self._cache_ids, self._snapshot = None, [], None

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
            self._cache, self._cache_ids, self._snapshot = None, [], None

    def cache_bytes(self) -> int:
        """Memory held by the kept KV cache and the prompt snapshot."""
        total = 0
        for cache in (self._cache, self._snapshot[1] if self._snapshot else None):
            for layer in getattr(cache, "layers", []) or []:
                for tensor in (getattr(layer, "keys", None), getattr(layer, "values", None)):
                    if tensor is not None and hasattr(tensor, "numel"):
                        total += tensor.numel() * tensor.element_size()
        return total

    # -- prompts --------------------------------------------------------------------------
    def encode(self, messages: Sequence[Message]) -> list[int]:
        """Prompt ids in this engine's chat format."""
        return encode_prompt(self.tokenizer, messages, self.chat_format, self.preamble)

    def prompt_ids(self, messages: Sequence[Message]) -> Any:
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
        if not self._lock.acquire(blocking=wait):
            raise EngineBusy("A reply is already being generated; stop it (Esc) or wait.")
        try:
            self._cancel = cancel if cancel is not None else threading.Event()
            self._switch_int8()
            args = (messages, params, on_text, on_token, logits_processor, lens)
            if self._runner is None:
                return self._generate(*args)
            future = self._runner.submit(self._generate, *args)
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
        """Step ``step`` of a finished reply, recomputed under other ``params``.

        The logits come from one forward pass over the prompt and the reply so far, so
        nothing needs to be kept from the original generation. The prompt is fitted to
        the window as it was for the reply's own values (``fitted_for``).
        """
        import torch

        if not self._lock.acquire(blocking=False):
            raise EngineBusy("A reply is being generated; the what-if waits until it ends.")
        try:
            self._switch_int8()
            fitted = self.plan(messages, fitted_for or params).prompt_ids
            prompt = torch.tensor([fitted], dtype=torch.long, device=self.model.device)
            prefix = torch.tensor([list(reply_ids[:step])], dtype=torch.long, device=prompt.device)
            ids = torch.cat([prompt, prefix], dim=1)
            with torch.inference_mode():
                logits = self.model(input_ids=ids, logits_to_keep=1).logits[:, -1, :]
                processors = self._stages(self.generation_config(params), ids)
                _, record, logprobs = analyze_step(
                    step, ids, logits, processors, self.tokenizer, top_n
                )
                add_sampled(record, int(reply_ids[step]), logprobs, self.tokenizer)
        finally:
            self._lock.release()
        record.what_if = params.summary()
        return record

    def replay_lens(
        self,
        messages: Sequence[Message],
        token_ids: Sequence[int],
        params: SamplingParams,
        top_n: int = 10,
        text: str | None = None,
    ) -> list[StepRecord]:
        """Every step's lens table for a finished reply, recomputed from its token ids and
        parameters: one forward pass over the prompt and the reply gives each step's raw
        logits, and the sampling stages are then applied step by step. With ``text`` (the
        reply as shown), the pieces stop where it ends (a stop string is not shown)."""
        import torch

        if not self._lock.acquire(blocking=False):
            raise EngineBusy("A reply is being generated; the lens waits until it ends.")
        try:
            self._switch_int8()
            prompt = self.plan(messages, params).prompt_ids  # as fitted to the window
            reply = [int(t) for t in token_ids]
            ids = torch.tensor([prompt + reply], dtype=torch.long, device=self.model.device)
            first = len(prompt) - 1  # this position's logits give the reply's first token
            processors = self._stages(self.generation_config(params), ids)
            decoder = IncrementalDecoder(self.tokenizer)
            steps: list[StepRecord] = []
            cache = self._new_cache()
            chunk = 64  # positions whose full-vocabulary logits are held at once
            with torch.inference_mode(), _quiet():
                position = 0
                while position < first + len(reply):
                    stop = min(position + chunk, first if position < first else len(ids[0]) - 1)
                    out = self.model(
                        input_ids=ids[:, position:stop],
                        past_key_values=cache,
                        use_cache=True,
                        cache_position=torch.arange(position, stop, device=ids.device),
                        logits_to_keep=0 if position >= first else 1,
                    )
                    if position >= first:
                        for row in range(stop - position):
                            step = position + row - first
                            _, record, kept = analyze_step(
                                step,
                                ids[:, : first + 1 + step],
                                out.logits[:, row, :],
                                processors,
                                self.tokenizer,
                                top_n,
                            )
                            add_sampled(record, reply[step], kept, self.tokenizer)
                            record.piece = decoder.push(reply[step])
                            steps.append(record)
                    position = stop
            if steps:
                steps[-1].piece += decoder.flush()
            if text is not None:
                _clip_pieces(steps, len(text))
            return steps
        finally:
            self._lock.release()

    def _stages(self, config: Any, ids: Any) -> Any:
        """The sampling stages as a reply with this generation config applies them."""
        stages = build_processors(self.model, config, ids)
        return survivor_stages(stages) if self.survivor_sampling else stages

    def _lens_config(self, params: SamplingParams) -> Any:
        """Every stage at its spec's neutral value: the lens pipeline applies the real ones."""
        neutral = {spec.name: spec.neutral for spec in PARAMS if spec.neutral is not None}
        return self.generation_config(params.replace(**neutral))

    # -- the KV cache -----------------------------------------------------------------------
    def _new_cache(self, for_generate: bool = False) -> Any:
        """An empty cache: the engine's one static cache, emptied, for a reply on the fast
        path; else a dynamic one (the lens's recomputations never touch the static one)."""
        if for_generate and self._static is not None:
            import torch

            with torch.inference_mode():  # its tensors were made in inference mode
                self._static.reset()
            return self._static
        from transformers import DynamicCache

        return DynamicCache(config=self.model.config)

    @staticmethod
    def _croppable(cache: Any) -> bool:
        """A sliding-window layer that has filled its window has dropped old tokens."""
        for layer in getattr(cache, "layers", []):
            if getattr(layer, "is_sliding", False) and layer.get_seq_length() >= getattr(
                layer, "sliding_window", float("inf")
            ):
                return False
        return True

    def _cache_for(self, ids: list[int]) -> tuple[Any, int]:
        """A cache holding the KV of ``ids[:n]`` for the largest ``n`` on hand, and ``n``."""
        limit = len(ids) - 1  # the last prompt token is always evaluated: it gives the logits
        best: tuple[Any, int, bool] = (None, 0, False)
        if self.reuse_cache:
            candidates = [(self._cache_ids, self._cache, False)]
            if self._snapshot is not None:
                candidates.append((self._snapshot[0], self._snapshot[1], True))
            for cached_ids, cache, is_snapshot in candidates:
                if cache is None:
                    continue
                common = _common_prefix(cached_ids, ids, limit)
                if common < len(cached_ids) and not self._croppable(cache):
                    continue  # would need a crop a sliding layer cannot make
                if common > best[1]:
                    best = (cache, common, is_snapshot)
        cache, reused, is_snapshot = best
        if cache is None or reused == 0:
            self._cache, self._cache_ids = None, []
            return self._new_cache(for_generate=True), 0
        if is_snapshot:
            cache = copy.deepcopy(cache)  # the snapshot stays for the next regenerate
        else:
            self._cache, self._cache_ids = None, []
        if cache.get_seq_length() > reused:
            import torch

            with torch.inference_mode():  # a static cache's length is an inference tensor
                cache.crop(reused - int(cache.get_seq_length()))  # negative: tokens removed
        return cache, reused

    def _keep(self, cache: Any, ids: list[int]) -> None:
        """Remember ``cache`` as the live cache; it covers the start of ``ids``."""
        if self.reuse_cache:
            self._cache, self._cache_ids = cache, ids[: cache.get_seq_length()]

    def _take_snapshot(self, cache: Any, ids: list[int], length: int) -> None:
        """Keep a copy of ``cache`` cut to ``ids[:length]``, for a regenerate (the live
        cache grows past the prompt, and a full sliding-window layer cannot be cut back)."""
        if not self.reuse_cache or length <= 0 or self.compiled:
            return  # the fast path keeps one static cache: a regenerate crops it instead
        if self._snapshot is not None and self._snapshot[0] == ids[:length]:
            return
        have = cache.get_seq_length()
        if have == length:
            self._snapshot = (ids[:length], copy.deepcopy(cache))
        elif have > length and self._croppable(cache):
            snapshot = copy.deepcopy(cache)
            snapshot.crop(length - have)
            self._snapshot = (ids[:length], snapshot)

    def _prefill(self, ids: Any, cache: Any, start: int, end: int) -> bool:
        """Evaluate ``ids[start:end]`` into ``cache`` in chunks; False if stopped midway."""
        import torch

        position = start
        while position < end:
            if self._cancel.is_set():
                return False
            stop = min(position + self.prefill_chunk, end)
            began = time.perf_counter()
            self.model(
                input_ids=ids[:, position:stop],
                past_key_values=cache,
                use_cache=True,
                cache_position=torch.arange(position, stop, device=ids.device),
                logits_to_keep=1,
            )
            if self.model.device.type == "cpu":
                # Size the next chunks so one takes about PREFILL_SLICE seconds here. (Not
                # on a GPU: its calls return before the work is done, so the time says
                # nothing; there the chunk stays GPU_CHUNK.)
                rate = (stop - position) / max(time.perf_counter() - began, 1e-6)
                self.prefill_chunk = int(min(MAX_CHUNK, max(MIN_CHUNK, rate * PREFILL_SLICE)))
            position = stop
        return not self._cancel.is_set()

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

        start = time.perf_counter()
        plan = self.plan(messages, params)
        ids = plan.prompt_ids
        if plan.clipped:
            params = params.replace(max_new_tokens=plan.max_new_tokens)
        input_ids = torch.tensor([ids], dtype=torch.long, device=self.model.device)
        streamer = ReplyStreamer(
            IncrementalDecoder(self.tokenizer), on_text, on_token, lens, self.stop_strings
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
                reply_ids=self._reply_ids(new_ids, streamer),
                reused_tokens=reused,
                left_out=plan.left_out,
                window=plan.window,
                max_new_tokens=params.max_new_tokens,
                clipped=plan.clipped,
                seed=seed,
            )

        cache, reused = self._cache_for(ids)
        with torch.inference_mode(), _quiet():
            # Long prompts are evaluated here, in chunks, so a stop is noticed between
            # them; generate() evaluates the last 1..chunk new tokens itself, in the one
            # pass that also gives the first token's logits. (A first prompt of at most a
            # chunk is thus evaluated whole, exactly as a plain generate call does.)
            new = len(ids) - reused
            prefill_to = (
                reused
                if new <= self.prefill_chunk
                else len(ids) - (new % self.prefill_chunk or self.prefill_chunk)
            )
            if not self._prefill(input_ids, cache, reused, prefill_to):
                self._keep(cache, ids)
                return stats([], "stopped", reused)
            self._take_snapshot(cache, ids, prefill_to)
            if seed is not None:
                torch.manual_seed(seed)
            config = self.generation_config(params)
            if self.compiled:
                config.compile_config = self._compile_config
            extra: dict[str, Any] = {}
            survivors = self.survivor_sampling and params.do_sample
            if lens is not None or survivors:
                # generate runs with every stage neutral; the stages run here, in order
                # (through the lens when it records), then the draw among their survivors.
                stages = self._stages(config, input_ids)
                if lens is not None:
                    lens.tokenizer = self.tokenizer
                    stages = [LensPipeline(stages, lens)]
                processors = [*stages, *(logits_processor or [])]
                if survivors:
                    processors.append(DrawAmongSurvivors())
                    config = self._lens_config(params.replace(do_sample=False))
                else:
                    config = self._lens_config(params)
                extra["logits_processor"] = LogitsProcessorList(processors)
                if self.compiled:
                    config.compile_config = self._compile_config
            elif logits_processor is not None:
                extra["logits_processor"] = logits_processor
            criteria = [StopOnEvent(self._cancel)]
            if self.stop_strings:
                criteria.append(StopOnText(streamer))
            _deferral.on = self.defer_stop_check
            try:
                output = self.model.generate(
                    input_ids=input_ids,
                    attention_mask=torch.ones_like(input_ids),
                    past_key_values=cache,
                    generation_config=config,
                    streamer=streamer,
                    stopping_criteria=StoppingCriteriaList(criteria),
                    **extra,
                )
            finally:
                _deferral.on = False
        new_ids = output[0, len(ids) :].tolist()
        self._keep(cache, ids + new_ids)
        self._take_snapshot(cache, ids + new_ids, len(ids) - 1)  # while still croppable
        if self._cancel.is_set():
            reason: FinishReason = "stopped"
        elif streamer.stop_string_seen or (new_ids and new_ids[-1] in config_eos(config)):
            reason = "eos"
        else:
            reason = "length"
        return stats(new_ids, reason, reused)

    def _reply_ids(self, new_ids: list[int], streamer: ReplyStreamer) -> list[int] | None:
        """The generated ids that spell the reply's text (no stop token or stop string)."""
        ids = list(new_ids)
        while ids and ids[-1] in self.stop_ids:
            ids.pop()
        if not streamer.stop_string_seen:
            return ids
        # Cut where the text ends; if a token straddles the stop string, re-tokenise.
        for end in range(len(ids), -1, -1):
            text = self.tokenizer.decode(ids[:end], skip_special_tokens=True)
            if text == streamer.text:
                return ids[:end]
            if len(text) < len(streamer.text):
                return None
        return None


# Seconds between stop checks during a long prefill. Each chunk is a forward call of its
# own, and short ones cost: a 790-token prompt in 0.2 s slices (a first chunk of 128, then
# ~170) ran at 0.79x raw generate's prefill here, 0.95x in 0.3 s slices from 256 (median
# of 4 alternating runs, native bf16). A stop still ends a prefill within half a second.
PREFILL_SLICE = 0.3
FIRST_CHUNK = 256  # before any speed is measured, where the CPU computes the dtype natively
MIN_CHUNK, MAX_CHUNK = 32, 1024
# On a GPU a prompt of up to this many new tokens is evaluated in generate's own single
# pass, as raw generate does (an H200 takes ~25 ms for 790 tokens of gemma-2b). With the
# CPU's adaptive 512-token start, chunks measured by a clock that does not wait for the
# GPU shrank, and the engine's 790-token prefill ran at 378-1,674 tok/s against raw
# generate's 37,000-43,000 (bench/results/h200-gpu_engine-run*.log, the none row).
GPU_CHUNK = 4096


def _first_chunk(model: Any) -> int:
    """The prefill chunk: on a GPU, GPU_CHUNK for good; on the CPU a first one before any
    speed is measured (bf16 matmuls are emulated, and ~5x slower, without native bf16)."""
    import torch

    if model.device.type != "cpu":
        return GPU_CHUNK
    from chatapp.engine.loading import cpu_has_native_bf16

    if model.dtype == torch.bfloat16 and not cpu_has_native_bf16():
        return MIN_CHUNK
    return FIRST_CHUNK


def _clip_pieces(steps: list[StepRecord], length: int) -> None:
    """Cut the steps' pieces so that together they are ``length`` characters long."""
    used = 0
    for step in steps:
        room = max(0, length - used)
        step.piece = step.piece[:room]
        used += len(step.piece)


def config_eos(config: Any) -> set[int]:
    eos = config.eos_token_id
    if eos is None:
        return set()
    return {int(eos)} if isinstance(eos, int) else {int(e) for e in eos}


def _common_prefix(a: Sequence[int], b: Sequence[int], limit: int) -> int:
    n = min(len(a), len(b), limit)
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
