"""A reasoning model's thinking, apart from its answer.

Models such as Qwen3 and the DeepSeek-R1 distills write their thinking first, between
``<think>`` and ``</think>`` (an R1 distill's template puts the opening tag in the prompt,
so its reply holds only the closing one). A server that returns the thinking apart
(``reasoning_content`` or ``reasoning``: vLLM, llama.cpp, Ollama) has it wrapped in the
same tags by the remote engine, so a reply's text keeps its thinking either way and the
history, exports and the next prompt see what the model wrote; the app shows the thinking
in a block of its own (``split``).
"""

from __future__ import annotations

from dataclasses import dataclass

OPEN, CLOSE = "<think>", "</think>"


@dataclass(frozen=True)
class Split:
    thinking: str | None  # None: the reply has no thinking
    answer: str
    thinking_done: bool  # the closing tag has come (the answer has begun)


def split(text: str) -> Split:
    """``text`` as its thinking and its answer."""
    start = text.lstrip()
    if start.startswith(OPEN):
        inside = start[len(OPEN) :]
        thinking, closed, answer = inside.partition(CLOSE)
        if not closed:
            return Split(thinking.strip("\n"), "", False)
        return Split(thinking.strip("\n"), answer.lstrip("\n"), True)
    if CLOSE in text:  # the opening tag was in the prompt
        thinking, _, answer = text.partition(CLOSE)
        return Split(thinking.strip("\n"), answer.lstrip("\n"), True)
    return Split(None, text, True)


def answer_of(text: str) -> str:
    return split(text).answer


class ReasoningTags:
    """A server's thinking, sent apart from the answer (``reasoning_content`` from vLLM
    and llama.cpp, ``reasoning`` from Ollama), put into the reply's text between the
    tags, so that it is kept and shown as a local model's is."""

    def __init__(self) -> None:
        self.open = False

    def piece(self, delta: object, content: str) -> str:
        """The text for one streamed delta: its thinking (tagged) and its content."""
        thought = getattr(delta, "reasoning_content", None) or getattr(delta, "reasoning", None)
        out = ""
        if isinstance(thought, str) and thought:
            if not self.open:
                out, self.open = OPEN, True
            out += thought
        if content and self.open:
            out, self.open = out + CLOSE + "\n\n", False
        return out + content

    def close(self) -> str:
        """The closing tag, if the stream ended while thinking."""
        if not self.open:
            return ""
        self.open = False
        return CLOSE
