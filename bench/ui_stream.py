"""How fast streamed text reaches the terminal, what drawing it costs the UI thread, and
whether typing stays responsive.

    python bench/ui_stream.py              # parts 1-3
    python bench/ui_stream.py --no-real    # part 1 only (fake source)
    python bench/ui_stream.py --only-real --model FOLDER --quant MODE [--compile]  # part 2

Part 1 runs the app in a child process on a pseudo-terminal (the real terminal driver, so
every frame is written as it would be to a user's terminal). A fake source streams a
reply with paragraphs, lists and code blocks at a set rate: at 80x24 and 200x60 at
30 tok/s (a CPU model's pace), then at 120x40 at 500 tok/s, then a 1,000-token reply at
80x24 at 100 tok/s with no keys typed (the drawing cost per token, first 100 tokens to
last: in the other runs the last 100 come while keys are typed, and count typing). Per run:
  - tokens/s reaching the terminal: Enter to the frame that shows the last token;
  - tokens drawn while streaming (numbered tokens seen in the terminal output) and
    whether the app had to replace the streamed text at the end;
  - keypress-to-frame latency: a key typed every 100 ms over the stream's second half;
  - the UI thread's share of a core while streaming (its CPU time, read in the child), over
    the first half (streaming alone) and the second (with the keys typed);
  - the UI thread's CPU time per token over the first 100 and the last 100 tokens (the
    target is on the run with no keys typed).
Part 3 (bench/ui_long_prompt.py) pastes a 7,800-character message into the app with the
real bundled model: Enter to the message and to "Generating" on screen, and keypress
latency during the prefill. Part 2 (bench/ui_app_vs_engine.py) runs the app and the
engine alone, each in a child process on a terminal, on the same model and values with no
KV reuse, alternating, and compares their tokens/s from the request to the reply's end on
the terminal. Ends with one line: ``app/engine tokens/s ratio: R``.
Targets: every token drawn while streaming (0 repairs); UI thread <= 5% of a core at a
CPU model's pace and <= 15% at 500 tok/s; keypress <= 50 ms; cost per token flat (last
100 within 1.1x of the first 100); long prompt: message and Generating within 200 ms,
keypress <= 100 ms; app/engine >= 0.97.
"""

from __future__ import annotations

import argparse
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

from bench_common import (  # noqa: E402
    ANSI,
    MARKERS,
    PtyChild,
)


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
    from chatapp.engine.fake import FakeTokenSource
    from chatapp.params import SamplingParams
    from chatapp.tui.app import ChatApp
    from chatapp.tui.reply_stream import ReplyStream

    pieces = reply_pieces(tokens)
    source = FakeTokenSource(pieces, tokens_per_second=rate)
    app = ChatApp(lambda progress: source, SamplingParams(max_new_tokens=tokens))
    cpu: list[tuple[float, float, int]] = []  # (wall, UI-thread CPU seconds, chars drawn)
    original_start, original_flush = ReplyStream.start, ReplyStream._flush
    original_finish = ReplyStream.finish

    async def flush(stream: ReplyStream, force: bool = False) -> None:
        await original_flush(stream, force)
        cpu.append((time.perf_counter(), time.thread_time(), len(stream.reply.shown_text)))

    # UI_STREAM_PROFILE=FILE: the UI thread's cProfile while the reply streams (pstats).
    profile_to = os.environ.get("UI_STREAM_PROFILE")
    profile = None
    if profile_to:
        import cProfile

        profile = cProfile.Profile()

    async def finish(stream: ReplyStream, event) -> None:
        if profile is not None:
            profile.disable()
        await original_finish(stream, event)

    def start(stream: ReplyStream, messages) -> None:
        cpu.append((time.perf_counter(), time.thread_time(), 0))
        if profile is not None:
            profile.enable()
        original_start(stream, messages)

    ReplyStream.start, ReplyStream._flush = start, flush  # type: ignore[method-assign]
    ReplyStream.finish = finish  # type: ignore[method-assign]
    app.run()
    if profile is not None:
        profile.dump_stats(profile_to)
    # Characters of the reply -> tokens: where each piece ends.
    ends, total = [], 0
    for piece in pieces:
        total += len(piece)
        ends.append(total)
    samples = [(w, c, sum(1 for e in ends if e <= chars)) for w, c, chars in cpu]
    Path(result_path).write_text(
        json.dumps(
            {
                "repairs": sum(pane.stream_repairs for pane in app.panes),
                "done": app.replies_done,
                "cpu": samples,
            }
        )
    )


