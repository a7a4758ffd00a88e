"""How fast streamed text reaches the terminal, and whether typing stays responsive.

    python bench/ui_stream.py              # fake source in a real terminal + real model
    python bench/ui_stream.py --no-real    # fake source only

Part 1 runs the app in a child process on a pseudo-terminal (120x40, the real terminal
driver, so every frame is written as it would be to a user's terminal). A fake source
streams a reply with paragraphs, lists and code blocks at a set rate. The parent reads the
terminal output and prints:
  - tokens/s reaching the terminal: Enter to the frame that shows the last token;
  - tokens drawn while streaming: how many tokens appeared in the terminal output before
    the reply ended, and whether the app had to replace the streamed text at the end;
  - keypress-to-frame latency: a key typed every 100 ms while streaming, timed from the
    write to the pty until a frame containing that character comes back;
  - drawing cost per token: the Markdown parse and mount that follow each write
    (timed in the child), first 100 tokens vs last 100.
Part 2 runs the real bundled model headless in the app and directly through the engine,
alternating and rotating the order, and compares tokens/s measured from Enter to the last
token drawn with the engine's own request-to-last-token rate.
Targets: all tokens drawn while streaming (0 repairs), worst latency <= 50 ms, no growth,
app/engine >= 0.95.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_common import PtyChild  # noqa: E402

ANSI = re.compile(
    rb"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[()][0-9A-B]|\x1b[=>78]"
)
MARKERS = "QZXJVK"  # typed while streaming: never part of the reply or the redrawn chrome


def reply_pieces(tokens: int) -> list[str]:
    """A reply of ``tokens`` pieces: paragraphs, lists and fenced code, numbered tokens."""
    pieces: list[str] = []
    i = 0
    while len(pieces) < tokens:
        kind = (len(pieces) // 40) % 3
        if kind == 0:  # a paragraph
            pieces += [f"t{i + k} " for k in range(19)] + ["\n\n"]
        elif kind == 1:  # a list
            for _ in range(5):
                pieces += ["- "] + [f"t{i + k} " for k in range(3)] + ["\n"]
                i += 3
            pieces += ["\n"]
            continue
        else:  # a code block
            pieces += ["```python\n"] + [f"t{i + k}\n" for k in range(18)] + ["```\n\n"]
        i += 19 if kind == 0 else 18
    return pieces[:tokens]


def numbered(pieces: list[str]) -> set[int]:
    return {int(m) for p in pieces for m in re.findall(r"t(\d+)", p)}


# -- part 1: the child, on the pseudo-terminal -------------------------------------------------
def child_app(tokens: int, rate: float, result_path: str) -> None:
    from textual.await_complete import AwaitComplete

    from chatapp.engine.fake import FakeTokenSource
    from chatapp.params import SamplingParams
    from chatapp.tui.app import ChatApp
    from chatapp.tui.chat import AssistantMessage, ChatPane

    pieces = reply_pieces(tokens)
    source = FakeTokenSource(pieces, tokens_per_second=rate)
    app = ChatApp(lambda progress: source, SamplingParams(max_new_tokens=tokens))
    costs: list[tuple[int, float]] = []  # (characters of reply drawn after, seconds)

    def instrument(reply: AssistantMessage) -> None:
        markdown = reply.markdown
        original = markdown.append

        def timed_append(fragment: str) -> AwaitComplete:
            pending = original(fragment)

            async def run() -> None:
                start = time.perf_counter()
                await pending
                costs.append((len(markdown.source), time.perf_counter() - start))

            return AwaitComplete(run())

        markdown.append = timed_append  # type: ignore[method-assign]

    original_start = app._start_reply

    def start(index: int) -> None:
        reply = app.query_one(ChatPane).reply_for(index)
        assert reply is not None
        instrument(reply)
        original_start(index)

    app._start_reply = start  # type: ignore[method-assign]
    app.run()
    # Characters of the reply -> tokens: where each piece ends.
    ends, total = [], 0
    for piece in pieces:
        total += len(piece)
        ends.append(total)
    rows = []
    for chars, seconds in costs:
        drawn = sum(1 for e in ends if e <= chars)
        rows.append((drawn, seconds))
    Path(result_path).write_text(
        json.dumps({"repairs": app.stream_repairs, "appends": rows, "done": app.replies_done})
    )


def run_in_terminal(tokens: int, rate: float) -> None:
    pieces = reply_pieces(tokens)
    expected = numbered(pieces)
    last = max(expected)
    result = Path(tempfile.mkstemp(suffix=".json")[1])
    child = PtyChild(
        [sys.executable, __file__, "--child", str(tokens), str(rate), str(result)],
        {**os.environ, "COLUMNS": "120", "LINES": "40"},
    )
    primary, proc, buffer, read = child.primary, child.proc, child.buffer, child.read

    def wait_for(pattern: bytes, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        start = len(buffer)
        while time.monotonic() < deadline:
            read(0.05)
            if pattern in ANSI.sub(b"", bytes(buffer[start:])):
                return True
        return False

    if not wait_for(b"Ready", 60):
        proc.kill()
        raise SystemExit("the app did not become ready in the terminal")
    # The method's own floor: keys typed while nothing streams.
    idle: list[float] = []
    for key in MARKERS[:5]:
        offset, sent_at = len(buffer), time.perf_counter()
        os.write(primary, key.encode())
        while time.perf_counter() - sent_at < 5:
            read(0.002)
            if key in ANSI.sub(b"", bytes(buffer[offset:])).decode("utf-8", "replace"):
                idle.append(time.perf_counter() - sent_at)
                break
        time.sleep(0.1)
    os.write(primary, b"\x7f" * 5 + b"go")  # backspaces, then the message
    time.sleep(0.2)
    read(0.05)
    streamed_from = len(buffer)
    enter_at = time.perf_counter()
    os.write(primary, b"\r")
    latencies: list[float] = []
    seen: set[int] = set()
    last_at = None
    next_key_at = enter_at + 0.3
    key_index = 0
    pending_key: tuple[str, float, int] | None = None
    deadline = enter_at + tokens / rate * 3 + 30
    while time.perf_counter() < deadline:
        data = read(0.002)
        if data:
            text = ANSI.sub(b"", bytes(buffer[streamed_from:])).decode("utf-8", "replace")
            found = {int(m) for m in re.findall(r"t(\d+)", text)}
            seen |= found & expected
            if last_at is None and last in seen:
                last_at = time.perf_counter()
            if pending_key is not None:
                key, sent_at, offset = pending_key
                fresh = ANSI.sub(b"", bytes(buffer[offset:])).decode("utf-8", "replace")
                if key in fresh:
                    latencies.append(time.perf_counter() - sent_at)
                    pending_key = None
        now = time.perf_counter()
        if last_at is None and pending_key is None and now >= next_key_at:
            key = MARKERS[key_index % len(MARKERS)]
            key_index += 1
            pending_key = (key, now, len(buffer))
            os.write(primary, key.encode())
            next_key_at = now + 0.1
        if last_at is not None and pending_key is None:
            break
    os.write(primary, b"\x11")  # Ctrl+Q
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    while read(0.05):
        pass
    os.close(primary)
    child = json.loads(result.read_text()) if result.stat().st_size else {}
    result.unlink()

    print(
        f"fake source in a real terminal (120x40): {tokens} tokens at {rate:.0f} tok/s "
        "(paragraphs, lists, code blocks)"
    )
    if last_at is None:
        print("the last token never reached the terminal")
    else:
        elapsed = last_at - enter_at
        print(
            f"tokens reaching the terminal  {tokens / elapsed:7.1f} tok/s (Enter to the frame "
            f"with the last token, {elapsed:.2f} s; source paced at {rate:.0f} tok/s)"
        )
    print(
        f"tokens drawn while streaming  {len(seen)}/{len(expected)} numbered tokens seen in the "
        f"terminal output; streamed text replaced at the end: {child.get('repairs')} time(s)"
    )
    if latencies:
        print(
            f"keypress-to-frame latency     worst {max(latencies) * 1000:.1f} ms, median "
            f"{statistics.median(latencies) * 1000:.1f} ms over {len(latencies)} keys while "
            f"streaming (target <= 50 ms); idle: median "
            f"{statistics.median(idle) * 1000 if idle else float('nan'):.1f} ms over {len(idle)} keys"
        )
    rows = child.get("appends", [])

    def cost_between(lo: int, hi: int) -> float:
        per_token, prev = [], 0
        for drawn, seconds in rows:
            n = drawn - prev
            if n > 0 and lo <= prev < hi:
                per_token.append(seconds / n)
            prev = max(prev, drawn)
        return statistics.mean(per_token) * 1000 if per_token else float("nan")

    early, late = cost_between(0, 100), cost_between(tokens - 100, tokens)
    print(
        f"parse + mount per token       first 100: {early:.3f} ms, last 100: {late:.3f} ms "
        f"(growth x{late / early:.2f}; {len(rows)} appends)"
    )


# -- part 2: the real model, app vs engine -------------------------------------------------
def _drawn_length(reply) -> int:
    """Characters of the reply in its mounted Markdown blocks (what the screen shows)."""
    from textual.widgets._markdown import MarkdownBlock

    blocks = reply.markdown.query(MarkdownBlock)
    return sum(len(b._content.plain) for b in blocks if not b.query(MarkdownBlock))


async def real_model(
    tokens: int, runs: int, model: str = "bundled", quant: str = "none", compile: bool = False
) -> float:
    from chatapp.engine import LocalEngine, Message
    from chatapp.engine.loading import silence_libraries
    from chatapp.params import SEED_VALUES, SamplingParams
    from chatapp.tui.app import ChatApp
    from chatapp.tui.chat import AssistantMessage

    silence_libraries()
    engine = LocalEngine.load(model, quant=quant, compile=compile)
    params = SamplingParams(**SEED_VALUES).replace(max_new_tokens=tokens, seed=0)
    prompt = "使用繁體中文回答，請問什麼是大型語言模型？"
    engine.stream_reply([Message("user", prompt)], params)  # warm-up
    app_rates: list[float] = []
    engine_rates: list[float] = []
    app = ChatApp(lambda progress: engine, params)
    async with app.run_test(size=(120, 40)) as pilot:
        while app.source is None:
            await pilot.pause(0.01)

        async def direct() -> None:
            stats = await asyncio.to_thread(engine.stream_reply, [Message("user", prompt)], params)
            engine_rates.append(stats.new_tokens / stats.elapsed)

        async def in_app() -> None:
            await app.action_new_chat()
            done = app.replies_done
            app.query_one("#prompt").insert(prompt)
            drawn, grew_at = -1, None
            enter = time.perf_counter()
            await pilot.press("enter")
            while app.replies_done == done:
                replies = app.query(AssistantMessage)
                if replies:
                    now_drawn = _drawn_length(replies.last())
                    if now_drawn != drawn:
                        drawn, grew_at = now_drawn, time.perf_counter()
                await asyncio.sleep(0.005)
            stats = app.query(AssistantMessage).last().versions[-1].stats
            app_rates.append(stats.new_tokens / ((grew_at or time.perf_counter()) - enter))

        order = [direct, in_app]
        for i in range(runs):
            for fn in order[i % 2 :] + order[: i % 2]:  # rotate the order each round
                await fn()
        repairs = app.stream_repairs
    a, e = statistics.median(app_rates), statistics.median(engine_rates)
    print(f"{engine.describe()}: {tokens} tokens, {runs} runs each (alternating, order rotated)")
    print(
        f"engine direct   median {e:.2f} tok/s request to last token  "
        f"(runs: {', '.join(f'{r:.1f}' for r in engine_rates)})"
    )
    print(
        f"in the app      median {a:.2f} tok/s Enter to last token drawn  "
        f"(runs: {', '.join(f'{r:.1f}' for r in app_rates)})"
    )
    print(f"ratio app/engine {a / e:.3f} (target >= 0.97); streamed text replaced: {repairs}")
    return a / e


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--no-real", action="store_true")
    parser.add_argument("--real-tokens", type=int, default=48)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--model", default="bundled", help="part 2's model (a folder on a GPU box)")
    parser.add_argument("--quant", default="none")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--only-real", action="store_true", help="part 2 only")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_app(int(args.child[0]), float(args.child[1]), args.child[2])
        return
    if not args.only_real:
        run_in_terminal(args.tokens, args.rate)
    if not args.no_real:
        ratio = asyncio.run(
            real_model(args.real_tokens, args.runs, args.model, args.quant, args.compile)
        )
        print(f"app/engine tokens/s ratio: {ratio:.3f}")


if __name__ == "__main__":
    main()
