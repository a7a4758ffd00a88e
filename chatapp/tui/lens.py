"""The lens panel (one step's next-token table, stage by stage) and the heat-map text."""

from __future__ import annotations

import math

from rich.console import Group
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


EIGHTHS = " ▏▎▍▌▋▊▉█"  # a bar's last cell, in eighths
LEVELS = "▁▂▃▄▅▆▇█"  # a strip's point, low to high
BAR_CELLS = 3  # a probability's bar: 3 cells, 24 steps
STRIP_CHUNK = 40  # steps per row of a strip (a chat column at 80x24 holds 44)


def bar(fraction: float, cells: int = BAR_CELLS) -> str:
    """``fraction`` (0–1) as a bar of ``cells`` characters, in eighths of a cell (a
    non-zero fraction shows at least an eighth)."""
    eighths = round(max(0.0, min(1.0, fraction)) * cells * 8)
    if fraction > 0 and eighths == 0:
        eighths = 1
    full, part = divmod(eighths, 8)
    text = "█" * full + (EIGHTHS[part] if part else "")
    return text.ljust(cells)


def survivors_bar(count: int, vocabulary: int, cells: int = 4) -> str:
    """A survivor count as a bar on a log scale (1 token: empty; the vocabulary: full)."""
    if count <= 1 or vocabulary <= 1:
        return " " * cells
    return bar(math.log(count) / math.log(vocabulary), cells)


def level(value: float, top: float) -> str:
    """``value`` (0–``top``) as one of eight heights."""
    if top <= 0:
        return LEVELS[0]
    return LEVELS[min(7, max(0, int(value / top * 7.999)))]


def _pct(p: float) -> str:
    if p <= 0:
        return "·"
    if p < 0.001:
        return "<0.1%"
    return f"{p * 100:.1f}%"


def bar_cells(width: int, stages: int) -> int:
    """How wide each probability's bar can be for the table to fit ``width`` columns: a
    token column of 14, then per stage a bar, a space, the figure (5) and a gap."""
    room = (width - 14) // max(1, stages) - 7
    return max(0, min(BAR_CELLS, room))


def shown_stages(step: StepRecord, width: int) -> list[int]:
    """The stages a table ``width`` columns wide shows: all of them, or (too narrow for
    that, as each side of compare's lens at 80 columns) the raw one and the last."""
    if len(step.stages) <= 2 or 14 + 7 * len(step.stages) <= width:
        return list(range(len(step.stages)))
    return [0, len(step.stages) - 1]


def render_step(step: StepRecord, position: str, width: int = 120) -> Table:
    """A Rich table of the step: a row per candidate, a column per stage, each
    probability with a bar beside it (as wide as ``width`` allows)."""
    stages = shown_stages(step, width)
    cells = bar_cells(width, len(stages))
    title = f"Step {position}"
    if step.source:
        title += f" · {step.source}"
    if step.what_if:
        title += f" · what-if: {step.what_if}"
    table = Table(title=title, title_justify="left", expand=True, box=None, pad_edge=False)
    table.add_column("token", no_wrap=True, max_width=14)
    for i in stages:
        name = STAGE_TITLES.get(step.stages[i], step.stages[i])
        if len(stages) < len(step.stages) and i:
            name = f"after {name}"
        table.add_column(name, justify="right", no_wrap=True)
    for candidate in step.candidates:
        style = "bold reverse" if candidate.token_id == step.sampled_id else ""
        probs = [candidate.probs[i] for i in stages]
        table.add_row(
            Text(candidate.label),
            *(Text(f"{bar(p, cells)} {_pct(p):>5}" if cells else _pct(p)) for p in probs),
            style=style,
        )
    drawn = _pct(step.sampled_prob or 0.0)
    if len(stages) < len(step.stages):  # narrow: the same facts, shorter
        table.caption = (
            f"survivors {step.survivors[0]:,} → {step.survivors[-1]:,} · entropy "
            f"{step.entropy_before:.2f} → {step.entropy_after:.2f} bits · drawn {drawn}"
        )
        table.caption_justify = "left"
        return table
    vocabulary = step.survivors[0] if step.survivors else 0
    survivors = " → ".join(
        f"{STAGE_TITLES.get(s, s)} {n:,} {survivors_bar(n, vocabulary).rstrip()}"
        for s, n in zip(step.stages, step.survivors, strict=False)
    )
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

    def show(self, step: StepRecord, position: str, steps: list[StepRecord] | None = None) -> None:
        """The step's table; with the reply's ``steps``, its strip under it, this step
        marked."""
        self.step = step
        table = render_step(step, position, self.size.width or self.app.size.width)
        if not steps:
            self.update(table)
            extra = 0
        else:
            self.update(Group(table, strip_text(steps, step.index)))
            extra = 3
        # Auto height measured the table a line or two short (the caption's entropy and
        # drawn-token line was cut off): size it from what it holds; CSS caps it.
        self.styles.height = len(step.candidates) + 6 + extra  # border, title, header, captions

    def show_pair(
        self, sides: list[tuple[str, StepRecord | None]], position: str, note: str
    ) -> None:
        """Compare's lens: one step of two columns side by side (``render_pair``)."""
        steps = [step for _, step in sides if step is not None]
        self.step = steps[0] if steps else None
        width = self.size.width or self.app.size.width
        self.update(render_pair(sides, position, note, width))
        rows = max((len(step.candidates) for step in steps), default=0)
        self.styles.height = rows + 9  # the note, border, title, header, wrapped captions


