"""Turning a conversation into prompt token ids: chat turns, a plain dialogue, or raw text.

Three formats:
- ``turns``: the model's chat template, or Gemma's ``<start_of_turn>`` format for a Gemma
  checkpoint that comes without one;
- ``dialogue``: a plain-text conversation (a preamble with example exchanges, then
  ``User: …`` / ``Assistant: …`` lines) that a base model continues well; generation stops
  at ``\\nUser:`` or a blank line;
- ``raw``: the text as it is, like the tutorial's ``tokenizer(prompt)`` cell; the
  conversation is one running text.

An assistant message may carry the token ids the model generated for it: they are spliced
into the prompt as they are, never re-tokenised, so a conversation's prompt extends the
previous request's ids exactly and its KV cache can be reused.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from chatapp.engine.types import Message

ChatFormat = Literal["turns", "dialogue", "raw"]
CHAT_FORMATS: tuple[str, ...] = ("turns", "dialogue", "raw")

START, END = "<start_of_turn>", "<end_of_turn>"

DIALOGUE_PREAMBLE = (
    "A conversation between a curious user and a helpful, concise assistant.\n"
    "User: Hello! Who are you?\n"
    "Assistant: I'm a helpful assistant. I answer questions briefly.\n"
    "User: 台灣最高的山是哪一座？\n"
    "Assistant: 玉山，海拔約 3,952 公尺。\n"
    "User: What is 12 times 3?\n"
    "Assistant: 36.\n"
)
# A new speaker line (the model may write it in lower case) or a blank line ends a reply.
DIALOGUE_STOPS: tuple[str, ...] = ("\nUser:", "\nuser:", "\nAssistant:", "\n\n")
_DIALOGUE_MARK = "chatapp dialogue format"


def _token_id(tokenizer: Any, token: str) -> int | None:
    """The id of a single vocabulary entry, or None (cheap: no vocabulary copy)."""
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or token_id == tokenizer.unk_token_id:
        return None
    return int(token_id)


def _is_gemma(tokenizer: Any) -> bool:
    return _token_id(tokenizer, START) is not None and _token_id(tokenizer, END) is not None


def has_dialogue_template(tokenizer: Any) -> bool:
    """The tokenizer's chat template is chatapp's dialogue format (the bundled model's)."""
    return _DIALOGUE_MARK in (getattr(tokenizer, "chat_template", None) or "")


def default_format(tokenizer: Any, model_name: str = "") -> ChatFormat:
    """``turns`` for a model with its own template or an instruction-tuned name, else
    ``dialogue`` (a base model never learned turn tokens)."""
    if has_dialogue_template(tokenizer):
        return "dialogue"
    if getattr(tokenizer, "chat_template", None):
        return "turns"
    name = model_name.lower().rstrip("/")
    if name.endswith("-it") or any(w in name for w in ("instruct", "-chat", "-it-")):
        return "turns"
    return "dialogue"


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


Segment = str | tuple[int, ...]


def _text(segments: Sequence[Segment]) -> str:
    return "".join(s for s in segments if isinstance(s, str))


def _gemma_segments(messages: Sequence[Message], bos: str) -> list[Segment]:
    segments: list[Segment] = [bos]
    for m in fold_system(messages):
        if m.role == "assistant":
            segments.append(f"{START}model\n")
            segments.append(m.token_ids if m.token_ids is not None else m.content)
            segments.append(f"{END}\n")
        else:
            segments.append(f"{START}user\n{m.content}{END}\n")
    segments.append(f"{START}model\n")
    return segments


def _dialogue_segments(messages: Sequence[Message], preamble: str, bos: str) -> list[Segment]:
    system = "\n".join(m.content for m in messages if m.role == "system" and m.content)
    head = bos + (f"{system}\n" if system else "") + preamble
    segments: list[Segment] = [head]
    for m in messages:
        if m.role == "user":
            segments.append(f"User: {m.content.strip()}\n")
        elif m.role == "assistant":
            if m.token_ids is not None:  # the ids begin with the space the model generated
                segments += ["Assistant:", m.token_ids, "\n"]
            else:
                segments.append(f"Assistant: {m.content.strip()}\n")
    segments.append("Assistant:")
    return segments


def _raw_segments(messages: Sequence[Message]) -> list[Segment]:
    """One running text: every message as it is, the replies continuing it."""
    segments: list[Segment] = []
    for m in messages:
        if m.role == "assistant" and m.token_ids is not None:
            segments.append(m.token_ids)
        else:
            segments.append(m.content)
    return segments


def _template_segments(tokenizer: Any, messages: Sequence[Message]) -> list[Segment]:
    """The model's chat template, with each generated reply's ids spliced where it goes."""
    msgs = fold_system(messages) if _is_gemma(tokenizer) else list(messages)
    marks: dict[str, tuple[int, ...]] = {}
    rendered = []
    for i, m in enumerate(msgs):
        content = m.content
        if m.role == "assistant" and m.token_ids is not None:
            mark = f"\x00chatapp-reply-{i}\x00"
            marks[mark] = m.token_ids
            content = mark
        rendered.append({"role": m.role, "content": content})
    text = tokenizer.apply_chat_template(rendered, tokenize=False, add_generation_prompt=True)
    segments: list[Segment] = []
    for mark, ids in marks.items():
        before, _, text = text.partition(mark)
        segments += [before, ids]
    segments.append(text)
    return segments


def prompt_segments(
    tokenizer: Any,
    messages: Sequence[Message],
    chat_format: ChatFormat = "turns",
    preamble: str = DIALOGUE_PREAMBLE,
) -> list[Segment]:
    """The prompt as text pieces and spliced reply ids, in order."""
    bos = tokenizer.bos_token or ""
    if chat_format == "raw":
        return _raw_segments(messages)
    if chat_format == "dialogue":
        return _dialogue_segments(messages, preamble, bos)
    if getattr(tokenizer, "chat_template", None) and not has_dialogue_template(tokenizer):
        return _template_segments(tokenizer, messages)
    if _is_gemma(tokenizer):
        return _gemma_segments(messages, bos)
    # A model with neither: a plain transcript is the best guess.
    return _dialogue_segments(messages, "", bos)


def render_prompt(
    tokenizer: Any,
    messages: Sequence[Message],
    chat_format: ChatFormat = "turns",
    preamble: str = DIALOGUE_PREAMBLE,
) -> str:
    """The prompt as text (replies as their text, not their ids)."""
    plain = [Message(m.role, m.content) for m in messages]
    return _text(prompt_segments(tokenizer, plain, chat_format, preamble))


def encode_prompt(
    tokenizer: Any,
    messages: Sequence[Message],
    chat_format: ChatFormat = "turns",
    preamble: str = DIALOGUE_PREAMBLE,
) -> list[int]:
    """Prompt token ids. Text pieces are tokenised one by one (special tokens come from the
    text itself; raw text gets the tokenizer's own BOS, as ``tokenizer(prompt)`` does);
    generated replies keep their ids."""
    ids: list[int] = []
    first = True
    for segment in prompt_segments(tokenizer, messages, chat_format, preamble):
        if isinstance(segment, tuple):
            if first and chat_format == "raw" and tokenizer.bos_token_id is not None:
                ids.append(int(tokenizer.bos_token_id))
            ids.extend(segment)
        elif segment:
            special = first and chat_format == "raw"
            ids.extend(tokenizer(segment, add_special_tokens=special)["input_ids"])
        else:
            continue
        first = False
    return ids


def dialogue_chat_template(preamble: str = DIALOGUE_PREAMBLE) -> str:
    """A Jinja chat template that renders exactly what ``render_prompt(..., 'dialogue')``
    renders, for the converted bundled model's ``tokenizer_config.json``."""
    return (
        "{#- " + _DIALOGUE_MARK + ": a plain-text dialogue for a base model; "
        "stop at '\\nUser:' or a blank line -#}"
        "{{- bos_token -}}"
        "{%- set system = messages | selectattr('role', 'equalto', 'system') "
        "| map(attribute='content') | select | join('\\n') -%}"
        "{%- if system %}{{ system + '\\n' }}{% endif -%}"
        "{{- " + json.dumps(preamble, ensure_ascii=False) + " -}}"
        "{%- for m in messages if m.role != 'system' -%}"
        "{%- if m.role == 'user' %}{{ 'User: ' + (m.content | trim) + '\\n' }}"
        "{%- else %}{{ 'Assistant: ' + (m.content | trim) + '\\n' }}{% endif -%}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt %}{{ 'Assistant:' }}{% endif -%}"
    )


def stop_token_ids(
    tokenizer: Any, model_config_eos: Any = None, end_of_turn: bool = True
) -> list[int]:
    """EOS ids, plus ``<end_of_turn>`` where the vocabulary has it (raw text stops at EOS
    alone, as a plain ``generate`` call does)."""
    ids: list[int] = []
    for candidate in (model_config_eos, tokenizer.eos_token_id):
        if isinstance(candidate, int):
            ids.append(candidate)
        elif isinstance(candidate, (list, tuple)):
            ids.extend(int(c) for c in candidate)
    end = _token_id(tokenizer, END) if end_of_turn else None
    if end is not None:
        ids.append(end)
    return sorted(set(ids))
