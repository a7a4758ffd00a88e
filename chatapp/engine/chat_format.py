"""Turning a list of chat messages into prompt token ids."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]

START, END = "<start_of_turn>", "<end_of_turn>"


@dataclass(frozen=True)
class Message:
    """One chat message."""

    role: Role
    content: str


def _token_id(tokenizer: Any, token: str) -> int | None:
    """The id of a single vocabulary entry, or None (cheap: no vocabulary copy)."""
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or token_id == tokenizer.unk_token_id:
        return None
    return int(token_id)


def _is_gemma(tokenizer: Any) -> bool:
    return _token_id(tokenizer, START) is not None and _token_id(tokenizer, END) is not None


def fold_system(messages: Sequence[Message]) -> list[Message]:
    """Gemma has no system role: put the system text at the top of the first user turn."""
    system = "\n\n".join(m.content for m in messages if m.role == "system" and m.content)
    rest = [m for m in messages if m.role != "system"]
    if not system:
        return rest
    for i, m in enumerate(rest):
        if m.role == "user":
            rest[i] = Message("user", f"{system}\n\n{m.content}")
            return rest
    return [Message("user", system), *rest]


def gemma_prompt(messages: Sequence[Message], bos: str = "<bos>") -> str:
    """Gemma's turn format, ending with an open model turn."""
    parts = [bos]
    for m in fold_system(messages):
        role = "model" if m.role == "assistant" else "user"
        parts.append(f"{START}{role}\n{m.content}{END}\n")
    parts.append(f"{START}model\n")
    return "".join(parts)


def render_prompt(tokenizer: Any, messages: Sequence[Message]) -> str:
    """The prompt text: the tokenizer's chat template, or Gemma's turn format without one."""
    gemma = _is_gemma(tokenizer)
    msgs = fold_system(messages) if gemma else list(messages)
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": m.role, "content": m.content} for m in msgs],
            tokenize=False,
            add_generation_prompt=True,
        )
    if gemma:
        return gemma_prompt(msgs, bos=tokenizer.bos_token or "")
    # A model with neither: a plain transcript is the best guess.
    lines = [f"{m.role.capitalize()}: {m.content}" for m in msgs]
    return (tokenizer.bos_token or "") + "\n".join(lines) + "\nAssistant:"


def encode_prompt(tokenizer: Any, messages: Sequence[Message]) -> list[int]:
    """Prompt token ids (special tokens come from the rendered text itself)."""
    text = render_prompt(tokenizer, messages)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def stop_token_ids(tokenizer: Any, model_config_eos: Any = None) -> list[int]:
    """EOS ids, plus ``<end_of_turn>`` where the vocabulary has it."""
    ids: list[int] = []
    for candidate in (model_config_eos, tokenizer.eos_token_id):
        if isinstance(candidate, int):
            ids.append(candidate)
        elif isinstance(candidate, (list, tuple)):
            ids.extend(int(c) for c in candidate)
    end = _token_id(tokenizer, END)
    if end is not None:
        ids.append(end)
    return sorted(set(ids))
