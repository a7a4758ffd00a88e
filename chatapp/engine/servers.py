"""The OpenAI-compatible servers chatapp knows: each kind's dialect for the sampling
values (``ServerKind``, ``request_fields``), how the kind is detected, the URL checks, the
errors turned into one line, and a lens step from a server's log-probabilities.

Nothing is dropped silently: a value a kind does not honour is reported by the panel and
the CLI. vLLM would otherwise apply the model's generation_config.json and Ollama its own
temperature, which is why every honoured value is always sent.

Imports no torch and no transformers (an import-linter contract keeps it so)."""

from __future__ import annotations

import ipaddress
import json
import math
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from chatapp.engine.types import Candidate, Capabilities, StepRecord
from chatapp.params import PARAMS, SamplingParams

TOP_LOGPROBS = 10  # the log-probabilities a lens step asks the server for
ALL_PARAMS = frozenset(spec.name for spec in PARAMS)
# Honoured by every OpenAI-compatible server (do_sample off is sent as temperature 0).
STANDARD = frozenset({"do_sample", "temperature", "top_p", "max_new_tokens", "seed"})


@dataclass(frozen=True)
class ServerKind:
    """One server's dialect: which of our values it honours, and their names there."""

    name: str
    label: str
    extra: dict[str, str] = field(default_factory=dict)  # ours -> its top-level field
    whole_config: bool = False  # the whole set as extra_body {"generation_config": json}
    logprobs: bool = True  # returns top_logprobs in a stream
    usage_option: bool = True  # accepts stream_options={"include_usage": true}

    @property
    def supported(self) -> frozenset[str]:
        return ALL_PARAMS if self.whole_config else STANDARD | set(self.extra)


KINDS: dict[str, ServerKind] = {
    "vllm": ServerKind(
        "vllm",
        "vLLM",
        {"top_k": "top_k", "min_p": "min_p", "repetition_penalty": "repetition_penalty"},
    ),
    "tgi": ServerKind("tgi", "TGI", usage_option=False),
    "transformers": ServerKind(
        "transformers",
        "transformers serve",
        whole_config=True,
        logprobs=False,
        usage_option=False,
    ),
    "llamacpp": ServerKind(
        "llamacpp",
        "llama.cpp",
        {
            "top_k": "top_k",
            "min_p": "min_p",
            "typical_p": "typical_p",
            "repetition_penalty": "repeat_penalty",
        },
    ),
    # llama-cpp-python's server (python -m llama_cpp.server): its own field names, no
    # /props, and models "owned_by": "me".
    "llama_cpp_python": ServerKind(
        "llama_cpp_python",
        "llama-cpp-python",
        {
            "top_k": "top_k",
            "min_p": "min_p",
            "typical_p": "typical_p",
            "repetition_penalty": "repeat_penalty",
        },
        usage_option=False,
    ),
    "ollama": ServerKind("ollama", "Ollama", usage_option=False),  # its /v1 ignores top_k
    "openai": ServerKind("openai", "an OpenAI-compatible server"),
}


def server_capabilities(kind: ServerKind) -> Capabilities:
    """What an engine on a server of ``kind`` can do: its values, its lens."""
    if kind.logprobs:
        note = (
            f"the final distribution {kind.label} sampled from (its top "
            f"{TOP_LOGPROBS} log-probabilities); the stage-by-stage table is a local-"
            "model feature"
        )
    else:
        note = (
            f"{kind.label} returns no log-probabilities, so the lens has nothing "
            "to show for its replies (a local model shows every stage)"
        )
    return Capabilities(
        kind=kind.name,
        supported=kind.supported,
        lens="logprobs" if kind.logprobs else "none",
        lens_note=note,
        replay=False,
        what_if=False,
        chat_formats=("turns", "dialogue", "raw"),
    )


