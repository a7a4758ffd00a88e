"""The sweep in the app ("Sweep…" in the palette): a dialog that sets it up, and a screen
that runs it and plots one figure against the swept value.

The plot is textual-plotext's widget over plotext (each widget has its own figure, so
nothing global is drawn into). In the table under it, the cell cursor picks both the
point (its row) and the plotted figure (its column); the point's texts show below.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Input, Label, Select, Static
from textual_plotext import PlotextPlot

from chatapp.engine.types import Message
from chatapp.params import SamplingParams
from chatapp.sweep import FIGURES, SUGGESTED, SWEEPABLE, Sweep, parse_values, run_sweep, save_sweep
from chatapp.tui.widgets import OrderedInput

# What the figures are called on the plot's title.
FIGURE_TITLES = {
    "mean_length": "mean length (tokens)",
    "distinct_1": "distinct-1",
    "distinct_2": "distinct-2",
    "mean_logprob": "mean log-probability of the drawn tokens",
    "repeat_rate": "repeated 3-gram rate",
    "ended_share": "share ended by EOS or a stop string",
}


@dataclass
class SweepRequest:
    """What the dialog asks for: the sweep (its points not drawn yet) and the messages
    before its prompt."""

    sweep: Sweep
    before: list[Message]


class SweepDialog(ModalScreen[SweepRequest | None]):
    """Prompt, parameter and values (a second parameter makes a grid), samples and seed."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, prompt: str, params: SamplingParams, before: list[Message]) -> None:
        super().__init__()
        self.prompt, self.params, self.before = prompt, params, before

    def compose(self) -> ComposeResult:
        choices = [(name, name) for name in SWEEPABLE]
        with Vertical(classes="dialog wide", id="sweep-dialog"):
            yield Static("Sweep · the panel's values, one or two of them varied · Enter runs")
            yield OrderedInput(self.prompt, placeholder="Prompt", id="sweep-prompt")
            with Horizontal(classes="sweep-line"):
                yield Select(choices, value="temperature", allow_blank=False, id="sweep-param")
                yield OrderedInput(SUGGESTED["temperature"], id="sweep-values")
            with Horizontal(classes="sweep-line"):
                yield Select(choices, prompt="and (a grid)", id="sweep-param2")
                yield OrderedInput("", placeholder="its values", id="sweep-values2")
            with Horizontal(classes="sweep-line"):
                yield Label("samples at each value", classes="sweep-label")
                yield OrderedInput("4", placeholder="samples", id="sweep-samples")
                yield Label("first seed", classes="sweep-label")
                yield OrderedInput(str(self.params.seed or 0), placeholder="seed", id="sweep-seed")
            yield Static("", id="dialog-error")

    def on_mount(self) -> None:
        self.query_one("#sweep-prompt", Input).focus()

    @on(Select.Changed, "#sweep-param")
    @on(Select.Changed, "#sweep-param2")
    def _suggest(self, event: Select.Changed) -> None:
        target = "#sweep-values" if event.select.id == "sweep-param" else "#sweep-values2"
        value = event.value if isinstance(event.value, str) else ""
        self.query_one(target, Input).value = SUGGESTED.get(value, "")

    @on(Input.Submitted)
    def _run(self) -> None:
        try:
            self.dismiss(SweepRequest(self.read(), self.before))
        except ValueError as exc:
            self.query_one("#dialog-error", Static).update(escape(str(exc)))

    def read(self) -> Sweep:
        """The sweep the fields describe (ValueError: what is wrong, for the user)."""
        prompt = self.query_one("#sweep-prompt", Input).value.strip()
        if not prompt:
            raise ValueError("Write the prompt to sweep.")
        first = str(self.query_one("#sweep-param", Select).value)
        grid = {first: parse_values(first, self.query_one("#sweep-values", Input).value)}
        second = self.query_one("#sweep-param2", Select).value
        if isinstance(second, str) and second:
            if second == first:
                raise ValueError("The grid needs two different parameters.")
            grid[second] = parse_values(second, self.query_one("#sweep-values2", Input).value)
        samples = _whole(self.query_one("#sweep-samples", Input).value, "samples", 1, 64)
        seed = _whole(self.query_one("#sweep-seed", Input).value, "seed", 0, 2**32 - 1)
        return Sweep(prompt, self.params, grid, samples, seed)

    def action_cancel(self) -> None:
        self.dismiss(None)


def _whole(text: str, name: str, low: int, high: int) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"{name}: {text.strip() or 'nothing'} is not a whole number") from None
    if not low <= value <= high:
        raise ValueError(f"{name}: {value} is not between {low} and {high}")
    return value


