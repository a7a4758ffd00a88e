"""A sweep: one prompt, one or two sampling parameters over a few values, several seeded
samples at each point, and figures that say how the texts changed (docs/sweep.md).

No torch and no UI here: the engine generates the rows (``stream_columns``: one batch on
the local engine), these functions make the figures and the table, JSON or CSV.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import threading
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from chatapp.engine.types import Message, ReplyStats
from chatapp.params import PARAMS, SamplingParams

REPEAT_N = 3  # the repeated-n-gram rate counts trigrams
# Each figure and its column in the table (docs/sweep.md defines them).
FIGURES = {
    "mean_length": "mean len",
    "distinct_1": "distinct-1",
    "distinct_2": "distinct-2",
    "mean_logprob": "log-prob",
    "repeat_rate": f"rep {REPEAT_N}-gram",
    "ended_share": "ended",
}


def ngrams(tokens: Sequence[Hashable], n: int) -> list[tuple[Hashable, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(samples: Sequence[Sequence[Hashable]], n: int) -> float:
    """Distinct n-grams across all samples over all n-grams across them (0 when none)."""
    grams = [g for sample in samples for g in ngrams(sample, n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repeat_rate(samples: Sequence[Sequence[Hashable]], n: int = REPEAT_N) -> float:
    """The share of n-grams that repeat one seen earlier in the same sample, over all
    samples' n-grams (0 when none)."""
    repeats = total = 0
    for sample in samples:
        seen: set[tuple[Hashable, ...]] = set()
        for gram in ngrams(sample, n):
            total += 1
            if gram in seen:
                repeats += 1
            seen.add(gram)
    return repeats / total if total else 0.0


def mean(values: Iterable[float]) -> float:
    items = list(values)
    return sum(items) / len(items) if items else 0.0


@dataclass
class SweepPoint:
    """One point of the sweep: its values, and the samples drawn there."""

    values: dict[str, Any]
    samples: list[ReplyStats] = field(default_factory=list)

    def tokens(self) -> list[list[int]]:
        """Each sample's tokens that spell its text (no stop token)."""
        return [s.reply_ids if s.reply_ids is not None else s.token_ids for s in self.samples]

    def figures(self) -> dict[str, float]:
        tokens = self.tokens()
        logprobs = [lp for s in self.samples for lp in (s.logprobs or [])]
        return {
            "mean_length": mean(len(t) for t in tokens),
            "distinct_1": distinct_n(tokens, 1),
            "distinct_2": distinct_n(tokens, 2),
            "mean_logprob": mean(logprobs) if logprobs else math.nan,
            "repeat_rate": repeat_rate(tokens),
            "ended_share": mean(s.finish_reason == "eos" for s in self.samples),
        }

    def label(self) -> str:
        return " · ".join(f"{k} {v}" for k, v in self.values.items())


@dataclass
class Sweep:
    prompt: str
    base: SamplingParams
    grid: dict[str, list[Any]]  # parameter → values (one or two parameters)
    samples: int
    seed: int
    points: list[SweepPoint] = field(default_factory=list)
    complete: bool = True  # False: stopped before every point was drawn

    def grid_points(self) -> list[dict[str, Any]]:
        """Each point's values, in the order the sweep draws them."""
        names = list(self.grid)
        return [
            dict(zip(names, combo, strict=True))
            for combo in itertools.product(*(self.grid[n] for n in names))
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "params": self.base.to_dict(),
            "grid": self.grid,
            "samples": self.samples,
            "seed": self.seed,
            "complete": self.complete,
            "points": [
                {
                    "values": p.values,
                    "figures": p.figures(),
                    "texts": [s.text for s in p.samples],
                    "seeds": [s.seed for s in p.samples],
                }
                for p in self.points
            ],
        }


# Values a sweep of each parameter starts from (the app's sweep dialog offers them).
SUGGESTED = {
    "temperature": "0.2, 0.6, 1.0, 1.4",
    "top_p": "0.5, 0.8, 0.95, 1.0",
    "top_k": "1, 10, 50, 200",
    "min_p": "0, 0.05, 0.1, 0.2",
    "typical_p": "0.5, 0.8, 0.95, 1.0",
    "repetition_penalty": "1.0, 1.1, 1.3, 1.6",
    "no_repeat_ngram_size": "0, 2, 3",
    "max_new_tokens": "16, 32, 64",
    "do_sample": "false, true",
}
SWEEPABLE = tuple(spec.name for spec in PARAMS if spec.name in SUGGESTED)