def run_in_terminal(
    tokens: int, rate: float, size: tuple[int, int] = (120, 40), keys: bool = True
) -> dict:
    pieces = reply_pieces(tokens)
    expected = numbered(pieces)
    last = max(expected)
    result = Path(tempfile.mkstemp(suffix=".json")[1])
    child = PtyChild(
        [sys.executable, __file__, "--child", str(tokens), str(rate), str(result)],
        {**os.environ, "COLUMNS": str(size[0]), "LINES": str(size[1])},
        rows=size[1],
        cols=size[0],
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
    # Keys are typed over the second half of the stream only: the first half measures
    # what streaming alone costs the UI thread, the second what typing adds (and latency).
    keys_from = enter_at + tokens / rate / 2 if keys else float("inf")
    next_key_at = keys_from
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
        f"fake source in a real terminal ({size[0]}x{size[1]}): {tokens} tokens at {rate:.0f} "
        "tok/s (paragraphs, lists, code blocks)"
        + ("" if keys else "; no keys typed: the drawing cost alone, first 100 tokens to last")
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
    if seen != expected:
        missing = sorted(expected - seen)
        print(
            f"  not seen: {', '.join(f't{n}' for n in missing[:30])}"
            + (" ..." if len(missing) > 30 else "")
        )
    if latencies:
        print(
            f"keypress-to-frame latency     worst {max(latencies) * 1000:.1f} ms, median "
            f"{statistics.median(latencies) * 1000:.1f} ms over {len(latencies)} keys while "
            f"streaming (target <= 50 ms); idle: median "
            f"{statistics.median(idle) * 1000 if idle else float('nan'):.1f} ms over {len(idle)} keys"
        )
    samples = child.get("cpu", [])
    summary: dict = {"seen": len(seen), "expected": len(expected), "latencies": latencies}
    if len(samples) >= 2:

        def share(rows: list) -> tuple[float, float, float]:
            wall = rows[-1][0] - rows[0][0]
            busy = rows[-1][1] - rows[0][1]
            return busy / wall if wall > 0 else float("nan"), busy, wall

        quiet = [x for x in samples if x[0] <= keys_from]
        typing = [x for x in samples if x[0] >= keys_from]
        (ui, busy, wall) = share(quiet)
        ui_typing = share(typing)[0] if len(typing) >= 2 else float("nan")
        summary["ui_share"], summary["ui_share_typing"] = ui, ui_typing

        def ui_cost(lo: int, hi: int) -> float:
            """UI-thread CPU ms per token while tokens lo..hi were drawn."""
            inside = [x for x in samples if lo <= x[2] <= hi]
            if len(inside) < 2 or inside[-1][2] == inside[0][2]:
                return float("nan")
            return (inside[-1][1] - inside[0][1]) / (inside[-1][2] - inside[0][2]) * 1000

        early, late = ui_cost(0, 100), ui_cost(tokens - 100, tokens)
        summary["growth"] = late / early if early else float("nan")
        print(
            f"UI thread while streaming     {ui * 100:.1f}% of a core ({busy:.2f} s CPU in "
            f"{wall:.2f} s, first half); {ui_typing * 100:.1f}% in the second half, with a key "
            "typed every 100 ms"
            if keys
            else f"UI thread while streaming     {ui * 100:.1f}% of a core ({busy:.2f} s CPU in "
            f"{wall:.2f} s, the whole reply)"
        )
        print(
            f"UI-thread CPU per token       first 100: {early:.3f} ms, last 100: {late:.3f} ms "
            f"(x{summary['growth']:.2f})"
        )
    return summary


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
    parser.add_argument("--no-long-prompt", action="store_true", help="skip part 3")
    parser.add_argument(
        "--rate-runs",
        help="part 1's runs as 'COLS,ROWS,RATE,TOKENS[,KEYS] ...' (KEYS 0: no keys typed; "
        "default: 80x24 and 200x60 at 30 tok/s, a CPU model's pace, then 120x40 at 500 tok/s, "
        "then 80x24 at 100 tok/s for 1,000 tokens with no keys typed)",
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_app(int(args.child[0]), float(args.child[1]), args.child[2])
        return
    if not args.only_real:
        if args.rate_runs:
            runs = [tuple(float(x) for x in spec.split(",")) for spec in args.rate_runs.split()]
        else:
            # The last: the drawing cost per token over a 1,000-token reply with no keys
            # typed (keys typed over the others' second half cost the UI thread too, so
            # their last 100 tokens measure typing as well as drawing).
            runs = [
                (80, 24, 30, 300),
                (200, 60, 30, 300),
                (120, 40, 500, args.tokens),
                (80, 24, 100, args.tokens, 0),
            ]
        for cols, rows, rate, tokens, *keys in runs:
            run_in_terminal(
                int(tokens), rate, (int(cols), int(rows)), keys=bool(keys[0]) if keys else True
            )
            print()
    if not args.no_real and not args.no_long_prompt:
        from ui_long_prompt import long_prompt

        long_prompt()
        print()
    if not args.no_real:
        from ui_app_vs_engine import real_model

        ratio = real_model(args.real_tokens, args.runs, args.model, args.quant, args.compile)
        print(f"app/engine tokens/s ratio: {ratio:.3f}")


if __name__ == "__main__":
    main()