class SweepScreen(Screen[None]):
    """Runs a sweep on the pane's engine, then plots it; Esc stops it, or goes back."""

    BINDINGS = [Binding("escape", "back", "Stop / back", priority=True)]

    def __init__(self, pane: Any, request: SweepRequest) -> None:
        super().__init__()
        self.pane = pane  # the ChatPane whose engine and request queue it uses
        self.sweep = request.sweep
        self.before = request.before
        self.cancel = threading.Event()
        self.running = False
        self.figure = "distinct_2"
        self.point = 0
        self.saved: int | None = None  # the sweep's chat id in the history

    def compose(self) -> ComposeResult:
        yield Static("", id="sweep-status")
        yield PlotextPlot(id="sweep-plot")
        yield DataTable(id="sweep-table", cursor_type="cell", zebra_stripes=True)
        with VerticalScroll(id="sweep-texts-box"):
            yield Static("", id="sweep-texts")

    def on_mount(self) -> None:
        total = len(self.sweep.grid_points()) * self.sweep.samples
        self._say(f"Sweeping: 0 of {total} samples · Esc stops")
        self.running = True
        self.run_worker(self._generate, thread=True, group="sweep", name="sweep")

    # -- running ---------------------------------------------------------------------------
    def _generate(self) -> None:
        error = None
        try:
            with self.pane.queue.turn(self.cancel) as granted:
                if granted:
                    run_sweep(
                        self.pane.engine,
                        self.sweep,
                        on_progress=lambda done, total: self.app.call_from_thread(
                            self._say, f"Sweeping: {done} of {total} samples · Esc stops"
                        ),
                        before=self.before,
                        cancel=self.cancel,
                    )
        except Exception as exc:  # noqa: BLE001 - shown where the user looks
            error = f"{type(exc).__name__}: {exc}"
        self.app.call_from_thread(self._finished, error)

    def _finished(self, error: str | None) -> None:
        self.running = False
        if error is not None:
            self._say(f"The sweep failed: {error} · Esc goes back")
            self.notify(error, title="Sweep failed", severity="error")
            return
        sweep = self.sweep
        if not sweep.points:
            self._say("Stopped before a point was drawn: nothing saved · Esc goes back")
            return
        engine = self.pane.engine
        self.saved = save_sweep(
            sweep, engine.model_name, engine.engine_label(), store=self.pane.session.store
        )
        done = "Done" if sweep.complete else "Stopped: the points drawn so far"
        self._say(f"{done} · saved in the history (Ctrl+O) · ←→ figure, ↑↓ point · Esc goes back")
        self._fill_table()
        self.show()

    def action_back(self) -> None:
        if self.running:
            self.cancel.set()
            self.pane.engine.stop()
            self._say("Stopping…")
        else:
            self.dismiss(None)

    def _say(self, text: str) -> None:
        self.query_one("#sweep-status", Static).update(escape(text))

    # -- showing ---------------------------------------------------------------------------
    def _fill_table(self) -> None:
        table = self.query_one("#sweep-table", DataTable)
        names = list(self.sweep.grid)
        for name in names:
            table.add_column(name, key=f"value:{name}")
        for figure, title in FIGURES.items():
            table.add_column(title, key=figure)
        for point in self.sweep.points:
            figures = point.figures()
            table.add_row(
                *(str(point.values[n]) for n in names),
                *("–" if math.isnan(figures[f]) else f"{figures[f]:.3f}" for f in FIGURES),
            )
        table.move_cursor(row=0, column=len(names) + list(FIGURES).index(self.figure))
        table.focus()

    @on(DataTable.CellHighlighted, "#sweep-table")
    def _cell(self, event: DataTable.CellHighlighted) -> None:
        key = event.cell_key.column_key.value or ""
        if key in FIGURES:
            self.figure = key
        self.point = event.coordinate.row
        self.show()

    def show(self) -> None:
        """The plot of the chosen figure, the chosen point marked, and that point's texts."""
        if not self.sweep.points:
            return
        self._plot()
        point = self.sweep.points[min(self.point, len(self.sweep.points) - 1)]
        lines = [f"[b]{escape(point.label())}[/b]"]
        for sample in point.samples:
            text = " ".join(sample.text.split()) or "(empty)"
            lines.append(f"[dim]seed {sample.seed}[/dim] {escape(text)}")
        self.query_one("#sweep-texts", Static).update("\n".join(lines))

    def _plot(self) -> None:
        widget = self.query_one("#sweep-plot", PlotextPlot)
        plt = widget.plt
        plt.clear_data()
        plt.clear_figure()
        names = list(self.sweep.grid)
        first = names[0]
        values = self.sweep.grid[first]
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        position = {v: (float(v) if numeric else float(i)) for i, v in enumerate(values)}
        series: dict[str, list[tuple[float, float]]] = {}
        for point in self.sweep.points:
            label = " · ".join(f"{n} {point.values[n]}" for n in names[1:])
            y = point.figures()[self.figure]
            if not math.isnan(y):
                series.setdefault(label, []).append((position[point.values[first]], y))
        for label, xy in series.items():
            plt.plot([x for x, _ in xy], [y for _, y in xy], marker="braille", label=label or None)
        chosen = self.sweep.points[min(self.point, len(self.sweep.points) - 1)]
        y = chosen.figures()[self.figure]
        if not math.isnan(y):
            plt.scatter([position[chosen.values[first]]], [y], marker="●", color="red")
        if not numeric:
            plt.xticks(list(position.values()), [str(v) for v in values])
        plt.title(FIGURE_TITLES[self.figure] + ("" if series else ": not known here"))
        plt.xlabel(first)
        widget.refresh()


def open_sweep(pane: Any, text: str, params: SamplingParams) -> None:
    """ "Sweep…": the dialog, then the sweep screen, on ``pane``'s chat so far. The prompt
    is ``text`` (the message box's); with none, the chat's last message, swept again."""
    if pane.streaming:
        pane.notify("A reply is still streaming: Esc stops it.", severity="warning")
        return
    chat = pane.session.chat
    before = chat.messages()
    if not text.strip() and chat.turns:
        text = chat.turns[-1].user
        before = chat.messages(upto=len(chat.turns) - 1)[:-1]

    def chosen(request: SweepRequest | None) -> None:
        if request is not None:
            pane.app.push_screen(SweepScreen(pane, request))

    pane.app.push_screen(SweepDialog(text.strip(), params, before), chosen)
