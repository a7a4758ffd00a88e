"""A long chat in the real app: memory stays level, first-token time stays flat, and every
turn is in the history.

    python bench/soak.py [--turns 500] [--context 1024] [--reply-tokens 12] [--quant MODE]

The real Textual app (``chatapp --context N --max-new-tokens M`` with the bundled model, its
default format and quantization) is driven in this process with Textual's Pilot, as a
user would: each turn's short message is put in the prompt box and sent with the Enter
key; the bench waits for the app's count of finished replies. A small window
makes turns keep leaving it, so the app fits the conversation anew at every turn for the
whole run. Its chats and config live in a temporary folder (``CHATAPP_CONFIG_DIR``,
``CHATAPP_DATA_DIR``), never the user's. Measured per turn:

- first-token time: from the Enter key to the engine's first piece of the reply (the
  engine's ``on_text`` callback, wrapped where the bench's engine factory hands the
  engine to the app), so it covers the app's work before the request too;
- resident memory after the reply (``/proc/self/statm``: the whole process, model
  included).

Asserts, with T = ``--turns`` and B = T/10 (turn 50 of 500): resident memory after every
turn from B on within 10% of its level at turn B; the median first-token time of the last
T/10 turns at most 1.5x that of turns B to 2B; turns left out of the window by the end;
and, after the app has quit, the history database holding the one chat with every
message sent, in order, and a finished reply to each. Ends with ``soak: T turns ... ok``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_common import rss_bytes  # noqa: E402

TOPICS = ["the sea", "bread", "old trains", "the moon", "bees", "rain", "tea", "maps"]


def user_text(turn: int) -> str:
    """A short message, different every turn (~12 tokens)."""
    return f"Tell me one thing about {TOPICS[turn % len(TOPICS)]}, please ({turn + 1})."


class FirstPieces:
    """Wraps an engine's ``stream_reply`` (the engine protocol, not the app): when the app
    asked for the last reply, and when its first piece came."""

    def __init__(self) -> None:
        self.asked = threading.Event()
        self.first_at: float | None = None

    def watch(self, engine):
        original = engine.stream_reply

        def stream_reply(messages, params, on_text=None, *args, **kwargs):
            deliver = on_text or kwargs.pop("on_text", None) or (lambda piece: None)

            def first(piece: str) -> None:
                if self.first_at is None:
                    self.first_at = time.perf_counter()
                deliver(piece)

            self.asked.set()
            return original(messages, params, first, *args, **kwargs)

        engine.stream_reply = stream_reply
        return engine

    def arm(self) -> None:
        self.asked.clear()
        self.first_at = None


class SoakDriver:
    """Every contact with the app, in one place: how it is built, the keys that send a
    message, and its count of finished replies."""

    def __init__(self, args: argparse.Namespace) -> None:
        from chatapp.cli import parse_command_line
        from chatapp.engine.from_args import engine_from_args
        from chatapp.tui.launch import make_app

        flags = ["--context", str(args.context), "--max-new-tokens", str(args.reply_tokens)]
        flags += ["--quant", args.quant] if args.quant else []
        cli_args, params = parse_command_line(flags)
        self.pieces = FirstPieces()

        def factory(progress):
            return self.pieces.watch(engine_from_args(cli_args, progress, background=True))

        self.app = make_app(cli_args, params, engine_factory=factory)

    def replies_done(self) -> int:
        return self.app.replies_done

    async def type(self, pilot, text: str) -> None:
        """Into the prompt box at once (a key at a time, Pilot waits for the process to go
        idle after each: seconds per message while torch's threads wind down)."""
        box = self.app.query_one("#prompt")
        box.focus()
        box.insert(text)
        await pilot.pause()

    async def send(self, pilot, patience: float) -> float:
        """Press Enter until the app asks the engine for the reply (a message sent before
        the model is ready stays in the box, so Enter is pressed again); returns when the
        Enter that was taken was pressed."""
        deadline = time.monotonic() + patience
        while True:
            pressed = time.perf_counter()
            await pilot.press("enter")
            for _ in range(20):
                if self.pieces.asked.is_set():
                    return pressed
                await pilot.pause(0.05)
            if time.monotonic() > deadline:
                raise AssertionError("the app never sent the message to the engine")


async def chat(driver: SoakDriver, args: argparse.Namespace) -> list[dict]:
    """The conversation; one row per turn (first-token seconds, resident bytes)."""
    rows: list[dict] = []
    async with driver.app.run_test(size=(120, 40)) as pilot:
        for turn in range(args.turns):
            done = driver.replies_done()
            await driver.type(pilot, user_text(turn))
            driver.pieces.arm()
            pressed = await driver.send(pilot, patience=300 if turn == 0 else 30)
            deadline = time.monotonic() + 300
            while driver.replies_done() <= done:
                if time.monotonic() > deadline:
                    raise AssertionError(f"turn {turn + 1}: the reply never finished")
                await pilot.pause(0.02)
            first = driver.pieces.first_at
            rows.append({"first": None if first is None else first - pressed, "rss": rss_bytes()})
            if (turn + 1) % max(1, args.turns // 10) == 0:
                print(
                    f"turn {turn + 1:>4}: resident {rows[-1]['rss'] / 2**20:7.1f} MiB, first "
                    f"token {format_seconds(rows[-1]['first'])}",
                    flush=True,
                )
        await pilot.press("ctrl+q")
    return rows


def format_seconds(value: float | None) -> str:
    return "none (an empty reply)" if value is None else f"{value:.2f} s"


def history_rows(database: Path) -> tuple[int, list[str], list[tuple[str, dict]]]:
    """From the history file itself: the number of chats, the user messages in order, and
    each reply's last version (status, stats)."""
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        chats = db.execute("SELECT count(*) FROM chats").fetchone()[0]
        sent = [
            r[0]
            for r in db.execute(
                "SELECT text FROM messages WHERE role = 'user' ORDER BY position, id"
            )
        ]
        replies = db.execute(
            "SELECT v.status, v.stats FROM messages m JOIN versions v ON v.message_id = m.id "
            "WHERE m.role = 'assistant' AND v.number = (SELECT max(number) FROM versions "
            "WHERE message_id = m.id) ORDER BY m.position, m.id"
        ).fetchall()
    finally:
        db.close()
    return chats, sent, [(status, json.loads(stats) if stats else {}) for status, stats in replies]


def median_first(rows: list[dict]) -> float:
    values = [r["first"] for r in rows if r["first"] is not None]
    if not values:
        raise AssertionError("no reply in the window gave a first piece")
    return statistics.median(values)


def check(rows: list[dict], args: argparse.Namespace, database: Path) -> str:
    """The soak's assertions; returns the closing line."""
    turns = args.turns
    base = max(1, turns // 10)  # turn 50 of 500
    base_rss = rows[base - 1]["rss"]
    drift = [(i + 1, r["rss"] / base_rss - 1) for i, r in enumerate(rows) if i + 1 >= base]
    worst_turn, worst = max(drift, key=lambda d: abs(d[1]))
    early = median_first(rows[base - 1 : 2 * base])
    late = median_first(rows[turns - base :])
    chats, sent, replies = history_rows(database)
    left_out = replies[-1][1].get("left_out", 0) if replies else 0
    empty = sum(r["first"] is None for r in rows)
    print(
        f"resident memory at turn {base}: {base_rss / 2**20:.1f} MiB; largest change after it "
        f"{worst:+.1%} (turn {worst_turn})"
    )
    print(
        f"first token (Enter to the engine's first piece), median: turns {base}-{2 * base} "
        f"{early:.2f} s, turns {turns - base + 1}-{turns} {late:.2f} s ({late / early:.2f}x)"
        + (f"; {empty} empty replies not counted" if empty else "")
    )
    print(
        f"history: {chats} chat, {len(sent)} messages sent, {len(replies)} replies; "
        f"{left_out} turns out of the {args.context}-token window at the last turn"
    )
    problems = []
    if abs(worst) > 0.10:
        problems.append(f"resident memory moved {worst:+.1%} from turn {base}'s (limit 10%)")
    if late > 1.5 * early:
        problems.append(f"first-token time grew {late / early:.2f}x (limit 1.5x)")
    if not left_out:
        problems.append("no turn ever left the window: lower --context or raise --turns")
    if chats != 1 or sent != [user_text(i) for i in range(turns)]:
        problems.append(f"the history holds {chats} chats and {len(sent)} of {turns} messages")
    unfinished = [i + 1 for i, (status, _) in enumerate(replies) if status != "done"]
    if len(replies) != turns or unfinished:
        problems.append(f"{len(replies)} replies in the history, not done: {unfinished[:10]}")
    if problems:
        raise AssertionError("; ".join(problems))
    return (
        f"soak: {turns} turns in the app at --context {args.context}: memory within "
        f"{abs(worst):.1%} of turn {base}'s, first token {late / early:.2f}x turn {base}-"
        f"{2 * base}'s, every turn in the history: ok"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=500)
    parser.add_argument("--context", type=int, default=1024, help="the app's --context")
    parser.add_argument("--reply-tokens", type=int, default=12, help="the app's --max-new-tokens")
    parser.add_argument(
        "--quant",
        help="the app's --quant (default: its own; on a CPU auto makes an int8 copy in the "
        "background, which a run shorter than ~200 turns may see land after turn T/10)",
    )
    args = parser.parse_args()
    if args.turns < 20:
        parser.error("--turns: at least 20 (the checks compare tenths of the run)")
    folder = Path(tempfile.mkdtemp(prefix="chatapp-soak-"))
    os.environ["CHATAPP_CONFIG_DIR"] = str(folder / "config")
    os.environ["CHATAPP_DATA_DIR"] = str(folder / "data")
    from chatapp import paths

    database = paths.history_file()
    print(
        f"{args.turns} turns, --context {args.context}, --max-new-tokens {args.reply_tokens}; "
        f"chats and config in {folder}",
        flush=True,
    )
    driver = SoakDriver(args)
    rows = asyncio.run(chat(driver, args))
    print(check(rows, args, database))


if __name__ == "__main__":
    main()
