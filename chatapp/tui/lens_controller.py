"""The probability lens's state and work (F3, F6, F7/F8, clicking a token, what-if).

A reply recorded while it streamed has its steps already; any other finished reply
(recorded with the lens off, or reopened after a restart) has them recomputed from its
stored token ids and parameters on first use. The lens follows the focused chat pane.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial

from textual.timer import Timer
from textual.widget import Widget

from chatapp.conversation import ReplyVersion
from chatapp.engine.divergence import first_step_apart
from chatapp.engine.protocol import Engine
from chatapp.engine.types import Message, StepRecord
from chatapp.params import SamplingParams
from chatapp.tui.chat_log import AssistantMessage
from chatapp.tui.chat_pane import ChatPane
from chatapp.tui.compare import ColumnReply, CompareRow
from chatapp.tui.events import LensReplayed, WhatIfReady
from chatapp.tui.lens import LensView

FOLLOW_INTERVAL = 0.1  # seconds between lens updates while a reply streams


class LensController:
    """What the lens shows (``target``: a reply and one of its steps), the heat map's
    switch, and the workers that recompute steps. ``host`` (the app) runs the workers
    and routes their reports back here."""

    def __init__(
        self,
        host: Widget,
        view: Callable[[], LensView],
        pane: Callable[[], ChatPane],
        engine: Callable[[], Engine | None],
        params: Callable[[], SamplingParams],
        say: Callable[[str], None],
    ) -> None:
        self.host = host
        self._view, self._pane, self._engine, self._params, self._say = (
            view, pane, engine, params, say,
        )  # fmt: skip
        self.target: tuple[AssistantMessage, int] | None = None  # reply, step index
        self.pair_step: int | None = None  # compare: the step both columns show
        self.heat_on = False
        self._shown_count = 0
        self._follow_timer: Timer | None = None

    @property
    def view(self) -> LensView:
        return self._view()

    @property
    def recording(self) -> bool:
        """The lens records only while the lens or the heat map is on (otherwise: no cost)."""
        return self.view.display or self.heat_on

    def _panes(self) -> list[ChatPane]:
        return list(self.host.query(ChatPane))

    def _set_recording(self) -> None:
        for pane in self._panes():
            pane.set_record_lens(self.recording)

    def reply_started(self) -> None:
        """A reply started streaming somewhere: follow the focused pane's while it does."""
        self._shown_count = 0
        if self._follow_timer is None:
            self._follow_timer = self.host.set_interval(FOLLOW_INTERVAL, self._follow)

    def _follow(self) -> None:
        """While the focused pane's reply streams, show its newest step."""
        if not any(pane.streaming for pane in self._panes()):
            if self._follow_timer is not None:
                self._follow_timer.stop()
                self._follow_timer = None
            return
        stream = self._pane().stream
        if stream is None or not stream.recorder.steps or not self.view.display:
            return
        count = len(stream.recorder.steps)
        if count != self._shown_count:
            self._shown_count = count
            steps = stream.recorder.steps
            self.view.show(steps[count - 1], f"{count} (streaming)", steps[:count])

    def show(self) -> None:
        """Show the target step (clamped to the reply's steps)."""
        if self.target is None:
            return
        reply, index = self.target
        steps = reply.lens_steps
        if steps:
            index = min(index, len(steps) - 1)
            self.target = (reply, index)
            self.view.show(steps[index], f"{index + 1}/{len(steps)}", steps)

    def _needs_replay(self, version: ReplyVersion | None) -> bool:
        engine = self._engine()
        return (
            version is not None
            and version.status != "streaming"
            and not version.lens_complete
            and bool(version.token_ids)
            and engine is not None
            and engine.capabilities.replay
        )

    def forget(self) -> None:
        """A new chat is shown: nothing to point at."""
        self.target = None
        self.view.display = False

    # -- keys ---------------------------------------------------------------------------
    def toggle_lens(self) -> None:
        lens, engine, pane = self.view, self._engine(), self._pane()
        lens.display = not lens.display
        self._set_recording()
        if lens.display and engine is not None and engine.capabilities.lens == "none":
            lens.explain("Probability lens: " + engine.capabilities.lens_note + ".")
            return
        if not lens.display or pane.streaming:
            return
        if self.show_pair():
            return
        if self.target is None:
            replies = [r for r in pane.log.assistant_messages() if r.version]
            if replies:
                self.target = (replies[-1], 10**9)  # its last step
        if self.target is not None and self._needs_replay(self.target[0].version):
            self._replay([self.target[0]], show=True)
        elif self.target is not None and not self.target[0].lens_steps:
            lens.explain(
                "Probability lens: this reply was not recorded, and "
                + (engine.capabilities.lens_note if engine else "no model is loaded")
                + ". With the lens on, the next reply is recorded."
            )
        self.show()

    def toggle_heat(self) -> None:
        self.heat_on = not self.heat_on
        pane = self._pane()
        for each in self._panes():
            each.heat_on = self.heat_on
        self._set_recording()
        replies = pane.log.assistant_messages()
        for reply in replies:
            reply.show_heat(self.heat_on)
        missing = [r for r in replies if self._needs_replay(r.version)]
        if self.heat_on and missing and not pane.streaming:
            self._replay(list(reversed(missing)), show=False)  # the newest first

    def step(self, delta: int) -> None:
        if self.pair_step is not None and self._compare_pair() is not None:
            self.pair_step = max(0, self.pair_step + delta)
            self.show_pair()
            return
        if self.target is None or self._pane().streaming:
            return
        reply, index = self.target
        steps = reply.lens_steps
        self.target = (reply, max(0, min(len(steps) - 1, index + delta)))
        self.show()
        self.what_if()

    def select(self, turn_index: int, step: int) -> None:
        """Open one step of one reply in the lens (clicking a token in the heat map)."""
        reply = self._pane().log.reply_for(turn_index)
        if reply is None or not 0 <= step < len(reply.lens_steps):
            return
        self.target = (reply, step)
        self.view.display = True
        self._set_recording()
        self.show()
        self.what_if()

    def reply_ended(self, reply: AssistantMessage) -> None:
        """A reply of the focused pane ended: show its last step."""
        if reply.lens_steps:
            self.target = (reply, len(reply.lens_steps) - 1)
            self.show()

    # -- recomputing a finished reply's steps --------------------------------------------
    def _replay(self, replies: list[AssistantMessage], show: bool) -> None:
        jobs = []
        for reply in replies:
            assert reply.version is not None
            jobs.append((reply.turn_index, reply.version))
        self._replay_versions(jobs, show)

    def _replay_versions(self, versions: list[tuple[int, ReplyVersion]], show: bool) -> None:
        chat = self._pane().session.chat
        jobs = [(turn, version, chat.messages(upto=turn)) for turn, version in versions]
        self._say("Lens: recomputing the reply's steps from its tokens…")
        self.host.run_worker(
            partial(self._replay_jobs, jobs, show),
            thread=True,
            exclusive=True,
            group="lens",
            name="lens replay",
        )

    def _replay_jobs(self, jobs: list[tuple[int, ReplyVersion, list[Message]]], show: bool) -> None:
        engine = self._engine()
        assert engine is not None
        for turn_index, version, messages in jobs:
            try:
                steps = engine.replay_lens(
                    messages, version.token_ids, version.params, text=version.text
                )
            except Exception as exc:  # noqa: BLE001 - shown to the user
                self.host.post_message(LensReplayed(turn_index, version, [], show, str(exc)))
                return
            self.host.post_message(LensReplayed(turn_index, version, steps, show))

    def replayed(self, event: LensReplayed) -> None:
        if event.error:
            self.host.notify(f"Lens failed: {event.error}", severity="warning")
        if not event.steps:
            return
        event.version.lens_steps = event.steps
        event.version.lens_complete = True
        pair = self._compare_pair()
        if pair is not None and any(c.version is event.version for c in pair[1]):
            if self.view.display:
                self.show_pair()
            self._say(f"Lens: {len(event.steps)} steps recomputed from the column's tokens")
            return
        reply = self._pane().log.reply_for(event.turn_index)
        if reply is None or reply.version is not event.version:
            return
        reply.show_heat(self.heat_on)
        if event.show and self.target is not None and self.target[0] is reply:
            self.show()
            self.what_if()
        self._say(f"Lens: {len(event.steps)} steps recomputed from the reply's tokens")

    # -- compare: two columns side by side -------------------------------------------------
    def _compare_pair(self) -> tuple[CompareRow, list[ColumnReply]] | None:
        """The focused pane's last compare, finished: column 1 and the focused column
        (column 2 when column 1 is focused)."""
        compare = self._pane().compare
        row = compare.row
        if row is None or not row.is_mounted or compare.stream is not None:
            return None
        columns = row.columns
        if len(columns) < 2:
            return None
        focus = min(compare.focus, len(columns) - 1)
        return row, [columns[0], columns[focus] if focus > 0 else columns[1]]

    def compare_changed(self) -> None:
        """Another column is focused, or where the replies part is known: the lens, if
        on, shows the pair again, at the step where they part."""
        self.pair_step = None
        if self.view.display:
            self.show_pair()

    def show_pair(self) -> bool:
        """Compare's lens: one step of both columns (their steps recomputed first where
        needed). False when the focused pane shows no finished compare."""
        found = self._compare_pair()
        if found is None:
            self.pair_step = None
            return False
        row, sides = found
        left, right = sides
        missing = [(row.turn_index, c.version) for c in sides if self._needs_replay(c.version)]
        if missing and right.parting is None:
            # Where they part is being found (the engine is busy): the steps come after.
            self.view.explain("Probability lens: finding where the columns part…")
            return True
        if missing:
            self.view.explain("Probability lens: recomputing both columns' steps…")
            self._replay_versions(missing, show=True)
            return True
        if not left.version.lens_steps or not right.version.lens_steps:
            engine = self._engine()
            self.view.explain(
                "Probability lens: these replies' steps cannot be shown, as "
                + (engine.capabilities.lens_note if engine else "no model is loaded")
                + "."
            )
            return True
        parted, why = right.parting or (None, "")
        if parted is None and not why:
            parted = first_step_apart(
                [s.sampled_id for s in left.version.lens_steps],
                [s.sampled_id for s in right.version.lens_steps],
            )
        count = max(len(left.version.lens_steps), len(right.version.lens_steps))
        if self.pair_step is None:
            self.pair_step = parted if parted is not None else count - 1
        self.pair_step = min(self.pair_step, count - 1)
        index = self.pair_step
        if parted is None:
            note = why or "both columns drew the same tokens"
        else:
            note = why or f"step {parted + 1}: the draws differ"
            note = ("◆ here, at " if index == parted else "they part at ") + note
        names = f"columns {left.number} and {right.number}"
        shown = [_step_at(c.version, index) for c in sides]
        drawn = {step.sampled_id for step in shown if step is not None}
        self.view.show_pair(
            [
                (f"col {c.number}", _fewer(step, drawn))
                for c, step in zip(sides, shown, strict=True)
            ],
            f"{index + 1}/{count}",
            f"{names} · {note} · F7/F8: step",
        )
        return True

    # -- what-if ----------------------------------------------------------------------------
    def what_if(self) -> None:
        """Recompute the selected step under the panel's values, if they differ."""
        engine, params = self._engine(), self._params()
        if self._compare_pair() is not None and self.pair_step is not None:
            return  # compare's lens shows the columns' own steps
        if (
            self.target is None
            or self._pane().streaming
            or not self.view.display
            or engine is None
            or not engine.capabilities.what_if
        ):
            return
        reply, index = self.target
        version = reply.version
        if version is None or version.stats is None or not version.lens_steps:
            return
        if params == version.params:
            self.show()
            return
        index = min(index, len(version.lens_steps) - 1)
        messages = self._pane().session.chat.messages(upto=reply.turn_index)
        self.host.run_worker(
            partial(self._compute_what_if, engine, version, messages, index, params),
            thread=True,
            exclusive=True,
            group="what-if",
            name="what-if",
        )

    def _compute_what_if(
        self,
        engine: Engine,
        version: ReplyVersion,
        messages: list[Message],
        index: int,
        params: SamplingParams,
    ) -> None:
        try:
            position = version.lens_steps[index].index
            step = engine.what_if(
                messages, version.token_ids, position, params, fitted_for=version.params
            )
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self.host.post_message(WhatIfReady(None, "", f"What-if failed: {exc}"))
            return
        self.host.post_message(WhatIfReady(step, f"{index + 1}/{len(version.lens_steps)}"))

    def what_if_ready(self, event: WhatIfReady) -> None:
        if event.step is None:
            self.host.notify(event.error or "What-if failed", severity="warning")
            return
        self.view.show(event.step, event.position)


def _step_at(version: ReplyVersion, index: int) -> StepRecord | None:
    steps = version.lens_steps
    return steps[index] if index < len(steps) else None


PAIR_ROWS = 6  # candidates per side in compare's lens (and both drawn tokens)


def _fewer(step: StepRecord | None, drawn: set[int | None]) -> StepRecord | None:
    """``step`` with its top candidates and the tokens either column drew, so that both
    draws are in view at 80x24."""
    if step is None:
        return None
    keep = [c for i, c in enumerate(step.candidates) if i < PAIR_ROWS or c.token_id in drawn]
    return replace(step, candidates=keep)
