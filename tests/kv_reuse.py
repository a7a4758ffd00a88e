"""How much of a prompt a reply must take from the KV cache, computed from the chat format
and the tokenizer (the tests of the engine and of the app assert it after each new turn)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chatapp.engine.chat_format import Message, prompt_segments


def least_kv_reuse(engine: Any, messages: Sequence[Message], generated: Sequence[int]) -> int:
    """The fewest prompt tokens the engine must reuse when ``messages`` (as sent: the
    window's plan) follow the engine's last request, which generated ``generated``.

    That is the whole prompt less what the new turn adds (the tokens after the last
    reply's ids: the reply's closing, the new message, the template around it), less the
    end of the last reply that its cache cannot hold: from the first of its ids that is
    not what was generated and evaluated (a sampled token is evaluated only by the next
    step, so the last one never is). Prompt pieces are tokenised one by one, as
    ``encode_prompt`` does, so these counts add up to the prompt's."""
    segments = prompt_segments(engine.tokenizer, messages, engine.chat_format, engine.preamble)
    replies = [i for i, segment in enumerate(segments) if isinstance(segment, tuple)]
    if not replies:
        return 0  # no reply of the model's in the prompt: nothing of it is cached
    last = replies[-1]
    new_turn = sum(
        len(engine.tokenizer(segment, add_special_tokens=False)["input_ids"])
        for segment in segments[last + 1 :]
        if isinstance(segment, str) and segment
    )
    reply = segments[last]
    evaluated = list(generated)[:-1]
    same = 0
    while same < min(len(reply), len(evaluated)) and reply[same] == evaluated[same]:
        same += 1
    return len(engine.encode(messages)) - new_turn - (len(reply) - same)