def render_pair(
    sides: list[tuple[str, StepRecord | None]], position: str, note: str, width: int
) -> Group:
    """Compare's lens: one step of two columns side by side (``sides``: each column's
    name and its step, None where its reply had ended), under a line that says where
    the replies part."""
    half = max(20, (width - 3) // 2)
    grid = Table.grid(expand=True, padding=(0, 1))
    grid.add_column(ratio=1)
    grid.add_column(ratio=1)
    cells = []
    for name, step in sides:
        if step is None:
            cells.append(Text(f"{name}: its reply had ended", style="dim"))
        else:
            cells.append(render_step(step, f"{position} · {name}", half))
    grid.add_row(*cells)
    return Group(Text(note, style="bold"), grid)


def _strip_rows(steps: list[StepRecord]) -> tuple[list[tuple[str, str]], float]:
    """The strip's two rows (name, a point per step): the drawn token's probability and
    the entropy of the distribution it was drawn from (scaled to the reply's highest)."""
    top = max(s.entropy_after for s in steps) or 1.0
    probs = "".join(level(s.sampled_prob or 0.0, 1.0) for s in steps)
    entropy = "".join(level(s.entropy_after, top) for s in steps)
    return [("p", probs), ("H", entropy)], top


def _strip_legend(top: float) -> str:
    return f"p: drawn token's probability · H: entropy (top {top:.1f} bits)"


def strip_markup(steps: list[StepRecord], reply_index: int) -> str:
    """The reply's strip as Textual markup: each point opens its step in the lens."""
    if not steps:
        return ""
    rows, top = _strip_rows(steps)
    lines = []
    for start in range(0, len(steps), STRIP_CHUNK):  # rows of STRIP_CHUNK steps: p, H
        for name, points in rows:
            clickable = "".join(
                f"[@click=app.lens_select({reply_index},{step.index})]{point}[/]"
                for step, point in zip(
                    steps[start : start + STRIP_CHUNK],
                    points[start : start + STRIP_CHUNK],
                    strict=True,
                )
            )
            lines.append(f"[dim]{name}[/] {clickable}")
    return "\n".join([*lines, f"[dim]{_strip_legend(top)}[/]"])


def strip_text(steps: list[StepRecord], marked: int) -> Text:
    """The reply's strip for the lens, with the step shown (``marked``) reversed: the
    ``STRIP_CHUNK`` steps around it."""
    start = max(0, min(marked - STRIP_CHUNK // 2, len(steps) - STRIP_CHUNK))
    steps = steps[start : start + STRIP_CHUNK]
    rows, top = _strip_rows(steps)
    text = Text()
    for name, points in rows:
        text.append(f"{name} ", style="dim")
        for step, point in zip(steps, points, strict=True):
            text.append(point, style="reverse" if step.index == marked else "")
        text.append("\n")
    text.append(_strip_legend(top), style="dim")
    return text


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
