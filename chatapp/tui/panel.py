"""The side panel of live sampling-parameter inputs, built from the parameter spec."""

from __future__ import annotations

from typing import Any

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Collapsible, Input, Label, Select, Static, Switch

from chatapp.params import PARAMS, SPEC, ParamError, ParamSpec, SamplingParams
from chatapp.tui.widgets import OrderedInput


class ParamFocused(Message):
    """A parameter field got focus: show its help."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


class ParamInput(OrderedInput):
    """A number field that Up/Down (or +/-) nudge by the parameter's step."""

    BINDINGS = [
        Binding("up", "nudge(1)", "Increase", show=False),
        Binding("down", "nudge(-1)", "Decrease", show=False),
    ]
    NUDGE_KEYS = {"+": 1, "-": -1}  # no parameter takes a sign, so these never type one

    async def key_first(self, event: events.Key) -> bool:
        # Input types printable keys before bindings are looked at, so + and - are
        # caught here (as bindings they would never fire: '+' would replace the value).
        direction = self.NUDGE_KEYS.get(event.character or "")
        if direction is not None:
            event.stop()
            event.prevent_default()
            self.action_nudge(direction)
            return True
        return await super().key_first(event)

    def __init__(self, spec: ParamSpec, value: Any) -> None:
        super().__init__(value=spec.format(value), id=f"param-{spec.name}", compact=True)
        self.spec = spec
        self.last_valid = value

    def action_nudge(self, direction: int) -> None:
        self.value = self.spec.format(self.spec.nudge(self.last_valid, direction))
        self.cursor_position = len(self.value)

    def on_focus(self) -> None:
        self.post_message(ParamFocused(self.spec.name))


class ParamSwitch(Switch):
    """The do_sample switch."""

    def __init__(self, spec: ParamSpec, value: bool) -> None:
        super().__init__(value=value, id=f"param-{spec.name}")
        self.spec = spec

    def on_focus(self) -> None:
        self.post_message(ParamFocused(self.spec.name))


