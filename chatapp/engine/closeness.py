"""How close a quantized model's output stays to the unquantized model's.

The measure follows generation: a fixed text's first ``PREFIX`` tokens are one prompt
(prefilled in one call), then every later token is fed one at a time, as decode feeds the
tokens it sampled. At each step the next-token distribution of the model under test is
compared with the reference's: the mean KL divergence from the reference, in bits, and
the share of steps where both rank the same token first. Next-token distributions rather
than whole greedy replies, because one near-tie early in a greedy reply sends every later
token elsewhere and says little about the model.

Bounds: an 8-bit mode must stay within ``MAX_KL_BITS`` and ``MIN_TOP1``; a 4-bit mode
gives up more and is held to ``MAX_KL_BITS_4BIT`` and ``MIN_TOP1_4BIT``. Each mode's
figures on the bundled model come from ``python bench/engine_modes.py`` (see
docs/performance.md); a crude 5-bit quantization with one scale per tensor fails both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MAX_KL_BITS, MIN_TOP1 = 0.2, 0.70
MAX_KL_BITS_4BIT, MIN_TOP1_4BIT = 0.5, 0.55
PREFIX = 32

# English prose and the tutorial's Traditional Chinese, a few hundred tokens.
CLOSENESS_TEXT = (
    "The sea is wide and deep, and the light on it changes every hour of the day. "
    "Fishermen read its colour the way others read a clock: grey at dawn, green by noon, "
    "and a hard silver when the wind turns. When you sample from a language model, the "
    "temperature decides how far the choice may wander from the most likely word, top-k "
    "keeps only the k best candidates, and top-p keeps the smallest set whose probability "
    "adds up to p. A repetition penalty makes words already used less likely again.\n"
    "使用繁體中文回答，請問什麼是大型語言模型？大型語言模型是一種以大量文字訓練的神經網路，"
    "它根據前面的文字預測下一個字。溫度越高，回答越有創意；溫度越低，回答越穩定。"
    "Top-k 只保留機率最高的 k 個候選字，Top-p 則保留累積機率達到 p 的最小集合。\n"
)


@dataclass(frozen=True)
class Closeness:
    kl_bits: float  # mean KL(reference || model) over positions, in bits
    top1: float  # share of positions where both pick the same most likely token
    positions: int

    def close(self, four_bit: bool = False) -> bool:
        if four_bit:
            return self.kl_bits <= MAX_KL_BITS_4BIT and self.top1 >= MIN_TOP1_4BIT
        return self.kl_bits <= MAX_KL_BITS and self.top1 >= MIN_TOP1

    def __str__(self) -> str:
        return f"KL {self.kl_bits:.4f} bits · top-1 {self.top1 * 100:.1f}% ({self.positions} positions)"


def next_token_logprobs(model: Any, ids: Any, prefix: int = PREFIX, one_pass: bool = False) -> Any:
    """Log-probabilities (float32) of the next token after ``ids[:prefix]`` and after
    each later token, fed one at a time as decode feeds them (the last token's own
    prediction is left out).

    ``one_pass``: all positions in one forward pass instead, for a reference model whose
    weights are used alike by both (unquantized): the same distributions up to rounding,
    in a fraction of the time. A quantized mode is measured as it decodes."""
    import torch
    from transformers import DynamicCache

    ids = ids.to(model.device)
    if one_pass:
        with torch.inference_mode():
            logits = model(input_ids=ids[:, :-1]).logits[0, prefix - 1 :].float()
        return torch.log_softmax(logits, dim=-1).cpu()
    cache = DynamicCache(config=model.config)
    rows = []
    with torch.inference_mode():
        out = model(
            input_ids=ids[:, :prefix], past_key_values=cache, use_cache=True, logits_to_keep=1
        )
        rows.append(out.logits[0, -1:].float())
        for position in range(prefix, ids.shape[1] - 1):
            out = model(
                input_ids=ids[:, position : position + 1], past_key_values=cache, use_cache=True
            )
            rows.append(out.logits[0, -1:].float())
    return torch.log_softmax(torch.cat(rows), dim=-1).cpu()


def compare(reference: Any, logprobs: Any) -> Closeness:
    """``Closeness`` of two ``next_token_logprobs`` results over the same ids."""
    kl = (reference.exp() * (reference - logprobs)).sum(-1).mean().item() / math.log(2)
    top1 = (reference.argmax(-1) == logprobs.argmax(-1)).float().mean().item()
    return Closeness(kl_bits=kl, top1=top1, positions=int(reference.shape[0]))


def closeness_ids(tokenizer: Any) -> Any:
    return tokenizer(CLOSENESS_TEXT, return_tensors="pt").input_ids
