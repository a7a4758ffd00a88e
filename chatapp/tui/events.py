"""What the app's workers report: small typed messages, posted from their threads."""

from __future__ import annotations

from typing import Any

from textual.message import Message

from chatapp.conversation import ReplyVersion
from chatapp.engine.types import ReplyStats, StepRecord


class EngineReady(Message):
    """The model loaded."""

    def __init__(self, engine: Any) -> None:
        super().__init__()
        self.engine = engine


class EngineFailed(Message):
    """The model could not load."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class LoadProgress(Message):
    """What the loader is doing."""

    def __init__(self, text: str, fraction: float | None) -> None:
        super().__init__()
        self.text = text
        self.fraction = fraction


class ReplyFinished(Message):
    """A reply ended (done, stopped, or failed with ``error``)."""

    def __init__(
        self, turn_index: int, version: ReplyVersion, stats: ReplyStats | None, error: str | None
    ) -> None:
        super().__init__()
        self.turn_index = turn_index
        self.version = version
        self.stats = stats
        self.error = error


class LensReplayed(Message):
    """The lens steps of a finished reply, recomputed from its token ids."""

    def __init__(
        self,
        turn_index: int,
        version: ReplyVersion,
        steps: list[StepRecord],
        show: bool,
        error: str | None = None,
    ) -> None:
        super().__init__()
        self.turn_index = turn_index
        self.version = version
        self.steps = steps
        self.show = show
        self.error = error


class WhatIfReady(Message):
    """One step recomputed under the panel's values (``step`` None: ``error`` says why)."""

    def __init__(self, step: StepRecord | None, position: str, error: str | None = None) -> None:
        super().__init__()
        self.step = step
        self.position = position
        self.error = error
