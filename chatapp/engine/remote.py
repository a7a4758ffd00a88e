"""``RemoteEngine``: replies from a model served elsewhere, through the ``openai`` SDK.

vLLM, Hugging Face TGI, ``transformers serve``, the llama.cpp server and Ollama all speak
the OpenAI API, each with its own dialect for the sampling values the panel steers: the
server's kind (detected, or ``--server-kind``) decides which values are sent, under which
names, and which are not honoured (``chatapp.engine.servers``). Every honoured value is
always sent, so the server's own defaults never stand in for the panel's.

Chat turns go to ``/v1/chat/completions`` (the server applies the model's template); the
dialogue and raw formats go to ``/v1/completions`` with the prompt rendered here. Stop
closes the HTTP stream, which is what makes these servers stop generating.

Imports no torch and no transformers (an import-linter contract keeps it so).
"""

from __future__ import annotations

import copy
import os
import queue
import secrets
import threading
import time
import unicodedata
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from chatapp.engine.chat_format import (
    DIALOGUE_PREAMBLE,
    DIALOGUE_STOPS,
    ChatFormat,
    render_prompt,
)
from chatapp.engine.columns_each import stream_each
from chatapp.engine.context import ContextPlan, plan_context
from chatapp.engine.divergence import StagesUnknown
from chatapp.engine.servers import (
    KINDS,
    TOP_LOGPROBS,
    NoTokenizer,
    detect_kind,
    explain_error,
    get_json,
    http_warning,
    logprob_steps,
    no_such_model,
    request_fields,
    safe_url,
    server_capabilities,
)
from chatapp.engine.stops import StopStringFilter
from chatapp.engine.types import (
    NO_INT8_COPY,
    Capabilities,
    EngineError,
    FinishReason,
    Int8Status,
    Message,
    ReplyInterrupted,
    ReplyStats,
    StepRecord,
)
from chatapp.params import SamplingParams
from chatapp.thinking import ReasoningTags

_END = object()  # the stream finished
_STOPPED = object()  # stop() was called
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 300.0  # between two chunks of a stream (a long prefill on a busy server)


