"""The KV cache a ``LocalEngine`` keeps between requests.

A conversation is cheap to continue: the engine keeps the KV cache of the last request
with the token ids it covers, and the next request evaluates only the tokens after their
longest common prefix. A copy cut at the prompt's end (the snapshot) serves a
regenerate, since the live cache grows past the prompt and a full sliding-window layer
cannot be cut back.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any


class KVCache:
    """The live cache and the prompt snapshot of one engine, with the ids they cover.

    ``static``: the fast path's one static cache, reused for every reply (its tensors keep
    their addresses, so the compiled decode step is reused turn after turn); it takes no
    snapshots (a regenerate crops it instead). ``reuse`` off: every request starts from
    an empty cache (benchmarks)."""

    def __init__(self, model: Any, static: Any = None) -> None:
        self.model = model
        self.static = static
        self.reuse = True
        self._live: Any = None  # the cache of the last request …
        self._live_ids: list[int] = []  # … and the token ids it covers
        self._snapshot: tuple[list[int], Any] | None = None  # the cache at a prompt's end

    def clear(self) -> None:
        """Forget both caches."""
        self._live, self._live_ids, self._snapshot = None, [], None

    def bytes(self) -> int:
        """Memory held by the kept cache and the prompt snapshot."""
        total = 0
        for cache in (self._live, self._snapshot[1] if self._snapshot else None):
            for layer in getattr(cache, "layers", []) or []:
                for tensor in (getattr(layer, "keys", None), getattr(layer, "values", None)):
                    if tensor is not None and hasattr(tensor, "numel"):
                        total += int(tensor.numel() * tensor.element_size())
        return total

    def new(self, for_generate: bool = False) -> Any:
        """An empty cache: the static one, emptied, for a reply on the fast path; else a
        dynamic one (the lens's recomputations never touch the static one)."""
        if for_generate and self.static is not None:
            import torch

            with torch.inference_mode():  # its tensors were made in inference mode
                self.static.reset()
            return self.static
        from transformers import DynamicCache

        return DynamicCache(config=self.model.config)

    @staticmethod
    def croppable(cache: Any) -> bool:
        """False once a sliding-window layer has filled its window (it dropped old tokens)."""
        for layer in getattr(cache, "layers", []):
            if getattr(layer, "is_sliding", False) and layer.get_seq_length() >= getattr(
                layer, "sliding_window", float("inf")
            ):
                return False
        return True

    def for_prompt(self, ids: list[int]) -> tuple[Any, int]:
        """A cache holding the KV of ``ids[:n]`` for the largest ``n`` on hand, and ``n``."""
        limit = len(ids) - 1  # the last prompt token is always evaluated: it gives the logits
        best: tuple[Any, int, bool] = (None, 0, False)
        if self.reuse:
            candidates = [(self._live_ids, self._live, False)]
            if self._snapshot is not None:
                candidates.append((self._snapshot[0], self._snapshot[1], True))
            for cached_ids, cache, is_snapshot in candidates:
                if cache is None:
                    continue
                common = common_prefix(cached_ids, ids, limit)
                if common < len(cached_ids) and not self.croppable(cache):
                    continue  # would need a crop a sliding layer cannot make
                if common > best[1]:
                    best = (cache, common, is_snapshot)
        cache, reused, is_snapshot = best
        if cache is None or reused == 0:
            self._live, self._live_ids = None, []
            return self.new(for_generate=True), 0
        if is_snapshot:
            cache = copy.deepcopy(cache)  # the snapshot stays for the next regenerate
        else:
            self._live, self._live_ids = None, []
        if cache.get_seq_length() > reused:
            import torch

            with torch.inference_mode():  # a static cache's length is an inference tensor
                cache.crop(reused - int(cache.get_seq_length()))  # negative: tokens removed
        return cache, reused

    def keep(self, cache: Any, ids: list[int]) -> None:
        """Remember ``cache`` as the live cache; it covers the start of ``ids``."""
        if self.reuse:
            self._live, self._live_ids = cache, ids[: cache.get_seq_length()]

    def take_snapshot(self, cache: Any, ids: list[int], length: int) -> None:
        """Keep a copy of ``cache`` cut to ``ids[:length]``, for a regenerate."""
        if not self.reuse or length <= 0 or self.static is not None:
            return
        if self._snapshot is not None and self._snapshot[0] == ids[:length]:
            return
        have = cache.get_seq_length()
        if have == length:
            self._snapshot = (ids[:length], copy.deepcopy(cache))
        elif have > length and self.croppable(cache):
            snapshot = copy.deepcopy(cache)
            snapshot.crop(length - have)
            self._snapshot = (ids[:length], snapshot)


def common_prefix(a: Sequence[int], b: Sequence[int], limit: int) -> int:
    """The length of the longest common prefix of ``a`` and ``b``, at most ``limit``."""
    n = min(len(a), len(b), limit)
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