def request_fields(
    kind: ServerKind, params: SamplingParams, seed: int | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The request's standard fields and its ``extra_body`` for ``params`` on ``kind``."""
    if kind.whole_config:
        config = {k: v for k, v in params.to_dict().items() if v is not None and k != "seed"}
        return ({"seed": seed} if seed is not None else {}), {
            "generation_config": json.dumps(config)
        }
    fields: dict[str, Any] = {"max_tokens": params.max_new_tokens, "top_p": params.top_p}
    fields["temperature"] = params.temperature if params.do_sample else 0.0
    if seed is not None:
        fields["seed"] = seed
    extra = {theirs: getattr(params, ours) for ours, theirs in kind.extra.items()}
    return fields, extra


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def http_warning(url: str) -> str | None:
    """A warning for plain http to another machine (None for https or loopback)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or is_loopback(parts.hostname):
        return None
    return (
        f"Plain http to {parts.hostname}: your messages (and any API key) cross the network "
        f"unencrypted. An SSH tunnel keeps them private: ssh -N -L 8000:localhost:"
        f"{parts.port or 80} {parts.hostname}, then --server http://127.0.0.1:8000/v1"
    )


def safe_url(url: str) -> str:
    """The URL without any user:password part (never shown, logged or saved)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class NoTokenizer:
    """Enough of a tokenizer for rendering the dialogue and raw formats as text: the
    server adds its own BOS when it tokenises the prompt."""

    bos_token = ""
    chat_template = None


def get_json(url: str) -> Any:
    """A probe: the JSON at ``url``, or None (not there, not JSON, unreachable)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:  # noqa: S310 - http(s) only
            return json.loads(response.read().decode("utf-8"))
    except (OSError, ValueError, urllib.error.URLError):
        return None


def detect_kind(root: str) -> str:
    """The kind, from what each server exposes besides the OpenAI API (FastAPI's
    schema first: one request tells vLLM and transformers serve apart)."""
    api = get_json(root + "/openapi.json")
    paths = set(api.get("paths", {})) if isinstance(api, dict) else set()
    if "/load_model" in paths:
        return "transformers"
    if "/tokenize" in paths and "/version" in paths:
        return "vllm"
    if "/extras/tokenize" in paths:
        return "llama_cpp_python"
    version = get_json(root + "/api/version")
    if isinstance(version, dict) and "version" in version:
        return "ollama"
    info = get_json(root + "/info")
    if isinstance(info, dict) and "model_id" in info:
        return "tgi"
    props = get_json(root + "/props")
    if isinstance(props, dict) and "default_generation_settings" in props:
        return "llamacpp"
    return "openai"


def no_such_model(base_url: str, model: str, models: list[str]) -> str:
    """The server has no such model: say which it has."""
    have = ", ".join(models[:10]) or "none"
    return f"The server at {safe_url(base_url)} has no model {model!r}; it has: {have}"


def explain_error(
    exc: Exception,
    base_url: str,
    model: str,
    models: list[str],
    api_key_env: str | None,
    kind: ServerKind | None,
) -> str:
    """One line that says what went wrong and what to do (never the API key)."""
    import openai

    url = safe_url(base_url)
    if isinstance(exc, openai.APITimeoutError):
        return f"The server at {url} did not answer in time ({exc.__class__.__name__})."
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc
        text = str(cause).lower()
        if (
            "name or service not known" in text
            or "nodename nor servname" in text
            or ("getaddrinfo" in text)
            or "name resolution" in text
        ):
            return f"Cannot reach {url}: the host name {urlsplit(url).hostname!r} is not known."
        if "refused" in text:
            return f"Cannot reach {url}: connection refused (is the server running, on that port?)."
        if "ssl" in text or "certificate" in text or "tls" in text:
            return f"Cannot reach {url}: the TLS handshake failed ({cause})."
        return f"Cannot reach {url}: {cause}"
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        if api_key_env:
            return (
                f"The server at {url} refused the API key from ${api_key_env} ({exc.status_code})."
            )
        return (
            f"The server at {url} wants an API key ({exc.status_code}): put it in an "
            "environment variable and name it with --api-key-env (default OPENAI_API_KEY)."
        )
    if isinstance(exc, openai.NotFoundError):
        return no_such_model(base_url, model, models)
    if isinstance(exc, openai.BadRequestError | openai.UnprocessableEntityError):
        detail = error_detail(exc)
        lower = detail.lower()
        if "model" in lower and any(
            w in lower for w in ("requested", "not found", "does not exist")
        ):
            return no_such_model(base_url, model, models)
        names = [
            n
            for n in (
                *[s.name for s in PARAMS],
                *(kind.extra.values() if kind else ()),
                "temperature",
                "top_p",
                "max_tokens",
                "seed",
                "logprobs",
                "top_logprobs",
                "stop",
                "generation_config",
            )
            if n in detail
        ]
        which = f" (parameter: {', '.join(dict.fromkeys(names))})" if names else ""
        return f"The server rejected the request{which}: {detail}"
    if isinstance(exc, openai.InternalServerError | openai.APIStatusError):
        return (
            f"The server at {url} failed ({getattr(exc, 'status_code', '?')}): {error_detail(exc)}"
        )
    return f"The connection to {url} broke mid-reply ({exc.__class__.__name__}: {exc})."


def error_detail(exc: Any) -> str:
    """The server's own words for a failed request."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        for key in ("detail", "message", "error"):
            value = body.get(key)
            if isinstance(value, dict):
                value = value.get("message")
            if value:
                return str(value)
    return str(getattr(exc, "message", exc))


def logprob_step(
    index: int, token: str, logprob: float, top: list[tuple[str, float]], label: str
) -> StepRecord:
    """A lens step from a server's log-probabilities: one column, the final distribution."""
    ids: dict[str, int] = {}

    def token_id(text: str) -> int:
        return ids.setdefault(text, len(ids))

    candidates = [
        Candidate(token_id(t), visible_token(t), [math.exp(lp)]) for t, lp in top if lp > -math.inf
    ]
    chosen = token_id(token)
    if all(c.token_id != chosen for c in candidates):
        candidates.append(Candidate(chosen, visible_token(token), [math.exp(logprob)]))
    probs = [c.probs[0] for c in candidates]
    mass = sum(probs)
    entropy = -sum(p * math.log2(p) for p in probs if p > 0)
    return StepRecord(
        index=index,
        stages=["server"],
        candidates=candidates,
        survivors=[len(candidates)],
        entropy_before=entropy,
        entropy_after=entropy,
        mass=[mass],
        sampled_id=chosen,
        sampled_prob=math.exp(logprob) if logprob > -math.inf else 0.0,
        source=f"{label}'s final distribution (top {len(top)} log-probabilities; "
        f"{mass * 100:.0f}% of the mass)",
    )


def visible_token(token: str) -> str:
    """A token with its whitespace made visible."""
    return token.replace(" ", "␣").replace("\n", "⏎").replace("\t", "⇥")


def logprob_steps(choice: Any, chat: bool, state: dict[str, Any], label: str) -> list[StepRecord]:
    """One lens step per token of a streamed chunk, from the server's top
    log-probabilities; ``state["step"]`` counts the steps so far."""
    logprobs = getattr(choice, "logprobs", None)
    if logprobs is None:
        return []
    rows: list[tuple[str, float, list[tuple[str, float]]]] = []
    if chat:
        for entry in getattr(logprobs, "content", None) or []:
            top = [(t.token, t.logprob) for t in (entry.top_logprobs or [])]
            rows.append((entry.token, entry.logprob, top))
    else:
        tokens = getattr(logprobs, "tokens", None) or []
        chosen = getattr(logprobs, "token_logprobs", None) or []
        tops = getattr(logprobs, "top_logprobs", None) or []
        for i, token in enumerate(tokens):
            top = sorted((tops[i] or {}).items(), key=lambda kv: -kv[1]) if i < len(tops) else []
            rows.append((token, chosen[i] if i < len(chosen) else -math.inf, top))
    steps = []
    for token, logprob, top in rows:
        steps.append(logprob_step(state["step"], token, logprob, top, label))
        state["step"] += 1
    return steps