class ParamPanel(Vertical):
    """Inputs for every spec entry; always holds the last valid ``SamplingParams``."""

    class Changed(Message):
        """The valid values in force changed."""

        def __init__(self, params: SamplingParams) -> None:
            super().__init__()
            self.params = params

    class PresetChosen(Message):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

    def __init__(self, params: SamplingParams, preset_names: list[str], lang: str = "en") -> None:
        super().__init__(id="param-panel")
        self.params = params
        self.lang = lang
        self.errors: dict[str, str] = {}
        self._preset_names = preset_names
        self._focused_param = "do_sample"
        self.unsupported: list[str] = []  # parameters the engine does not honour

    def compose(self) -> ComposeResult:
        yield Select(
            [(n, n) for n in self._preset_names],
            prompt="Preset…",
            id="preset-select",
            compact=True,
        )
        with VerticalScroll(id="param-scroll"):
            for spec in (p for p in PARAMS if not p.advanced):
                yield from self._row(spec)
            with Collapsible(title="Advanced", collapsed=True, id="advanced"):
                for spec in (p for p in PARAMS if p.advanced):
                    yield from self._row(spec)
        yield Static("", id="greedy-note")
        yield Static("", id="param-help")

    def _row(self, spec: ParamSpec) -> ComposeResult:
        value = getattr(self.params, spec.name)
        with Horizontal(classes="param-row", id=f"row-{spec.name}"):
            yield Label(spec.title, classes="param-label")
            if spec.kind is bool:
                yield ParamSwitch(spec, value)
            else:
                yield ParamInput(spec, value)
        yield Static("", classes="param-error", id=f"error-{spec.name}")
        yield Static("", classes="param-note", id=f"note-{spec.name}")

    def _show_error(self, name: str, text: str) -> None:
        error = self.query_one(f"#error-{name}", Static)
        error.update(text)
        error.display = bool(text)

    def on_mount(self) -> None:
        for spec in PARAMS:
            self._show_error(spec.name, "")
            self.query_one(f"#note-{spec.name}", Static).display = False
        self._refresh_state()
        self._show_help(self._focused_param)

    # -- values -----------------------------------------------------------------------
    @on(Input.Changed)
    def _input_changed(self, event: Input.Changed) -> None:
        if not isinstance(event.input, ParamInput):
            return
        event.stop()
        field = event.input
        name = field.spec.name
        try:
            value = field.spec.parse(event.value)
        except ParamError as exc:
            self.errors[name] = str(exc)
            field.add_class("-invalid")
            self._show_error(
                name, f"{exc} (using {field.spec.format(field.last_valid) or 'empty'})"
            )
            self._refresh_state()
            return
        field.last_valid = value
        self.errors.pop(name, None)
        field.remove_class("-invalid")
        self._show_error(name, "")
        self._set(name, value)

    @on(Switch.Changed)
    def _switch_changed(self, event: Switch.Changed) -> None:
        if not isinstance(event.switch, ParamSwitch):
            return
        event.stop()
        self._set(event.switch.spec.name, event.value)

    def _set(self, name: str, value: Any) -> None:
        if getattr(self.params, name) == value:
            self._refresh_state()
            return
        self.params = self.params.replace(**{name: value})
        self._refresh_state()
        self.post_message(self.Changed(self.params))

    def apply(self, params: SamplingParams) -> None:
        """Show ``params`` in every field (a preset was chosen); clears errors."""
        # The fields' own change events would re-parse what is being shown: none are sent.
        with self.prevent(Input.Changed, Switch.Changed):
            for spec in PARAMS:
                value = getattr(params, spec.name)
                widget = self.query_one(f"#param-{spec.name}")
                if isinstance(widget, ParamSwitch):
                    widget.value = value
                elif isinstance(widget, ParamInput):
                    widget.value = spec.format(value)
                    widget.last_valid = value
                    widget.remove_class("-invalid")
                self._show_error(spec.name, "")
            self.errors.clear()
        self.params = params
        self._refresh_state()
        self.post_message(self.Changed(self.params))

    def mark_unsupported(self, supported: frozenset[str], kind: str) -> None:
        """Mark the parameters the engine does not honour (a server's dialect): their
        values are not sent, and each says so under its field."""
        self.unsupported = [spec.name for spec in PARAMS if spec.name not in supported]
        for spec in PARAMS:
            off = spec.name in self.unsupported
            self.query_one(f"#row-{spec.name}").set_class(off, "-unsupported")
            note = self.query_one(f"#note-{spec.name}", Static)
            note.update(f"not supported by {kind}" if off else "")
            note.display = off

    def _refresh_state(self) -> None:
        ignored = self.params.ignored()
        for spec in PARAMS:
            row = self.query_one(f"#row-{spec.name}")
            row.set_class(spec.name in ignored, "-ignored")
        note = self.query_one("#greedy-note", Static)
        if not self.params.do_sample:
            note.update(
                "Greedy decoding: dimmed fields are ignored. The tutorial advises setting no other "
                "sampling parameter."
                if self.lang == "en"
                else "Greedy Decode：灰色欄位不會生效。建議不要設定其他取樣參數，以免結果不穩定。"
            )
            note.display = True
        else:
            note.display = False

    # -- help ---------------------------------------------------------------------------
    @on(ParamFocused)
    def _focused(self, event: ParamFocused) -> None:
        self._focused_param = event.name
        self._show_help(event.name)

    def _show_help(self, name: str) -> None:
        spec = SPEC[name]
        if self.lang == "zh":
            text = f"[b]{spec.name}[/b]\n{spec.help_zh}\n[i]建議：[/i]{spec.advice_zh}"
        else:
            text = f"[b]{spec.name}[/b]\n{spec.help_en}\n[i]Advice:[/i] {spec.advice_en}"
        text += f"\n[dim]{spec.range_text()}[/dim]"
        self.query_one("#param-help", Static).update(text)

    def toggle_language(self) -> str:
        self.lang = "zh" if self.lang == "en" else "en"
        self._show_help(self._focused_param)
        self._refresh_state()
        return self.lang

    # -- presets ------------------------------------------------------------------------
    def set_preset_names(self, names: list[str], selected: str | None = None) -> None:
        """The preset list, with ``selected`` shown (showing a name does not load it)."""
        select = self.query_one("#preset-select", Select)
        with self.prevent(Select.Changed):
            select.set_options([(n, n) for n in names])
            if selected is not None and selected in names:
                select.value = selected

    @on(Select.Changed, "#preset-select")
    def _preset_changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.value is Select.BLANK:
            return
        self.post_message(self.PresetChosen(str(event.value)))
