"""The plain data and errors every engine and its callers share: messages, reply
statistics, lens steps, capabilities. No torch, no UI, no engine behind them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]
FinishReason = Literal["eos", "length", "stopped"]
LensKind = Literal["stages", "logprobs", "none"]
# Loading reports its stages: a line of text and the fraction done (None: unknown).
ProgressFn = Callable[[str, "float | None"], None]


def no_progress(message: str, fraction: float | None) -> None:
    """A ``ProgressFn`` that reports nothing."""


@dataclass(frozen=True)
class Message:
    """One chat message; an assistant reply may keep the token ids it was generated as."""

    role: Role
    content: str
    token_ids: tuple[int, ...] | None = None


class EngineError(RuntimeError):
    """A failure the user should read: ``str()`` is one clear line."""


class EngineBusy(RuntimeError):
    """A second reply was asked for while one is still being generated."""


class ModelLoadError(EngineError):
    """A model that cannot load; ``str()`` is one line the user can act on."""

    def __init__(self, message: str, kind: str = "other") -> None:
        super().__init__(message)
        self.kind = kind


class ReplyInterrupted(EngineError):
    """The reply broke off (a server error or disconnect mid-stream); ``stats`` holds
    what had arrived, so the partial reply is kept."""

    def __init__(self, message: str, stats: ReplyStats) -> None:
        super().__init__(message)
        self.stats = stats


@dataclass(frozen=True)
class Capabilities:
    """What an engine can do; the app and the CLI ask this, never ``hasattr``."""

    kind: str  # "local", or the server's kind: vllm, tgi, transformers, llamacpp, ollama, openai
    supported: frozenset[str]  # sampling parameters honoured
    lens: LensKind = "stages"  # the lens: every stage (local), the server's final table, none
    lens_note: str = ""  # why the lens shows what it shows (or nothing)
    replay: bool = True  # the lens can be recomputed for a finished reply
    what_if: bool = True  # a lens step can be recomputed under other values
    chat_formats: tuple[str, ...] = ("turns", "dialogue", "raw")
    concurrent: bool = False  # serves several replies at once (else one at a time)

    def unsupported(self, names: Sequence[str]) -> list[str]:
        """The names among ``names`` this engine does not honour."""
        return [n for n in names if n not in self.supported]


@dataclass(frozen=True)
class Int8Status:
    """Where a background int8 copy of the weights stands (``Engine.int8_status``).

    ``pending``: still being made, replies use the float weights meanwhile. Once made,
    ``seconds`` says how long it took, or ``error`` why it failed (replies then stay on
    the float weights). An engine without such a copy reports nothing pending and
    neither figure."""

    pending: bool = False
    seconds: float | None = None
    error: str | None = None


NO_INT8_COPY = Int8Status()


@dataclass
class ReplyStats:
    """What one reply cost, why it ended, and how the prompt fitted the window."""

    prompt_tokens: int
    new_tokens: int
    time_to_first_token: float  # seconds from the request to the first new token
    elapsed: float  # seconds from the request to the end
    finish_reason: FinishReason
    text: str = ""
    token_ids: list[int] = field(default_factory=list)  # everything generated
    streaming_seconds: float = 0.0  # spent decoding text and in the callbacks
    reply_ids: list[int] | None = None  # the ids of the reply's text (None: re-tokenise)
    reused_tokens: int = 0  # prompt tokens whose KV came from the previous request
    left_out: int = 0  # earlier turns left out to fit the window
    window: int = 0  # the context window in force
    max_new_tokens: int = 0  # after clipping to the room left
    clipped: bool = False  # max_new_tokens was lowered to fit the window
    seed: int | None = None  # the RNG seed sampling used (drawn when none was set)
    logprobs: list[float] | None = None  # each drawn token's log-probability, raw (sweeps)

    @property
    def tokens_per_second(self) -> float:
        """New tokens over the whole request time (prefill included)."""
        return self.new_tokens / self.elapsed if self.elapsed > 0 else 0.0

    def summary(self) -> str:
        """One line: tokens, speed, first-token time, why it ended."""
        return (
            f"{self.new_tokens} tokens · {self.tokens_per_second:.1f} tok/s · "
            f"first token {self.time_to_first_token:.2f} s · {self.finish_reason}"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (the text is kept elsewhere, so it is left out)."""
        data = asdict(self)
        data.pop("text")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], text: str = "") -> ReplyStats:
        """Back from ``to_dict`` (unknown keys, from a newer chatapp, are ignored)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        return cls(text=text, **values)


@dataclass
class Candidate:
    """One row of the lens: a token and its probability after each stage."""

    token_id: int
    label: str
    probs: list[float]  # raw first, then one per stage


@dataclass
class StepRecord:
    """The next-token table of one generation step, stage by stage."""

    index: int
    stages: list[str]  # "raw" first
    candidates: list[Candidate]
    survivors: list[int]  # tokens with non-zero probability after each stage
    entropy_before: float  # bits, raw distribution
    entropy_after: float  # bits, final distribution
    mass: list[float] = field(default_factory=list)  # total probability per stage (checks)
    sampled_id: int | None = None
    sampled_prob: float | None = None  # final probability of the drawn token
    piece: str = ""  # the text this token completed in the reply
    what_if: str | None = None  # set when recomputed for other parameters
    source: str = ""  # where the table came from when not the local stages (a server)

    @property
    def sampled(self) -> Candidate | None:
        """The candidate that was drawn, if it is among the rows."""
        for c in self.candidates:
            if c.token_id == self.sampled_id:
                return c
        return None
