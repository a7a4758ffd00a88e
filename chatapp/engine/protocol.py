"""What every engine reports: a reply's statistics (plain data, no torch, no UI)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

FinishReason = Literal["eos", "length", "stopped"]


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
    seed: int | None = None  # the seed sampling used (drawn when none was set)

    @property
    def tokens_per_second(self) -> float:
        """New tokens over the whole request time (prefill included)."""
        return self.new_tokens / self.elapsed if self.elapsed > 0 else 0.0

    def summary(self) -> str:
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
