"""A reply on its way: the worker that generates it, the timer that draws and saves
what it streams, and the end of it. One ``ReplyStream`` per streaming reply, owned by
the chat pane that shows it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.cells import cell_len
from textual.timer import Timer
from textual.widget import Widget

from chatapp.conversation import ChatSession, ReplyVersion
from chatapp.engine.lens import LensRecorder
from chatapp.engine.protocol import Engine
from chatapp.engine.request_queue import RequestQueue
from chatapp.engine.types import EngineError, Message, ReplyInterrupted, ReplyStats
from chatapp.params import SamplingParams
from chatapp.thinking import answer_of
from chatapp.tui.chat_log import FOLLOW_STEP_DIVISOR, AssistantMessage, ChatLog
from chatapp.tui.events import ReplyFinished
from chatapp.tui.textual_internals import changes_pending

if TYPE_CHECKING:  # pragma: no cover
    from textual.screen import Screen

FLUSH_INTERVAL = 0.05  # seconds between looks at what the generation thread buffered
# Drawn at most this often while it comes slowly (each draw costs the UI thread a little);
# sooner when more than a view's worth waits (fast text), a view a draw.
DRAW_INTERVAL = 0.15
DRAW_LINES = 4  # the fewest rows a draw may add (a view too small for more)
# The most views a reply's end draws one frame at a time before it draws the rest at once.
DRAIN_DRAWS = 60


def _cut_for_rows(text: str, rows: int, width: int) -> int:
    """Where to cut ``text`` so that drawn at ``width`` it takes at most about ``rows``
    rows: len(text) if it fits. A line takes a row per ``width`` cells, counted at 4/5 of
    the width (wrapping breaks at words, so a row holds less). Counting newlines alone let
    a draw of wrapped prose add more rows than the view shows, and the follow scroll
    pushed some out of view before they were drawn. A code fence counts two rows: the
    block's padding."""
    per_row = max(1, width * 4 // 5)
    used = start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end + 1
        line = text[start:end].rstrip("\n")
        need = 2 if line.lstrip().startswith(("```", "~~~")) else 0
        need += max(1, -(-cell_len(line) // per_row))
        if used + need > rows:
            if used:
                return start  # whole lines up to here
            # One line longer than the view: as much of it as fits.
            return start + max(1, rows * per_row)
        used += need
        start = end
    return len(text)


WORKER_NICE = 10  # how far below the UI thread the threads that generate run


def yield_cpu_to_the_ui(main_thread_id: int) -> int:
    """Lower the priority of every thread of this process but the UI's (the generation
    worker and torch's compute threads): on 2 cores, a prompt's prefill would otherwise
    take both and the screen would freeze until it ends. Only lowers (any user may);
    returns how many threads were lowered. Linux only; elsewhere a no-op."""
    import os

    tasks = "/proc/self/task"
    if not hasattr(os, "setpriority") or not os.path.isdir(tasks):
        return 0
    lowered = 0
    for name in os.listdir(tasks):
        tid = int(name)
        if tid == main_thread_id:
            continue
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) < WORKER_NICE:
                os.setpriority(os.PRIO_PROCESS, tid, WORKER_NICE)
                lowered += 1
        except OSError:  # the thread ended, or it is not ours to change
            pass
    return lowered


class ReplyStream:
    """One reply streaming into its widget and the history: the engine call on a worker
    thread, the buffer it fills, the timer that draws and saves it, and its end.

    ``owner`` (the chat pane) runs the worker and the timer and receives ``ReplyFinished``,
    which it hands back to ``finish``."""

    def __init__(
        self,
        owner: Widget,
        log: ChatLog,
        reply: AssistantMessage,
        session: ChatSession,
        engine: Engine,
        queue: RequestQueue,
        *,
        record_lens: bool,
        on_waiting: Callable[[], None] = lambda: None,
    ) -> None:
        assert reply.version is not None
        self.owner, self.log, self.reply, self.session = owner, log, reply, session
        self.engine, self.queue = engine, queue
        self.version: ReplyVersion = reply.version
        self.params: SamplingParams = reply.version.params
        self.cancel = threading.Event()  # this reply's own stop flag (Esc sets it)
        # Always in the pipeline, so the lens and heat map can switch recording on
        # mid-reply; while inactive it only applies the stages, as generate would.
        self.recorder = LensRecorder(active=record_lens)
        self.text = ""  # the reply so far, drawn and saved
        self.repaired = False  # its streamed text had to be replaced at the end
        self._on_waiting = on_waiting
        self._pending: list[str] = []
        self._pending_lock = threading.Lock()
        self._drawn_at = 0.0  # when streamed text was last drawn
        self._draw_unpainted = False  # drawn, and not yet on the screen
        self._follow_moves_drawn = 0
        self._flush_timer: Timer | None = None
        self._ui_thread_id = threading.get_native_id()

    # -- the start ----------------------------------------------------------------------
    def start(self, messages: list[Message]) -> None:
        """Start generating (on a worker thread) and drawing (on a timer)."""
        self.reply.start_streaming()
        self._flush_timer = self.owner.set_interval(FLUSH_INTERVAL, self._flush)
        self.log.scroll_end(animate=False, immediate=True)
        self.log.start_following(self.reply.body)
        self.owner.run_worker(
            lambda: self._generate(messages), thread=True, group="reply", name="reply"
        )

    def stop(self) -> None:
        """Ask the reply to end (honoured even while it waits for its turn)."""
        self.cancel.set()

    def _on_piece(self, piece: str) -> None:
        # Called on the generation thread: only buffer here; the timer draws.
        with self._pending_lock:
            self._pending.append(piece)

    def _generate(self, messages: list[Message]) -> None:
        stats = None
        error = None
        try:
            with self.queue.turn(self.cancel, self._on_waiting) as granted:
                if granted:
                    # Each time: torch may have started compute threads since the last.
                    yield_cpu_to_the_ui(self._ui_thread_id)
                    stats = self.engine.stream_reply(
                        messages,
                        self.params,
                        self._on_piece,
                        lens=self.recorder,
                        cancel=self.cancel,
                        wait=True,
                    )
                else:  # stopped while it waited for its turn: nothing was generated
                    stats = ReplyStats(0, 0, 0.0, 0.0, "stopped")
        except ReplyInterrupted as exc:  # the reply broke off: keep what arrived
            stats, error = exc.stats, str(exc)
        except EngineError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - shown in the message
            error = f"{type(exc).__name__}: {exc}"
        self.owner.post_message(ReplyFinished(self.reply.turn_index, self.version, stats, error))

    # -- drawing ------------------------------------------------------------------------
    async def _flush(self, force: bool = False) -> None:
        if self._draw_unpainted and not force:
            # The last draw is not on the screen yet (a busy moment): a second one now
            # would scroll the first's lines away before any frame showed them.
            return
        now = time.monotonic()
        room, width = self._room_per_draw()
        with self._pending_lock:
            text = "".join(self._pending)
            cut = len(text) if force else _cut_for_rows(text, room, width)
            if not force and now - self._drawn_at < DRAW_INTERVAL and cut == len(text):
                # A moment more, drawn with what comes next: unless a view's worth waits
                # (fast text), each draw costs the same whatever it adds (a scroll
                # repaints the whole pane), so fewer, fuller draws cost less.
                return
            self._pending.clear()
            if cut < len(text):
                # More rows than one scroll can show (fast text, or a late tick): draw a
                # view's worth now and the rest at the next tick, so none goes by unseen.
                text, rest = text[:cut], text[cut:]
                self._pending.append(rest)
        self._drawn_at = now
        self.text += text
        if self.version.status == "streaming":
            # Saved at most once a second: the store's cost stays out of the token rate.
            # (Not once the reply is saved whole and only its drawing is catching up.)
            self.session.stream_text(self.version, self.text)
        if text:
            self._show_streamed()
            self._follow_moves_drawn = self.log.follow_moves
            self._draw_unpainted = True
            self.owner.call_after_refresh(self._draw_painted)

    def _draw_painted(self) -> None:
        """After the frame that showed a draw (and, if the log's follow scroll came later,
        after the frame that showed that): a draw before it would scroll the last draw's
        lines out of view unseen.

        Textual runs "after refresh" callbacks at its next idle moment when it knows of no
        change to show, and a widget tells the screen of its change only at its own idle
        moment: so the callback can come before the frame. It waits on while a change is
        still on its way to the screen."""
        if self.log.follow_moves != self._follow_moves_drawn:
            self._follow_moves_drawn = self.log.follow_moves
            self.owner.call_after_refresh(self._draw_painted)
            return
        if self._frame_to_come():
            self.owner.call_after_refresh(self._draw_painted)
            return
        self._draw_unpainted = False

    def _frame_to_come(self) -> bool:
        """Whether a change to the reply or the chat log has not reached the screen yet.
        False while another screen (a dialog) is in front: the log's screen draws nothing
        then, and waiting on it would spin."""
        if not self.log.is_mounted:
            return False
        screen: Screen = self.log.screen
        if screen is not self.owner.app.screen:
            return False
        return changes_pending(screen, (self.log, self.reply, self.reply.body))

    @property
    def draw_pending(self) -> bool:
        """A draw is not on the screen yet."""
        return self._draw_unpainted

    def _room_per_draw(self) -> tuple[int, int]:
        """The most new rows one draw may add (what fits in the log's view above the few
        rows a follow scroll leaves below the last one), and the reply's width."""
        log, reply = self.log, self.reply
        if not log.is_mounted:  # shutting down mid-reply
            return DRAW_LINES, 80
        view = log.scrollable_content_region.height
        width = reply.body.content_size.width or log.scrollable_content_region.width
        return max(DRAW_LINES, view - max(1, view // FOLLOW_STEP_DIVISOR) - 1), width

    def _show_streamed(self, final: bool = False) -> None:
        """Draw the reply so far; when it ends, draw it whole (ReplyText.set_text)."""
        reply, log = self.reply, self.log
        if not reply.is_mounted:  # shutting down mid-reply
            return
        body = reply.body
        before = body.line_count
        if final:
            # Back to Textual's anchor (the chat's end) if the user was following the reply.
            following = log.shows_end(before)
            log.stop_following()
            body.set_text(reply.answer(self.text))
            if following:
                log.call_after_refresh(log.anchor)
        elif body.show(reply.answer(self.text)):  # drawn at the next layout: follow after it
            log.call_after_refresh(log.follow, before)
        else:
            log.follow(before)

    # -- the end ------------------------------------------------------------------------
    def needs_drain(self) -> bool:
        """Whether the reply's end has text buffered, or a draw not on the screen yet:
        then its end waits for the frames that show them (``_drain``)."""
        if self._draw_unpainted:
            return True
        with self._pending_lock:
            return any(self._pending)

    async def _drain(self, draws: int = DRAIN_DRAWS) -> None:
        """Draw what a fast reply left buffered at its end a view at a time, each on the
        screen before the next, and the last before the reply is drawn whole: drawn at
        once, or with the reply drawn whole in the same frame (the view then jumps to the
        reply's end), it would jump past lines no frame showed. No time limit (a busy
        machine paints slowly, and the reply is already saved whole); at most ``draws``
        views, the rest at once."""
        for _ in range(draws):
            while self._draw_unpainted:
                await asyncio.sleep(0.005)
            with self._pending_lock:
                if not any(self._pending):
                    return
            self._drawn_at = 0.0  # no waiting for the draw interval
            await self._flush()

    async def finish(self, event: ReplyFinished) -> None:
        """The reply ended (already saved whole): draw what is still buffered, then the
        reply whole, and keep its lens steps with it."""
        if self._flush_timer is not None:
            self._flush_timer.stop()
            self._flush_timer = None
        await self._drain()
        await self._flush(force=True)
        if self.reply.body.streaming:
            self._show_streamed(final=True)
        stats = event.stats
        if stats is not None and self.reply.body.text != answer_of(stats.text):
            # Streaming lost or garbled text: show the engine's whole reply, and say so
            # (the UI benchmark counts these; there should be none).
            self.repaired = True
            self.reply.body.set_text(self.reply.answer(stats.text))
        self.version.lens_steps = list(self.recorder.steps)
        self.version.lens_complete = bool(self.version.lens_steps) and self.recorder.complete

    def keep_partial(self) -> None:
        """The app ends mid-reply: ask the reply to stop, and keep what streamed so far,
        marked stopped (once it ended it is saved whole already)."""
        self.cancel.set()
        if self.version.status == "streaming":
            with self._pending_lock:
                self.text += "".join(self._pending)
            self.session.abandon_reply(self.version, self.text)
