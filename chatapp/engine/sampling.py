"""Sampling over the tokens the stages left, not the whole vocabulary.

After top-k, a few dozen of the vocabulary's scores are finite, yet transformers'
``TopPLogitsWarper`` sorts all of them and ``generate`` draws with ``torch.multinomial``
over all of them: on the CPU a large share of a decode step. ``SurvivorTopP`` is the same top-p filter computed
over the finite scores only, and ``DrawAmongSurvivors`` draws from the softmax of the
finite scores only; ``generate`` then runs greedy and takes the drawn token.

The distribution a token is drawn from is the one the stages produce, as with plain
``generate`` (the lens shows it). What changes is which token a given seed draws: the random numbers
are spent on the survivors, not on the whole vocabulary, so a seed gives other replies
than plain ``generate`` with it. That is why only ``--quant auto`` samples this way on the
CPU, and a mode named with ``--quant`` samples as plain transformers does.
"""

from __future__ import annotations

from typing import Any

# Above this many finite scores (no top-k, say) the whole-vocabulary code runs: it is
# what sorting and drawing over them costs anyway.
SURVIVOR_LIMIT = 4096


def _survivors(row: Any) -> Any:
    return (row > float("-inf")).nonzero().squeeze(-1)


class SurvivorTopP:
    """``TopPLogitsWarper``'s filter (same rule: drop the least likely tokens whose
    cumulative probability is at most 1 - top_p, keep at least ``min_tokens_to_keep``)
    over the finite scores only, row by row. Ties are ordered by token id (a stable sort)."""

    def __init__(self, warper: Any) -> None:
        self.warper = warper
        self.top_p = float(warper.top_p)
        self.filter_value = warper.filter_value
        self.min_tokens_to_keep = int(warper.min_tokens_to_keep)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        ids, valid = survivor_ids(scores)
        if ids.shape[-1] > SURVIVOR_LIMIT or ids.shape[-1] == 0:
            return self.warper(input_ids, scores)
        vocab = scores.shape[-1]
        values = scores.gather(-1, ids.clamp(max=vocab - 1)).masked_fill(~valid, float("-inf"))
        # Padding entries sort first and weigh nothing; ties are ordered by token id.
        ascending, order = torch.sort(values, dim=-1, stable=True)
        cumulative = ascending.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative <= (1 - self.top_p)
        remove[..., -self.min_tokens_to_keep :] = False
        kept = ascending.masked_fill(remove, self.filter_value)
        if scores.shape[0] == 1:
            return scores.scatter(-1, ids.gather(-1, order), kept)
        # Padding entries point one past the vocabulary: into a column dropped after.
        wider = torch.nn.functional.pad(scores, (0, 1))
        return wider.scatter(-1, ids.gather(-1, order), kept)[..., :vocab]


def survivor_ids(scores: Any) -> tuple[Any, Any]:
    """Each row's entries above -inf (not removed by a filter): (ids, valid), both rows x most, ids in increasing order.
    A row with fewer than the most is padded with ``vocab`` (one past the last id), its
    ``valid`` False there."""
    import torch

    if scores.shape[0] == 1:
        ids = _survivors(scores[0]).unsqueeze(0)
        return ids, torch.ones_like(ids, dtype=torch.bool)
    where = (scores > float("-inf")).nonzero()
    counts = torch.bincount(where[:, 0], minlength=scores.shape[0])
    most = int(counts.max()) if counts.numel() else 0
    slot = (
        torch.arange(where.shape[0], device=scores.device)
        - (torch.cumsum(counts, 0) - counts)[where[:, 0]]
    )
    ids = torch.full(
        (scores.shape[0], most), scores.shape[-1], dtype=torch.long, device=scores.device
    )
    ids[where[:, 0], slot] = where[:, 1]
    return ids, ids < scores.shape[-1]


def draw_token(scores: Any, generator: Any = None) -> int:
    """A token drawn from the softmax of ``scores`` (one row of the vocabulary): over the
    finite ones only when they are few. ``generator``: a row's own (default: torch's)."""
    import torch

    alive = _survivors(scores)
    if 0 < alive.numel() <= SURVIVOR_LIMIT:
        probs = torch.softmax(scores[alive].float(), dim=-1)
        return int(alive[torch.multinomial(probs, 1, generator=generator)])
    probs = torch.softmax(scores.float(), dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


class DrawAmongSurvivors:
    """The last processor of a sampled reply: draws the token (``draw_token``) and returns
    scores on which ``generate``'s greedy choice is that token."""

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        out = torch.full_like(scores, float("-inf"))
        for row in range(scores.shape[0]):
            out[row, draw_token(scores[row])] = 0.0
        return out


def survivor_stages(stages: Any) -> Any:
    """``stages`` (a ``LogitsProcessorList``) with its top-p filter computed over the
    survivors; every other stage is the same object."""
    from transformers import LogitsProcessorList, TopPLogitsWarper

    return LogitsProcessorList(
        SurvivorTopP(stage) if isinstance(stage, TopPLogitsWarper) else stage for stage in stages
    )