class _Request:
    """One streaming request: its stop flag, its queue of chunks, its HTTP stream."""

    def __init__(self, cancel: threading.Event) -> None:
        self.cancel = cancel
        self.chunks: queue.Queue[Any] = queue.Queue()
        self.stream: Any = None

    def close(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            try:
                stream.close()
            except Exception:  # noqa: BLE001 - it may be closing already
                pass


def estimate_tokens(text: str) -> int:
    """Tokens ``text`` takes, estimated without the server's tokenizer: a wide (Chinese,
    Japanese, Korean) character one each, other text one per 3 characters. Tokenizers
    pack more English than that into a token and at most about one wide character, so
    the estimate leans to more: a prompt estimated to fit does (docs/performance.md)."""
    wide = sum(1 for c in text if unicodedata.east_asian_width(c) in ("W", "F"))
    return wide + (len(text) - wide + 2) // 3


class RemoteEngine(StagesUnknown):
    """An OpenAI-compatible server, behind the same ``Engine`` protocol as the local model."""

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        kind: str | None = None,
        api_key_env: str | None = None,
        chat_format: ChatFormat = "turns",
        context: int | None = None,
        timeout: float = READ_TIMEOUT,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env or (
            "OPENAI_API_KEY" if os.environ.get("OPENAI_API_KEY") else None
        )
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise EngineError(
                "--server needs an http(s) URL such as http://host:8000/v1, got "
                f"{safe_url(base_url)!r}"
            )
        self.warnings = [w for w in (http_warning(self.base_url),) if w]
        self.timeout = timeout
        self.client = self._client()
        self.chat_format: ChatFormat = chat_format
        self.preamble = DIALOGUE_PREAMBLE
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._request: _Request | None = None  # the reply being streamed
        self._lanes: list[RemoteEngine] = []  # compare columns' requests, while they run
        self._started = time.perf_counter()
        info = self._probe(detect=kind is None)
        self.models: list[str] = info["models"]
        self.kind = KINDS[kind] if kind else KINDS[info["kind"]]
        self.model = model or (self.models[0] if self.models else "")
        if not self.model:
            raise EngineError(
                f"The server at {safe_url(self.base_url)} lists no models; name one with --model"
            )
        if model and self.models and model not in self.models:
            raise EngineError(no_such_model(self.base_url, model, self.models))
        window = info.get("window") or 0
        self.context_window = min(context, window) if (context and window) else (context or window)
        self.connect_seconds = time.perf_counter() - self._started

    # -- connecting -----------------------------------------------------------------------
    def _client(self) -> Any:
        from openai import OpenAI, Timeout

        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        return OpenAI(
            base_url=self.base_url,
            api_key=key or "none",  # servers without auth take any key
            max_retries=0,
            timeout=Timeout(self.timeout, connect=min(CONNECT_TIMEOUT, self.timeout)),
        )

    def _probe(self, detect: bool = True) -> dict[str, Any]:
        """The server's models, kind and context window (from what each kind exposes)."""
        try:
            listing = self.client.models.list()
        except Exception as exc:  # noqa: BLE001 - turned into one clear line
            raise EngineError(self.explain(exc)) from None
        models = [m.id for m in listing.data]
        raw = [m.model_dump() if hasattr(m, "model_dump") else {} for m in listing.data]
        owners = {str(r.get("owned_by", "")) for r in raw}
        window = next((int(r["max_model_len"]) for r in raw if r.get("max_model_len")), 0)
        kind = "vllm" if "vllm" in owners else "llamacpp" if "llamacpp" in owners else None
        if kind is None and owners == {"me"}:  # llama-cpp-python's way of saying so
            kind = "llama_cpp_python"
        root = self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url
        if kind is None:
            kind = detect_kind(root) if detect else "openai"
        if kind == "llamacpp" and not window:
            props = get_json(root + "/props")
            settings = (props or {}).get("default_generation_settings", {})
            window = int(settings.get("n_ctx", 0) or 0)
        return {"models": models, "kind": kind, "window": window}

    # -- what it is -----------------------------------------------------------------------
    @property
    def capabilities(self) -> Capabilities:
        """What this server's kind honours, and what its lens can show."""
        return server_capabilities(self.kind)

    @property
    def model_name(self) -> str:
        return self.model

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    def describe(self) -> str:
        window = f"window {self.context_window:,}" if self.context_window else "window unknown"
        return (
            f"{self.model} on {self.kind.label} at {safe_url(self.base_url)} · "
            f"{self.chat_format} format · {window} · connected in {self.connect_seconds:.1f} s"
        )

    def engine_label(self) -> str:
        return f"remote {self.kind.name} {safe_url(self.base_url)} · {self.chat_format}"

    # -- prompts --------------------------------------------------------------------------
    def encode(self, messages: Sequence[Message]) -> list[int]:
        """An estimate (no tokenizer here): see ``estimate_tokens``."""
        return [0] * (sum(estimate_tokens(m.content) + 3 for m in messages) + 1)

    def plan(self, messages: Sequence[Message], params: SamplingParams) -> ContextPlan:
        window = self.context_window or 10**9  # unknown: the server says if it is too long
        return plan_context(self.encode, messages, params.max_new_tokens, window)

    # -- generation -------------------------------------------------------------------------
    def stop(self) -> None:
        """End the running reply at once: the reply returns what it has, and the stream
        is closed, which is what makes the server stop generating."""
        self._cancel.set()
        for lane in self._lanes:
            lane.stop()
        request = self._request
        if request is not None:
            request.chunks.put(_STOPPED)
            request.close()

    def _open_stream(self, call: Callable[[], Any]) -> _Request:
        """Start the request on a reader thread that queues its chunks (then _END, or the
        exception): the reply loop waits on the queue, so a stop never waits for the
        server's next chunk (a blocked read cannot be interrupted from outside)."""
        request = _Request(self._cancel)
        self._request = request

        def read() -> None:
            try:
                request.stream = call()
                if request.cancel.is_set():
                    return
                for chunk in request.stream:
                    request.chunks.put(chunk)
                    if request.cancel.is_set():
                        return
                request.chunks.put(_END)
            except BaseException as exc:  # noqa: BLE001 - handed to the reply loop
                request.chunks.put(exc)
            finally:
                if request.cancel.is_set():
                    request.close()

        threading.Thread(target=read, name="remote-stream", daemon=True).start()
        return request

    def reset(self) -> None:
        """Nothing is kept here between replies (the server keeps its own prefix cache)."""

    def int8_status(self) -> Int8Status:
        """A server makes no int8 copy here: nothing pending."""
        return NO_INT8_COPY

    def what_if(self, *args: Any, **kwargs: Any) -> StepRecord:
        raise EngineError("What-if needs a local model (a server gives one distribution).")

    def replay_lens(self, *args: Any, **kwargs: Any) -> list[StepRecord]:
        raise EngineError("A server's lens exists only for replies recorded while the lens was on.")

    def stream_columns(
        self,
        messages: Sequence[Message],
        columns: Sequence[SamplingParams],
        on_text: Callable[[int, str], None] = lambda row, piece: None,
        *,
        seeds: Sequence[int | None] | None = None,
        logprobs: bool = False,
        wait: bool = False,
        cancel: threading.Event | None = None,
    ) -> list[ReplyStats]:
        """One reply per entry of ``columns``: a request each, all at once (each on a
        lane of its own: the client and what was probed shared, the request state not)."""
        lanes = [self._lane() for _ in columns]
        self._lanes = lanes
        try:
            calls = [lane.stream_reply for lane in lanes]
            return stream_each(calls, messages, columns, on_text, seeds, cancel, True)
        finally:
            self._lanes = []

    def _lane(self) -> RemoteEngine:
        lane = copy.copy(self)
        lane.forget_requests()
        return lane

    def forget_requests(self) -> None:
        """No request of its own yet (a lane: a copy, which shares the original's)."""
        self._cancel, self._lock, self._request = threading.Event(), threading.Lock(), None
        self._lanes = []

    def stream_reply(
        self,
        messages: Sequence[Message],
        params: SamplingParams,
        on_text: Callable[[str], None] = lambda piece: None,
        *,
        lens: Any = None,
        wait: bool = False,
        cancel: threading.Event | None = None,
        **_: Any,
    ) -> ReplyStats:
        """Stream one reply from the server; raises ``EngineError`` (one clear line) or
        ``ReplyInterrupted`` (with the partial reply) when it fails."""
        if not self._lock.acquire(blocking=wait):
            raise EngineError("A reply is already being generated; stop it (Esc) or wait.")
        try:
            self._cancel = cancel if cancel is not None else threading.Event()
            return self._stream_reply(messages, params, on_text, lens)
        finally:
            self._request = None
            self._lock.release()

    def _stream_reply(
        self,
        messages: Sequence[Message],
        params: SamplingParams,
        on_text: Callable[[str], None],
        lens: Any,
    ) -> ReplyStats:
        start = time.perf_counter()
        plan = self.plan(messages, params)
        if plan.clipped:
            params = params.replace(max_new_tokens=plan.max_new_tokens)
        seed = None
        if params.do_sample:
            seed = params.seed if params.seed is not None else secrets.randbelow(2**31)
        fields, extra = request_fields(self.kind, params, seed)
        want_logprobs = self.kind.logprobs and lens is not None and getattr(lens, "active", False)
        chat = self.chat_format == "turns"
        stops = StopStringFilter(DIALOGUE_STOPS if self.chat_format == "dialogue" else ())
        if self.chat_format == "dialogue":
            fields["stop"] = list(DIALOGUE_STOPS)
        if want_logprobs:
            fields.update(
                {"logprobs": True, "top_logprobs": TOP_LOGPROBS}
                if chat
                else {"logprobs": TOP_LOGPROBS}
            )
        if self.kind.usage_option:
            fields["stream_options"] = {"include_usage": True}
        pieces: list[str] = []
        reasoning = ReasoningTags()  # a server's separate thinking, as <think> text
        state: dict[str, Any] = {"first": None, "tokens": 0, "finish": None, "usage": None}
        state["step"] = 0

        def emit(text: str) -> None:
            shown = stops.push(text)
            if shown:
                pieces.append(shown)
                on_text(shown)

        def stats(reason: FinishReason) -> ReplyStats:
            elapsed = time.perf_counter() - start
            usage = state["usage"]
            first = state["first"]
            return ReplyStats(
                prompt_tokens=getattr(usage, "prompt_tokens", None) or plan.used,
                new_tokens=getattr(usage, "completion_tokens", None) or state["tokens"],
                time_to_first_token=(first - start) if first is not None else elapsed,
                elapsed=elapsed,
                finish_reason=reason,
                text="".join(pieces),
                left_out=plan.left_out,
                window=self.context_window,
                max_new_tokens=params.max_new_tokens,
                clipped=plan.clipped,
                seed=seed,
            )

        if self._cancel.is_set():
            return stats("stopped")
        if chat:
            request = partial(
                self.client.chat.completions.create,
                messages=[{"role": m.role, "content": m.content} for m in plan.messages],
            )
        else:
            prompt = render_prompt(NoTokenizer(), plan.messages, self.chat_format, self.preamble)
            request = partial(self.client.completions.create, prompt=prompt)
        running = self._open_stream(
            partial(request, model=self.model, stream=True, extra_body=extra, **fields)
        )
        try:
            while True:
                chunk = running.chunks.get()
                if chunk is _END or chunk is _STOPPED:
                    break
                if isinstance(chunk, BaseException):
                    raise chunk
                if getattr(chunk, "usage", None):
                    state["usage"] = chunk.usage
                for choice in chunk.choices[:1]:
                    text = (choice.delta.content or "") if chat else (choice.text or "")
                    if chat:
                        text = reasoning.piece(choice.delta, text)
                    steps = (
                        logprob_steps(choice, chat, state, self.kind.label) if want_logprobs else []
                    )
                    if text or steps:
                        if state["first"] is None:
                            state["first"] = time.perf_counter()
                        state["tokens"] += max(1, len(steps))
                    for step in steps:
                        lens.add_step(step)
                    before = len(pieces)
                    emit(text)
                    if steps and len(pieces) > before:
                        steps[-1].piece = "".join(pieces[before:])
                    if choice.finish_reason:
                        state["finish"] = choice.finish_reason
                if stops.seen or self._cancel.is_set():
                    break
        except Exception as exc:  # noqa: BLE001 - every failure becomes one clear line
            if self._cancel.is_set():
                return stats("stopped")
            message = self.explain(exc)
            if pieces:
                raise ReplyInterrupted(
                    message + " The reply so far is kept.", stats("stopped")
                ) from None
            raise EngineError(message) from None
        finally:
            running.close()
        if self._cancel.is_set():
            return stats("stopped")
        emit(reasoning.close())
        tail = stops.flush()
        if tail:
            pieces.append(tail)
            on_text(tail)
        if stops.seen:
            return stats("eos")
        if state["finish"] is None:
            raise ReplyInterrupted(
                f"The stream from {safe_url(self.base_url)} ended without finishing the reply "
                "(the server went away?). The reply so far is kept.",
                stats("stopped"),
            )
        return stats("length" if state["finish"] == "length" else "eos")

    def explain(self, exc: Exception) -> str:
        """One line that says what went wrong and what to do (never the API key)."""
        # Also while connecting, before the model, the models and the kind are known.
        model, models = getattr(self, "model", ""), getattr(self, "models", [])
        kind = getattr(self, "kind", None)
        return explain_error(exc, self.base_url, model, models, self.api_key_env, kind)
