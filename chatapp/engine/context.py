"""Fitting a conversation into the model's context window.

Before each reply the prompt plus ``max_new_tokens`` must fit the window. The oldest
turns leave first (a user message with the replies that follow it); the system prompt and
the newest user message always stay. If only ``max_new_tokens`` is too big for the room
left, it is clipped. If the newest message alone cannot fit, nothing is sent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from chatapp.engine.types import Message

MIN_REPLY_TOKENS = 1


class ContextTooLong(ValueError):
    """The newest message cannot fit the window even alone; ``str()`` says so."""


@dataclass
class ContextPlan:
    """What will be sent: the messages kept, their ids, and what had to give way."""

    messages: list[Message]
    prompt_ids: list[int]
    left_out: int  # earlier turns (user messages with their replies) left out
    max_new_tokens: int
    clipped: bool  # max_new_tokens was lowered to the room left
    window: int

    @property
    def used(self) -> int:
        """Tokens of the window the prompt takes."""
        return len(self.prompt_ids)


def _turns(messages: Sequence[Message]) -> tuple[list[Message], list[list[Message]]]:
    """System messages, and the rest grouped into turns that each start with a user message."""
    system = [m for m in messages if m.role == "system"]
    turns: list[list[Message]] = []
    for m in messages:
        if m.role == "system":
            continue
        if m.role == "user" or not turns:
            turns.append([m])
        else:
            turns[-1].append(m)
    return system, turns


def plan_context(
    encode: Callable[[Sequence[Message]], list[int]],
    messages: Sequence[Message],
    max_new_tokens: int,
    window: int,
) -> ContextPlan:
    """The largest tail of the conversation whose prompt plus the reply fits ``window``."""
    system, turns = _turns(messages)
    ids = encode(messages)
    if len(ids) + max_new_tokens <= window:
        return ContextPlan(list(messages), ids, 0, max_new_tokens, False, window)
    # Find the fewest oldest turns to leave out (bisection: prompts shrink as turns go).
    low, high = 1, max(len(turns) - 1, 0)
    best: tuple[int, list[Message], list[int]] | None = None
    while low <= high:
        mid = (low + high) // 2
        kept = system + [m for turn in turns[mid:] for m in turn]
        kept_ids = encode(kept)
        if len(kept_ids) + max_new_tokens <= window:
            best = (mid, kept, kept_ids)
            high = mid - 1
        else:
            low = mid + 1
    if best is not None:
        left, kept, kept_ids = best
        return ContextPlan(kept, kept_ids, left, max_new_tokens, False, window)
    # Even the newest turn alone does not leave room for max_new_tokens: clip it.
    left = max(len(turns) - 1, 0)
    kept = system + [m for turn in turns[left:] for m in turn]
    kept_ids = encode(kept)
    room = window - len(kept_ids)
    if room < MIN_REPLY_TOKENS:
        raise ContextTooLong(
            f"This message needs {len(kept_ids):,} tokens with the system prompt, more than "
            f"the {window:,}-token context window leaves room for; shorten it (nothing was sent)."
        )
    return ContextPlan(kept, kept_ids, left, min(room, max_new_tokens), True, window)
