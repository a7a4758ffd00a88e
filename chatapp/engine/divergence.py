"""Where two compare columns' replies part, and which stage parted them.

At the first step where the drawn tokens differ, each column's stages are applied to the
same next-token scores (the prefix the two share), and the probability of both drawn
tokens is followed stage by stage. If one column's stages removed the token the other
drew, that stage separated them ("column 2: top-p 0.5 removed '␣blue' (p 0.031)");
otherwise both could have drawn either, and the draw did.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chatapp.params import SamplingParams

# A stage's name (chatapp.engine.lens.STAGE_NAMES) → the parameter that sets it.
STAGE_PARAMS = {
    "repetition_penalty": ("rep", "repetition_penalty"),
    "no_repeat_ngram": ("no-repeat", "no_repeat_ngram_size"),
    "temperature": ("T", "temperature"),
    "top_k": ("top-k", "top_k"),
    "top_p": ("top-p", "top_p"),
    "min_p": ("min-p", "min_p"),
    "typical_p": ("typical-p", "typical_p"),
}

Trace = list[tuple[str, list[float]]]  # (stage, probability of each token) from "raw" on


@dataclass
class Divergence:
    """The first step where two replies drew different tokens, and why."""

    step: int
    text: str  # one line for the user
    column: int = 0  # the column whose stages removed the other's token (0: the draw)
    stage: str = ""  # that stage
    prob: float = 0.0  # the removed token's probability just before it


def first_step_apart(a: Sequence[int], b: Sequence[int]) -> int | None:
    """The first index where ``a`` and ``b`` differ (the shorter one's length when one
    is the start of the other), or None when they are equal."""
    for index, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return index
    return None if len(a) == len(b) else min(len(a), len(b))


def removal(trace: Trace, which: int) -> tuple[str, float] | None:
    """The first stage after which token ``which`` has no probability left, and its
    probability just before; None when it survives every stage."""
    before = trace[0][1][which]
    for stage, probs in trace[1:]:
        if probs[which] <= 0.0 < before:
            return stage, before
        before = probs[which]
    return None


def stage_label(stage: str, params: SamplingParams) -> str:
    short, name = STAGE_PARAMS.get(stage, (stage, ""))
    if not name:
        return short
    value = getattr(params, name)
    return f"{short} {value:g}" if isinstance(value, float) else f"{short} {value}"


def explain(
    step: int,
    labels: tuple[str, str],
    columns: tuple[int, int],
    params: tuple[SamplingParams, SamplingParams],
    traces: tuple[Trace, Trace],
) -> Divergence:
    """Why the replies of ``columns`` (numbers, e.g. 1 and 2) part at ``step``: each
    trace follows both drawn tokens (first: the first column's) through that column's
    stages."""
    # The later column's stages first (they are what the user changed); when each
    # column's stages removed the other's token, both are said.
    found = []
    for side in (1, 0):
        other = 1 - side
        removed = removal(traces[side], other)
        if removed is not None:
            stage, prob = removed
            found.append(
                Divergence(
                    step,
                    f"column {columns[side]}'s {stage_label(stage, params[side])} removed "
                    f"'{labels[other]}' (p {prob:.3f}), which column {columns[other]} drew",
                    columns[side],
                    stage,
                    prob,
                )
            )
    if found:
        first = found[0]
        first.text = f"step {step + 1}: " + "; and ".join(d.text for d in found)
        return first
    final = [trace[-1][1] for trace in traces]
    return Divergence(
        step,
        f"step {step + 1}: both could draw either; column {columns[0]} drew "
        f"'{labels[0]}' (p {final[0][0]:.3f}), column {columns[1]} drew "
        f"'{labels[1]}' (p {final[1][1]:.3f})",
    )


class StagesUnknown:
    """The ``divergence`` of an engine that cannot follow a token through the stages:
    a server (no whole distribution) or the fake engine. It says nothing."""

    def divergence(
        self,
        messages: Sequence[object],
        replies: tuple[Sequence[int], Sequence[int]],
        params: tuple[SamplingParams, SamplingParams],
        columns: tuple[int, int] = (1, 2),
    ) -> Divergence | None:
        return None
