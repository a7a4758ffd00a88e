"""Compare columns and sweep samples on an engine that cannot batch them (a server, the
fake engine): one request per row, all at once where the engine serves requests
concurrently, else one after another. No torch here (the remote client uses it)."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Sequence

from chatapp.engine.types import Message, ReplyStats
from chatapp.params import SamplingParams

StreamOne = Callable[..., ReplyStats]  # an engine's stream_reply


def row_seeds(columns: Sequence[SamplingParams], seed: int | None = None) -> list[int | None]:
    """Each sampled row's seed: its own when set, else ``seed``, else one drawn for all
    (every column of a compare draws from the same seed)."""
    shared = seed if seed is not None else secrets.randbelow(2**31)
    return [(p.seed if p.seed is not None else shared) if p.do_sample else None for p in columns]


def stream_each(
    stream_reply: StreamOne | Sequence[StreamOne],
    messages: Sequence[Message],
    columns: Sequence[SamplingParams],
    on_text: Callable[[int, str], None],
    seeds: Sequence[int | None] | None,
    cancel: threading.Event | None,
    concurrent: bool,
) -> list[ReplyStats]:
    """One ``stream_reply`` per row (or row ``i``'s own, ``stream_reply[i]``), each with
    its row's seed; the replies in row order. The first failure is raised once every row
    has ended."""
    seeds = list(seeds) if seeds is not None else row_seeds(columns)
    cancel = cancel if cancel is not None else threading.Event()
    results: list[ReplyStats | None] = [None] * len(columns)
    errors: list[BaseException] = []

    def one(index: int) -> None:
        params = columns[index]
        if params.do_sample:
            params = params.replace(seed=seeds[index])
        call = stream_reply if callable(stream_reply) else stream_reply[index]
        try:
            results[index] = call(
                messages, params, lambda piece: on_text(index, piece), wait=True, cancel=cancel
            )
        except BaseException as exc:  # noqa: BLE001 - raised below, after the others end
            errors.append(exc)

    if concurrent:
        threads = [
            threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(columns))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    else:
        for index in range(len(columns)):
            one(index)
    if errors:
        raise errors[0]
    return [r for r in results if r is not None]
