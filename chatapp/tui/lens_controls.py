"""The probability lens's keys and workers (F3, F6, F7/F8, what-if), mixed into the app.

A reply recorded while it streamed has its steps already; any other finished reply
(recorded with the lens off, or reopened after a restart) has them recomputed from its
stored token ids and parameters on first use.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from textual import work
from textual.css.query import NoMatches

from chatapp.conversation import ReplyVersion
from chatapp.engine.types import Message
from chatapp.params import SamplingParams
from chatapp.tui.chat import AssistantMessage, ChatPane
from chatapp.tui.events import LensReplayed, WhatIfReady
from chatapp.tui.lens import LensView

if TYPE_CHECKING:  # pragma: no cover
    from chatapp.tui.app import ChatApp

    _Base = ChatApp
else:
    _Base = object


class LensControls(_Base):
    """Lens actions; the app supplies ``source``, ``session``, ``params`` and the widgets.

    Handlers here use ``on_*`` names: Textual registers ``@on`` only in classes built by
    its metaclass, which a plain mixin is not.
    """

    lens_target: tuple[AssistantMessage, int] | None = None  # reply, step index
    heat_on = False
    _lens_shown_at = 0.0
    _lens_shown_count = 0

    @property
    def recording(self) -> bool:
        """The lens records only while the lens or the heat map is on (otherwise: no cost)."""
        return self.query_one(LensView).display or self.heat_on

    def _follow_lens(self) -> None:
        """While a reply streams, show its newest step (at most ~10 times a second)."""
        recorder = self._recorder
        if recorder is None or not recorder.steps:
            return
        try:
            lens = self.query_one(LensView)
        except NoMatches:  # the app shuts down mid-reply
            return
        if not lens.display:
            return
        now = time.monotonic()
        count = len(recorder.steps)
        if count == self._lens_shown_count or now - self._lens_shown_at < 0.1:
            return
        self._lens_shown_at, self._lens_shown_count = now, count
        lens.show(recorder.steps[count - 1], f"{count} (streaming)")

    def _show_lens(self) -> None:
        if self.lens_target is None:
            return
        reply, index = self.lens_target
        steps = reply.lens_steps
        if steps:
            index = min(index, len(steps) - 1)
            self.lens_target = (reply, index)
            self.query_one(LensView).show(steps[index], f"{index + 1}/{len(steps)}")

    def _needs_replay(self, version: ReplyVersion | None) -> bool:
        return (
            version is not None
            and version.status != "streaming"
            and not version.lens_complete
            and bool(version.token_ids)
            and self.source is not None
            and self.source.capabilities.replay
        )

    def action_toggle_lens(self) -> None:
        lens = self.query_one(LensView)
        lens.display = not lens.display
        if self._recorder is not None:
            self._recorder.active = self.recording
        if lens.display and self.source is not None and self.source.capabilities.lens == "none":
            lens.explain("Probability lens: " + self.source.capabilities.lens_note + ".")
            return
        if not lens.display or self.generating:
            return
        if self.lens_target is None:
            replies = [r for r in self.query_one(ChatPane).assistant_messages() if r.version]
            if replies:
                self.lens_target = (replies[-1], 10**9)  # its last step
        if self.lens_target is not None and self._needs_replay(self.lens_target[0].version):
            self._replay([self.lens_target[0]], show=True)
        elif self.lens_target is not None and not self.lens_target[0].lens_steps:
            lens.explain(
                "Probability lens: this reply was not recorded, and "
                + (self.source.capabilities.lens_note if self.source else "no model is loaded")
                + ". With the lens on, the next reply is recorded."
            )
        self._show_lens()

    def action_toggle_heat(self) -> None:
        self.heat_on = not self.heat_on
        if self._recorder is not None:
            self._recorder.active = self.recording
        replies = self.query_one(ChatPane).assistant_messages()
        for reply in replies:
            reply.show_heat(self.heat_on)
        missing = [r for r in replies if self._needs_replay(r.version)]
        if self.heat_on and missing and not self.generating:
            self._replay(list(reversed(missing)), show=False)  # the newest first

    def action_lens_step(self, delta: int) -> None:
        if self.lens_target is None or self.generating:
            return
        reply, index = self.lens_target
        steps = reply.lens_steps
        self.lens_target = (reply, max(0, min(len(steps) - 1, index + delta)))
        self._show_lens()
        self._what_if()

    def action_lens_select(self, turn_index: int, step: int) -> None:
        """Open one step of one reply in the lens (clicking a token in the heat map)."""
        reply = self.query_one(ChatPane).reply_for(turn_index)
        if reply is None or not 0 <= step < len(reply.lens_steps):
            return
        self.lens_target = (reply, step)
        self.query_one(LensView).display = True
        self._show_lens()
        self._what_if()

    # -- recomputing a finished reply's steps --------------------------------------------
    def _replay(self, replies: list[AssistantMessage], show: bool) -> None:
        jobs = []
        for reply in replies:
            version = reply.version
            assert version is not None
            messages = self.session.chat.messages(upto=reply.turn_index)
            jobs.append((reply.turn_index, version, messages))
        self._set_status("Lens: recomputing the reply's steps from its tokens…")
        self._replay_worker(jobs, show)

    @work(thread=True, exclusive=True, group="lens", name="lens replay")
    def _replay_worker(
        self, jobs: list[tuple[int, ReplyVersion, list[Message]]], show: bool
    ) -> None:
        for turn_index, version, messages in jobs:
            try:
                steps = self.source.replay_lens(
                    messages, version.token_ids, version.params, text=version.text
                )
            except Exception as exc:  # noqa: BLE001 - shown to the user
                self.post_message(LensReplayed(turn_index, version, [], show, str(exc)))
                return
            self.post_message(LensReplayed(turn_index, version, steps, show))

    def on_lens_replayed(self, event: LensReplayed) -> None:
        if event.error:
            self.notify(f"Lens failed: {event.error}", severity="warning")
        if not event.steps:
            return
        event.version.lens_steps = event.steps
        event.version.lens_complete = True
        reply = self.query_one(ChatPane).reply_for(event.turn_index)
        if reply is None or reply.version is not event.version:
            return
        reply.show_heat(self.heat_on)
        if event.show and self.lens_target is not None and self.lens_target[0] is reply:
            self._show_lens()
            self._what_if()
        self._set_status(f"Lens: {len(event.steps)} steps recomputed from the reply's tokens")

    # -- what-if ----------------------------------------------------------------------------
    def _what_if(self) -> None:
        """Recompute the selected step under the panel's values, if they differ."""
        if (
            self.lens_target is None
            or self.generating
            or not self.query_one(LensView).display
            or self.source is None
            or not self.source.capabilities.what_if
        ):
            return
        reply, index = self.lens_target
        version = reply.version
        if version is None or version.stats is None or not version.lens_steps:
            return
        if self.params == version.params:
            self._show_lens()
            return
        index = min(index, len(version.lens_steps) - 1)
        messages = self.session.chat.messages(upto=reply.turn_index)
        self._compute_what_if(version, messages, index, self.params)

    @work(thread=True, exclusive=True, group="what-if", name="what-if")
    def _compute_what_if(
        self, version: ReplyVersion, messages: list[Message], index: int, params: SamplingParams
    ) -> None:
        try:
            position = version.lens_steps[index].index
            step = self.source.what_if(
                messages, version.token_ids, position, params, fitted_for=version.params
            )
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self.post_message(WhatIfReady(None, "", f"What-if failed: {exc}"))
            return
        self.post_message(WhatIfReady(step, f"{index + 1}/{len(version.lens_steps)}"))

    def on_what_if_ready(self, event: WhatIfReady) -> None:
        if event.step is None:
            self.notify(event.error or "What-if failed", severity="warning")
            return
        self.query_one(LensView).show(event.step, event.position)
