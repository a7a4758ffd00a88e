"""Incremental detokenization that never splits a multi-byte character."""

from __future__ import annotations

from typing import Any

_REPLACEMENT = "\ufffd"


class IncrementalDecoder:
    """Feed token ids one by one; get back only whole new text.

    Decodes a short window (from ``_prefix`` on) rather than the whole reply, so the
    cost per token stays flat, and holds text back while it ends in U+FFFD (an
    incomplete UTF-8 sequence split over byte tokens).  The pieces joined equal the
    decode of all ids, less a trailing incomplete character at the very end.
    """

    def __init__(self, tokenizer: Any, skip_special_tokens: bool = True) -> None:
        self._tokenizer = tokenizer
        self._skip = skip_special_tokens
        self.ids: list[int] = []
        self._prefix = 0  # window start
        self._read = 0  # ids before this are already emitted

    def _decode(self, ids: list[int]) -> str:
        return str(self._tokenizer.decode(ids, skip_special_tokens=self._skip))

    def push(self, token_id: int) -> str:
        """Add one token; returns the new text it completes ('' if none yet)."""
        self.ids.append(int(token_id))
        before = self._decode(self.ids[self._prefix : self._read])
        after = self._decode(self.ids[self._prefix :])
        if len(after) > len(before) and not after.endswith(_REPLACEMENT):
            piece = after[len(before) :]
            self._prefix = self._read
            self._read = len(self.ids)
            return piece
        return ""

    def flush(self) -> str:
        """Text still held back at the end (a trailing incomplete character is dropped)."""
        before = self._decode(self.ids[self._prefix : self._read])
        after = self._decode(self.ids[self._prefix :])
        self._prefix = self._read = len(self.ids)
        return after[len(before) :].rstrip(_REPLACEMENT)
