"""The lens panel (one step's next-token table, stage by stage) and the heat-map text."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.markup import escape
from textual.widgets import Static

from chatapp.engine.types import StepRecord

STAGE_TITLES = {
    "raw": "raw",
    "repetition_penalty": "rep",
    "no_repeat_ngram": "ngram",
    "temperature": "temp",
    "top_k": "top-k",
    "top_p": "top-p",
    "min_p": "min-p",
    "typical_p": "typ-p",
    "server": "server",
}


def _pct(p: float) -> str:
    if p <= 0:
        return "·"
    if p < 0.001:
        return "<0.1%"
    return f"{p * 100:.1f}%"


def render_step(step: StepRecord, position: str) -> Table:
    """A Rich table of the step: a row per candidate, a column per stage."""
    title = f"Step {position}"
    if step.source:
        title += f" · {step.source}"
    if step.what_if:
        title += f" · what-if: {step.what_if}"
    table = Table(title=title, title_justify="left", expand=True, box=None, pad_edge=False)
    table.add_column("token", no_wrap=True, max_width=14)
    for stage in step.stages:
        table.add_column(STAGE_TITLES.get(stage, stage), justify="right", no_wrap=True)
    for candidate in step.candidates:
        style = "bold reverse" if candidate.token_id == step.sampled_id else ""
        table.add_row(Text(candidate.label), *(_pct(p) for p in candidate.probs), style=style)
    survivors = " → ".join(
        f"{STAGE_TITLES.get(s, s)} {n:,}" for s, n in zip(step.stages, step.survivors, strict=False)
    )
    drawn = _pct(step.sampled_prob or 0.0)
    table.caption = (
        f"survivors: {survivors}\nentropy {step.entropy_before:.2f} → {step.entropy_after:.2f} bits"
        f" · drawn token at {drawn}"
    )
    table.caption_justify = "left"
    return table


class LensView(Static):
    """Shows one step of the lens; empty until a reply is recorded."""

    def __init__(self) -> None:
        super().__init__(
            "Probability lens: recording from now on. Send a message, or Ctrl+R to "
            "regenerate the last reply, to see each step's next-token table.",
            id="lens",
        )
        self.step: StepRecord | None = None

    def explain(self, text: str) -> None:
        """No table to show: say why (a server that returns no log-probabilities)."""
        self.step = None
        self.update(text)
        self.styles.height = "auto"

    def show(self, step: StepRecord, position: str) -> None:
        self.step = step
        self.update(render_step(step, position))
        # Auto height measured the table a line or two short (the caption's entropy and
        # drawn-token line was cut off): size it from what it holds; CSS caps it.
        self.styles.height = len(step.candidates) + 6  # border, title, header, 2 captions, 1


def heat_markup(steps: list[StepRecord], reply_index: int) -> str:
    """The reply as Textual markup: each token coloured by the probability it was drawn
    with (red = unlikely, green = confident) and clickable to open its step in the lens."""
    parts = []
    for step in steps:
        if not step.piece:
            continue
        p = step.sampled_prob or 0.0
        red = int(200 * (1 - p)) + 40
        green = int(160 * p) + 40
        colour = f"#{red:02x}{green:02x}40"
        parts.append(
            f"[on {colour}][@click=app.lens_select({reply_index},{step.index})]"
            f"{escape(step.piece)}[/][/]"
        )
    return "".join(parts)
