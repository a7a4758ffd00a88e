"""The chat history at scale: 1,000 chats and 50,000 messages in a real SQLite file.

    python bench/history.py               # everything (loads the bundled model last)
    python bench/history.py --no-model    # the store and the app only

Prints, each the median of several runs:
- listing the chats, and a full-text search (one common word, one rare phrase, and a
  two-character Chinese word, which takes the scan path);          target <= 100 ms
- opening a 500-message chat in the app, to the first paint after it is mounted; target
  <= 1 s, and the typing latency in the message box once it is open;  target <= 50 ms
- the cost of saving a reply while it streams: the real model's tokens/s with the store
  written as the app writes it (the text at most once a second, from the UI thread's
  timer) against no store, alternating, in one run;                 target <= 1 %
- what recomputing the lens costs for a finished 256-token reply (one forward pass
  over prompt + reply, then the stages per step).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

WORDS = (
    "the model samples a token from the table after temperature top k and top p have "
    "shaped it so that likely words stay likely while the tail is cut away before it "
    "is drawn and the reply grows one piece at a time until it stops"
).split()


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def build(path: Path, chats: int = 1000, messages: int = 50_000, big: int = 500) -> int:
    """Fill ``path`` with synthetic chats through the store's own schema; the id of the
    chat with ``big`` messages."""
    import json

    from chatapp.store import ChatStore

    store = ChatStore(path)
    db = store._db  # bulk load: one transaction, not 50,000
    rng = random.Random(0)
    per_chat = (messages - big) // (chats - 1)
    now = time.time() - 86_400 * 30
    db.execute("BEGIN")
    big_id = 0
    params = json.dumps({"temperature": 0.75, "top_k": 50, "top_p": 0.95})
    for c in range(chats):
        count = big if c == chats // 2 else per_chat
        newest = 86_400 * 60 if count == big else 0  # the big chat is the newest
        cur = db.execute(
            "INSERT INTO chats (title, system, created, updated) VALUES (?, '', ?, ?)",
            (f"chat {c}: {_text(rng, 5)}", now + c * 60, now + c * 60 + count + newest),
        )
        chat_id = cur.lastrowid
        if count == big:
            big_id = chat_id
        for m in range(0, count, 2):
            db.execute(
                "INSERT INTO messages (chat_id, position, role, text, created) "
                "VALUES (?, ?, 'user', ?, ?)",
                (
                    chat_id,
                    m,
                    _text(rng, 25)
                    + (" 溫度" if rng.random() < 0.01 else "")
                    + (" LASTMARK" if m == count - 2 else ""),
                    now,
                ),
            )
            reply = db.execute(
                "INSERT INTO messages (chat_id, position, role, text, created, shown) "
                "VALUES (?, ?, 'assistant', '', ?, 0)",
                (chat_id, m + 1, now),
            ).lastrowid
            text = _text(rng, 60)
            if rng.random() < 0.001:
                text += " a rare zanzibar phrase"
            db.execute(
                "INSERT INTO versions (message_id, number, text, params, status, started, "
                "updated, finished, stats, token_ids) VALUES (?, 0, ?, ?, 'done', ?, ?, ?, ?, ?)",
                (
                    reply,
                    text,
                    params,
                    now,
                    now,
                    now,
                    json.dumps(
                        {
                            "prompt_tokens": 40,
                            "new_tokens": 60,
                            "elapsed": 2.0,
                            "time_to_first_token": 0.3,
                            "finish_reason": "eos",
                        }
                    ),
                    json.dumps(list(range(61))),
                ),
            )
    db.execute("COMMIT")
    store.close()
    return big_id


def timed(fn, runs: int = 7) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def bench_store(path: Path) -> None:
    from chatapp.store import ChatStore

    store = ChatStore(path)
    n_msgs = store._read("SELECT count(*) FROM messages")[0][0]
    n_chats = store._read("SELECT count(*) FROM chats")[0][0]
    print(f"history: {n_chats:,} chats, {n_msgs:,} messages, {path.stat().st_size / 1e6:.1f} MB")
    t, chats = timed(store.list_chats)
    print(
        f"list chats:                 {t * 1000:7.1f} ms  ({len(chats)} listed)   target <= 100 ms"
    )
    for query in ("temperature", "zanzibar phrase", "溫度"):
        t, found = timed(lambda q=query: store.search(q))
        print(f"search {query!r:18}  {t * 1000:7.1f} ms  ({len(found)} chats)   target <= 100 ms")


def child_app() -> None:
    """The app on the real terminal driver, with a fake source (the history is real)."""
    from chatapp.engine.fake import FakeTokenSource
    from chatapp.tui.app import ChatApp

    source = FakeTokenSource(["x"])
    ChatApp(lambda progress: source).run()


def bench_open(path: Path) -> None:
    """In a pseudo-terminal (120x40): Ctrl+O, Enter on the newest chat (500 messages),
    timed to the frame that shows its last message; then keys typed in the message box,
    each timed from the write to the frame that shows it (as bench/ui_stream.py does)."""
    from bench_common import ANSI, MARKERS, PtyChild

    child = PtyChild(
        [sys.executable, __file__, "--child"], {**os.environ, "CHATAPP_DATA_DIR": str(path.parent)}
    )
    primary, proc, buffer, read = child.primary, child.proc, child.buffer, child.read

    def time_until(pattern: str, send: bytes, timeout: float = 30) -> float | None:
        offset, sent_at = len(buffer), time.perf_counter()
        os.write(primary, send)
        while time.perf_counter() - sent_at < timeout:
            read(0.002)
            if pattern in ANSI.sub(b"", bytes(buffer[offset:])).decode("utf-8", "replace"):
                return time.perf_counter() - sent_at
        return None

    try:
        if time_until("Ready", b"", 60) is None:
            raise SystemExit("the app did not become ready in the terminal")
        opens = []
        for _ in range(3):
            time_until("New chat", b"\x0e", 10)  # Ctrl+N: the screen shows no chat
            time.sleep(0.5)
            if time_until("type to search", b"\x0f") is None:  # Ctrl+O
                raise SystemExit("the chats screen did not open")
            time.sleep(0.3)
            opened = time_until("LASTMARK", b"\r")
            if opened is None:
                raise SystemExit("the chat's last message never reached the terminal")
            opens.append(opened)
            time.sleep(1.0)
        keys = []
        for key in MARKERS * 5:
            latency = time_until(key, key.encode(), 5)
            if latency is not None:
                keys.append(latency)
            time.sleep(0.1)
        os.write(primary, b"\x11")  # Ctrl+Q
        proc.wait(timeout=20)
    finally:
        proc.kill()
        os.close(primary)
    print(
        f"open a 500-message chat:    {statistics.median(opens) * 1000:7.1f} ms median, "
        f"{max(opens) * 1000:.0f} ms worst (Enter in the chats screen to the frame with its "
        "last message)   target <= 1000 ms"
    )
    print(
        f"typing once open:           {statistics.median(keys) * 1000:7.1f} ms median, "
        f"{max(keys) * 1000:.1f} ms worst over {len(keys)} keys (key to frame)   target <= 50 ms"
    )


def bench_saving(path: Path, rounds: int, tokens: int) -> None:
    from bench_common import disable_eos

    from chatapp.conversation import ChatSession
    from chatapp.engine import LocalEngine, Message
    from chatapp.engine.framework_internals import silence_libraries
    from chatapp.params import SamplingParams
    from chatapp.store import ChatStore

    silence_libraries()
    engine = LocalEngine.load("bundled", quant="none", dtype="auto")
    disable_eos(engine)
    engine.reuse_cache = False
    params = SamplingParams(max_new_tokens=tokens, seed=1)
    messages = [Message("user", "Tell me a long story about the sea.")]
    session = ChatSession(ChatStore(path))
    engine.stream_reply(messages, params.replace(max_new_tokens=4))  # warm up

    def run(save: bool) -> float:
        pieces: list[str] = []
        done = threading.Event()
        version = None
        if save:
            turn = session.add_user("Tell me a long story about the sea.")
            version = session.start_reply(turn, params, "bundled", "bench")

        def timer() -> None:  # the app's 50 ms flush timer, which saves
            while not done.wait(0.05):
                began = time.perf_counter()
                session.stream_text(version, "".join(pieces))
                saving[0] += time.perf_counter() - began

        thread = threading.Thread(target=timer) if save else None
        if thread:
            thread.start()
        stats = engine.stream_reply(messages, params, pieces.append)
        done.set()
        if thread:
            thread.join()
            session.finish_reply(version, stats)
        elapsed[0] += stats.elapsed
        steps = stats.new_tokens - 1
        return steps / (stats.elapsed - stats.time_to_first_token)

    saving, elapsed = [0.0], [0.0]
    with_store, without = [], []
    for i in range(rounds):
        order = (True, False) if i % 2 == 0 else (False, True)
        for save in order:
            (with_store if save else without).append(run(save))
    a, b = statistics.median(with_store), statistics.median(without)
    print(
        f"decode with the store saving: {a:.2f} tok/s, without: {b:.2f} tok/s "
        f"({rounds} alternating runs of {tokens} tokens each)"
    )
    spread = (max(without) - min(without)) / b * 100
    print(
        f"saving while streaming costs {(1 - a / b) * 100:+.2f}% of tokens/s   target <= 1 % "
        f"(run-to-run spread without the store: {spread:.1f}%)"
    )
    print(
        f"time spent saving: {saving[0] * 1000:.1f} ms over {elapsed[0]:.1f} s of streaming "
        f"({saving[0] / max(elapsed[0], 1e-9) * 100:.3f}% of the reply time, on the UI thread)"
    )

    # The lens of a finished reply, recomputed from its tokens (raw format, EOS off: the
    # reply runs to its full 256 tokens; the dialogue format would stop at a blank line).
    engine.chat_format = "raw"
    reply_params = SamplingParams(max_new_tokens=256, seed=2)
    stats = engine.stream_reply(messages, reply_params)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        steps = engine.replay_lens(messages, stats.token_ids, reply_params, text=stats.text)
        times.append(time.perf_counter() - start)
    print(
        f"lens recomputed for a finished {len(steps)}-token reply: "
        f"{statistics.median(times):.2f} s (median of 3; generating it took {stats.elapsed:.2f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-model", action="store_true", help="skip the model figures")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=96)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_app()
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chats.db"
        start = time.perf_counter()
        build(path)
        print(f"built the synthetic history in {time.perf_counter() - start:.1f} s")
        bench_store(path)
        bench_open(path)
        if not args.no_model:
            bench_saving(path, args.rounds, args.tokens)


if __name__ == "__main__":
    main()
