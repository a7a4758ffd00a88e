"""What the app and the CLI know of an engine: the ``Engine`` protocol that the local,
remote and fake engines implement (the data they report lives in
``chatapp.engine.types``). No torch, no UI."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from chatapp.engine.types import Capabilities, Int8Status, Message, ReplyStats, StepRecord

if TYPE_CHECKING:  # pragma: no cover
    from chatapp.engine.chat_format import ChatFormat
    from chatapp.engine.context import ContextPlan
    from chatapp.engine.divergence import Divergence
    from chatapp.params import SamplingParams


def describe_loaded(loaded: Any, chat_format: str, window: int) -> str:
    """The status line of a model loaded in this process (its ``LoadedModel``)."""
    reason = getattr(loaded, "quant_reason", "")
    quant = f"{loaded.quant} (auto: {reason})" if reason else loaded.quant
    return (
        f"{loaded.name} ({quant}, {loaded.dtype}, {loaded.device}) · "
        f"{chat_format} format · window {window:,} · loaded in {loaded.load_seconds:.1f} s"
    )


@runtime_checkable
class Engine(Protocol):
    """A source of replies: what the app and the CLI talk to."""

    chat_format: ChatFormat
    preamble: str
    context_window: int
    warnings: list[str]  # said once when the engine is ready (plain http to a server, …)

    @property
    def capabilities(self) -> Capabilities: ...

    @property
    def model_name(self) -> str: ...

    @property
    def busy(self) -> bool: ...

    def describe(self) -> str:
        """One line for the status bar: model, where it runs, format, window."""
        ...

    def engine_label(self) -> str:
        """What produced a reply, kept with it in the history (no secrets)."""
        ...

    def encode(self, messages: Sequence[Message]) -> list[int]:
        """The token ids of ``messages`` as a prompt (a server's: an estimate)."""
        ...

    def plan(self, messages: Sequence[Message], params: SamplingParams) -> ContextPlan: ...

    def stream_reply(
        self,
        messages: Sequence[Message],
        params: SamplingParams,
        on_text: Callable[[str], None] = ...,
        *,
        lens: Any = None,
        wait: bool = False,
        cancel: threading.Event | None = None,
    ) -> ReplyStats: ...

    def stream_columns(
        self,
        messages: Sequence[Message],
        columns: Sequence[SamplingParams],
        on_text: Callable[[int, str], None] = ...,
        *,
        seeds: Sequence[int | None] | None = None,
        logprobs: bool = False,
        wait: bool = False,
        cancel: threading.Event | None = None,
    ) -> list[ReplyStats]:
        """One reply per entry of ``columns`` to the same messages (compare, sweep)."""
        ...

    def divergence(
        self,
        messages: Sequence[Message],
        replies: tuple[Sequence[int], Sequence[int]],
        params: tuple[SamplingParams, SamplingParams],
        columns: tuple[int, int] = (1, 2),
    ) -> Divergence | None:
        """Where two replies part and which stage parted them (None: not known here)."""
        ...

    def stop(self) -> None: ...

    def reset(self) -> None: ...

    def int8_status(self) -> Int8Status:
        """Where a background int8 copy of the weights stands (nothing pending when the
        engine makes none)."""
        ...

    def what_if(
        self,
        messages: Sequence[Message],
        reply_ids: Sequence[int],
        step: int,
        params: SamplingParams,
        top_n: int = 10,
        *,
        fitted_for: SamplingParams | None = None,
    ) -> StepRecord: ...

    def replay_lens(
        self,
        messages: Sequence[Message],
        token_ids: Sequence[int],
        params: SamplingParams,
        top_n: int = 10,
        text: str | None = None,
    ) -> list[StepRecord]: ...