def parse_values(name: str, text: str) -> list[Any]:
    """``0.2,0.6,1.0`` as the parameter's values (each checked as the panel checks it)."""
    spec = next((s for s in PARAMS if s.name == name), None)
    if spec is None:
        raise ValueError(f"unknown parameter {name!r}")
    values = []
    for item in (v.strip() for v in text.split(",")):
        if not item:
            continue
        values.append(spec.parse(item))
    if not values:
        raise ValueError(f"no values for {name}")
    return values


def sweep_rows(sweep: Sweep) -> tuple[list[SweepPoint], list[SamplingParams], list[int | None]]:
    """The points, and one row (parameters, seed) per sample of each point, in order."""
    points, rows, seeds = [], [], []
    for values in sweep.grid_points():
        points.append(SweepPoint(values))
        params = sweep.base.replace(**values)
        for i in range(sweep.samples):
            rows.append(params)
            seeds.append(sweep.seed + i if params.do_sample else None)
    return points, rows, seeds


def run_sweep(
    engine: Any,
    sweep: Sweep,
    on_progress: Callable[[int, int], None] = lambda done, total: None,
    batch: int = 16,
    before: Sequence[Message] = (),
    cancel: threading.Event | None = None,
) -> Sweep:
    """Generate every sample of ``sweep`` with ``engine.stream_columns`` (``batch`` rows
    at a time) after the messages ``before`` it (a chat so far), and fill its points.

    With ``cancel`` set, the batch under way stops and is dropped: ``sweep.complete`` is
    False, and only the points whose samples were all drawn are kept."""
    points, rows, seeds = sweep_rows(sweep)
    messages = [*before, Message("user", sweep.prompt)]
    results: list[ReplyStats] = []
    for start in range(0, len(rows), batch):
        if cancel is not None and cancel.is_set():
            break
        drawn = engine.stream_columns(
            messages,
            rows[start : start + batch],
            seeds=seeds[start : start + batch],
            logprobs=True,
            wait=True,
            cancel=cancel,
        )
        if cancel is not None and cancel.is_set():
            break  # this batch was cut short: its samples are not the sweep's
        results += drawn
        on_progress(len(results), len(rows))
    for index, point in enumerate(points):
        point.samples = results[index * sweep.samples : (index + 1) * sweep.samples]
    sweep.points = [p for p in points if len(p.samples) == sweep.samples]
    sweep.complete = len(results) == len(rows)
    return sweep


def _cell(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.3f}"


def render(sweep: Sweep, fmt: str = "table") -> str:
    """The sweep as a table (with each point's texts), JSON or CSV."""
    if fmt == "json":
        return json.dumps(sweep.to_dict(), ensure_ascii=False, indent=2)
    names = list(sweep.grid)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow([*names, *FIGURES])
        for point in sweep.points:
            figures = point.figures()
            writer.writerow([*(point.values[n] for n in names), *(figures[f] for f in FIGURES)])
        return out.getvalue()
    header = [*names, *FIGURES.values()]
    body = []
    for point in sweep.points:
        figures = point.figures()
        body.append([*(str(point.values[n]) for n in names), *(_cell(figures[f]) for f in FIGURES)])
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in [header, *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for point in sweep.points:
        lines += ["", f"## {point.label()}"]
        for sample in point.samples:
            text = " ".join(sample.text.split())
            lines.append(f"- [seed {sample.seed}] {text}")
    return "\n".join(lines) + "\n"


def to_conversation(sweep: Sweep, model: str = "", engine: str = "") -> Any:
    """The sweep as a chat: the prompt, and every sample as a version of the reply (each
    with its parameters, seed and figures' raw material), so the history lists, searches
    and exports it like any chat."""
    import time

    from chatapp.conversation import Conversation, ReplyVersion, Turn

    now = time.time()
    turn = Turn(sweep.prompt)
    for point in sweep.points:
        params = sweep.base.replace(**point.values)
        for sample in point.samples:
            version = ReplyVersion(params, sample.text, model, engine, sample, finished=now)
            version.status = "stopped" if sample.finish_reason == "stopped" else "done"
            turn.versions.append(version)
    turn.shown = 0 if turn.versions else -1
    grid = "; ".join(f"{k} {', '.join(str(v) for v in vs)}" for k, vs in sweep.grid.items())
    return Conversation(title=f"Sweep: {grid} × {sweep.samples}", turns=[turn])


def save_sweep(sweep: Sweep, model: str = "", engine: str = "", store: Any = None) -> int:
    """Keep the sweep in the history (``store``: the user's by default); its chat id."""
    from chatapp.conversation import ChatSession
    from chatapp.store import ChatStore

    return ChatSession(store if store is not None else ChatStore()).import_chat(
        to_conversation(sweep, model, engine)
    )
