"""A reply on its way: the worker that generates it, the timer that draws and saves
what it streams, and the end of it. Mixed into the app."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING

from rich.cells import cell_len
from textual import work

from chatapp.conversation import ReplyVersion
from chatapp.engine.lens import LensRecorder
from chatapp.engine.types import EngineError, Message, ReplyInterrupted, ReplyStats
from chatapp.params import SamplingParams
from chatapp.tui.chat import FOLLOW_STEP_DIVISOR, AssistantMessage, ChatPane
from chatapp.tui.events import ReplyFinished
from chatapp.tui.screen import ChatScreen
from chatapp.tui.widgets import PromptBox

if TYPE_CHECKING:  # pragma: no cover
    from chatapp.tui.app import ChatApp

    _Base = ChatApp
else:
    _Base = object

FLUSH_INTERVAL = 0.05  # seconds between looks at what the generation thread buffered
# Drawn at most this often while it comes slowly (each draw costs the UI thread ~1-2 ms);
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


class ReplyStreaming(_Base):
    """Streams one reply at a time into its widget and the store (handlers use ``on_*``
    names: ``@on`` is not registered in a plain mixin)."""

    def _start_reply(self, index: int) -> None:
        reply = self.query_one(ChatPane).reply_for(index)
        assert reply is not None and reply.version is not None
        version, params = reply.version, reply.version.params
        messages = self.history(upto=index)
        reply.start_streaming()
        self._reply_widget = reply
        self._cancel = threading.Event()  # this reply's own stop flag (Esc sets it)
        # Always in the pipeline, so F3/F6 can switch recording on mid-reply; while
        # inactive it only applies the stages, as generate itself would.
        self._recorder = LensRecorder(active=self.recording)
        self._lens_shown_count = 0
        self._pending.clear()
        self._reply_text = ""
        self._drawn_at = 0.0
        self._draw_unpainted = False
        self._follow_moves_drawn = 0
        self._flush_timer = self.set_interval(FLUSH_INTERVAL, self._flush_stream)
        chat = self._chat_pane = self.query_one(ChatPane)  # kept: a query walks the DOM
        chat.scroll_end(animate=False, immediate=True)
        chat.start_following(reply.body)
        # A steady cursor while the reply streams: each blink repaints the message box
        # (~2 ms, twice a second, on top of the stream's own drawing).
        prompt = self.query_one(PromptBox)
        self._blink_after_reply, prompt.cursor_blink = prompt.cursor_blink, False
        self._set_status(f"Generating ({params.summary()}) · Esc stops")
        self._generate(index, version, messages, params, self._recorder, self._cancel)

    def _on_piece(self, piece: str) -> None:
        # Called on the generation thread: only buffer here; the timer draws.
        with self._pending_lock:
            self._pending.append(piece)

    async def _flush_stream(self, force: bool = False) -> None:
        self._follow_lens()
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
        self._reply_text += text
        version = self._reply_widget.version if self._reply_widget is not None else None
        if version is not None and version.status == "streaming":
            # Saved at most once a second: the store's cost stays out of the token rate.
            # (Not once the reply is saved whole and only its drawing is catching up.)
            self.session.stream_text(version, self._reply_text)
        if text:
            self._show_streamed()
            if self._chat_pane is not None:
                self._follow_moves_drawn = self._chat_pane.follow_moves
            self._draw_unpainted = True
            self.call_after_refresh(self._draw_painted)

    def _draw_painted(self) -> None:
        """After the frame that showed a draw (and, if the pane's follow scroll came later,
        put off until the grown reply was laid out, after the frame that showed that): a
        draw before it would scroll the last draw's lines out of view unseen.

        Textual runs "after refresh" callbacks at its next idle moment when it knows of no
        change to show, and a widget tells the screen of its change only at its own idle
        moment: so the callback could come before the frame (seen: two draws 9 ms apart,
        no frame between, 17 lines never shown). It waits on while a change is still on
        its way to the screen."""
        chat = self._chat_pane
        if chat is not None and chat.follow_moves != self._follow_moves_drawn:
            self._follow_moves_drawn = chat.follow_moves
            self.call_after_refresh(self._draw_painted)
            return
        if self._frame_to_come():
            self.call_after_refresh(self._draw_painted)
            return
        self._draw_unpainted = False

    def _frame_to_come(self) -> bool:
        """Whether a change to the reply or the chat pane has not reached the screen yet
        (Textual's own flags: it has no public way to say so). False while another screen
        (a dialog) is in front: the main screen draws nothing then, and waiting on it would
        spin."""
        screen = self.screen
        if not isinstance(screen, ChatScreen):
            return False
        if (
            screen._layout_required
            or screen._scroll_required
            or screen._repaint_required
            or screen._dirty_widgets
        ):
            return True
        reply = self._reply_widget
        widgets = [self._chat_pane] + ([reply, reply.body] if reply is not None else [])
        return any(
            widget is not None
            and (widget._layout_required or widget._repaint_required or widget._scroll_required)
            for widget in widgets
        )

    def _room_per_draw(self) -> tuple[int, int]:
        """The most new rows one draw may add (what fits in the chat pane's view above the
        few rows a follow scroll leaves below the last one), and the reply's width."""
        chat, reply = self._chat_pane, self._reply_widget
        if chat is None or not chat.is_mounted or reply is None:  # shutting down mid-reply
            return DRAW_LINES, 80
        view = chat.scrollable_content_region.height
        width = reply.body.content_size.width or chat.scrollable_content_region.width
        return max(DRAW_LINES, view - max(1, view // FOLLOW_STEP_DIVISOR) - 1), width

    def _show_streamed(self, final: bool = False) -> None:
        """Draw the reply so far; when it ends, draw it whole (ReplyText.set_text)."""
        reply, chat = self._reply_widget, self._chat_pane
        if reply is None or chat is None or not reply.is_mounted:  # shutting down mid-reply
            return
        body = reply.body
        before = body.line_count
        if final:
            # Back to Textual's anchor (the chat's end) if the user was following the reply.
            following = chat.shows_end(before)
            chat.stop_following()
            body.set_text(self._reply_text)
            if following:
                chat.call_after_refresh(chat.anchor)
        elif body.show(self._reply_text):  # drawn at the next layout: follow after it
            chat.call_after_refresh(chat.follow, before)
        else:
            chat.follow(before)

    @work(thread=True, exclusive=True, group="reply", name="reply")
    def _generate(
        self,
        index: int,
        version: ReplyVersion,
        messages: list[Message],
        params: SamplingParams,
        recorder: LensRecorder,
        cancel: threading.Event,
    ):
        stats = None
        error = None
        # Each time: torch may have started compute threads since the last reply.
        yield_cpu_to_the_ui(self._ui_thread_id)
        try:
            stats = self.source.stream_reply(
                messages, params, self._on_piece, lens=recorder, cancel=cancel, wait=True
            )
        except ReplyInterrupted as exc:  # the reply broke off: keep what arrived
            stats, error = exc.stats, str(exc)
        except EngineError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - shown in the message
            error = f"{type(exc).__name__}: {exc}"
        self.post_message(ReplyFinished(index, version, stats, error))

    def _needs_drain(self) -> bool:
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
            await self._flush_stream()

    async def _end_stream(self) -> None:
        """Draw what is still buffered, then the reply whole."""
        if self._flush_timer is not None:
            self._flush_timer.stop()
            self._flush_timer = None
        await self._drain()
        await self._flush_stream(force=True)
        if self._reply_widget is not None and self._reply_widget.body.streaming:
            self._show_streamed(final=True)
        for prompt in self.query(PromptBox):  # none once the app shuts down
            prompt.cursor_blink = self._blink_after_reply

    async def on_reply_finished(self, event: ReplyFinished) -> None:
        # Saved whole first: a quit while its end is still being drawn keeps all of it.
        self.session.finish_reply(event.version, event.stats, event.error)
        if self._needs_drain():
            # Its end is drawn a view at a time over a few frames (_drain): in a task of
            # its own, so that keys typed meanwhile are handled at once (a handler that
            # waits holds up the app's queue: 0.56 s for a key at 500 tok/s).
            self.run_worker(self._finish_reply(event), group="finish")
        else:
            await self._finish_reply(event)

    async def _finish_reply(self, event: ReplyFinished) -> None:
        await self._end_stream()
        stats, error, version = event.stats, event.error, event.version
        reply = self._reply_widget
        self._reply_widget = None
        if reply is not None and stats is not None and reply.body.text != stats.text:
            # Streaming lost or garbled text: show the engine's whole reply, and count it
            # (the UI benchmark reports this; it should stay 0).
            self.stream_repairs += 1
            reply.body.set_text(stats.text)
        if self._recorder is not None:
            version.lens_steps = list(self._recorder.steps)
            version.lens_complete = bool(version.lens_steps) and self._recorder.complete
            self._recorder = None
        if reply is not None:
            reply.show_meta()
            if version.lens_steps:
                self.lens_target = (reply, len(version.lens_steps) - 1)
                self._show_lens()
            reply.show_heat(self.heat_on)
        self.replies_done += 1
        if error:
            self.notify(error, title="Generation failed", severity="error")
            self._set_status("Generation failed: " + error)
        elif stats is not None and reply is not None:
            self._show_context(reply, stats)
            used = stats.prompt_tokens + stats.new_tokens
            window = f"/{stats.window:,}" if stats.window else " (the server's window is unknown)"
            self._set_status(f"Done · {stats.summary()} · context {used:,}{window}")

    def _show_context(self, reply: AssistantMessage, stats: ReplyStats) -> None:
        """Say at the reply what the window forced, and dim the turns left out."""
        notes = []
        if stats.left_out:
            turns = "turn" if stats.left_out == 1 else "turns"
            notes.append(
                f"{stats.left_out} earlier {turns} no longer fit the {stats.window:,}-token "
                "window and were left out of this reply"
            )
        if stats.clipped:
            notes.append(f"max_new_tokens clipped to {stats.max_new_tokens} to fit the window")
        reply.set_context_note(" · ".join(notes))
        for widget in self.query_one(ChatPane).query(".message"):
            widget.set_class(widget.turn_index < stats.left_out, "-left-out")
