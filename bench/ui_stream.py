"""How fast streamed text reaches the screen, and whether typing stays responsive.

    python bench/ui_stream.py              # fake source + real bundled model
    python bench/ui_stream.py --no-real    # fake source only

Part 1 streams a 1,000-token reply from a fake token source at 200 tokens/s into the
running app (headless, 120x40) and prints: tokens/s reaching the screen, the worst
keypress-to-screen latency while streaming (a key typed into the message box every
100 ms), and the per-token drawing cost of the first 100 vs the last 100 tokens.
Part 2 runs the real bundled model in the app and directly through the engine, and
prints the ratio of the app's tokens/s to the engine's.
Targets: all tokens shown, latency <= 50 ms, no growth, app/engine >= 0.95.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from textual import events  # noqa: E402

from chatapp.engine.fake import FakeTokenSource  # noqa: E402
from chatapp.tui.app import ChatApp  # noqa: E402
from chatapp.tui.chat import AssistantMessage  # noqa: E402


async def fake_stream(tokens: int, rate: float) -> None:
    pieces = [f"t{i} " for i in range(tokens)]
    source = FakeTokenSource(pieces, tokens_per_second=rate)
    app = ChatApp(lambda progress: source)
    flushes: list[tuple[float, int, float]] = []  # (time, tokens shown so far, seconds drawing)
    shown = 0
    original_flush = app._flush_stream

    async def timed_flush() -> None:
        nonlocal shown
        with app._pending_lock:
            count = len(app._pending)
        start = time.perf_counter()
        await original_flush()
        if count:
            shown += count
            flushes.append((time.perf_counter(), shown, time.perf_counter() - start))

    app._flush_stream = timed_flush  # type: ignore[method-assign]
    latencies: list[float] = []
    async with app.run_test(size=(120, 40)) as pilot:
        while app.source is None:
            await pilot.pause(0.01)
        from chatapp.params import SamplingParams

        panel_params = SamplingParams(max_new_tokens=tokens)
        app.query_one("#param-panel").apply(panel_params)
        await pilot.pause(0.05)
        box = app.query_one("#prompt")
        box.insert("go")
        start = time.perf_counter()
        await pilot.press("enter")
        box.focus()
        while app.replies_done == 0:
            await asyncio.sleep(0.1)
            if not app.generating:
                continue
            before = box.text
            t0 = time.perf_counter()
            # A key event as the terminal driver delivers it; time until the box shows it.
            app.post_message(events.Key("x", "x"))
            while box.text == before:
                await asyncio.sleep(0.001)
            latencies.append(time.perf_counter() - t0)
        end = time.perf_counter()
        reply = app.query_one(AssistantMessage)
        all_shown = reply.markdown.source == "".join(pieces)

    first_time = flushes[0][0] if flushes else start
    per_token = []
    for _, total, cost in flushes:
        per_token.append((total, cost))

    # Drawing cost per token of the flushes that covered the first / last 100 tokens.
    def cost_between(lo: int, hi: int) -> float:
        rows, prev = [], 0
        for total, cost in per_token:
            n = total - prev
            if lo <= prev < hi and n:
                rows.append(cost / n)
            prev = total
        return statistics.mean(rows) * 1000 if rows else float("nan")

    early, late = cost_between(0, 100), cost_between(tokens - 100, tokens)
    shown_rate = shown / (flushes[-1][0] - start) if flushes else 0.0
    print(
        f"fake source: {tokens} tokens at {rate:.0f} tok/s, {len(flushes)} flushes, "
        f"first text after {first_time - start:.3f} s, reply done in {end - start:.2f} s"
    )
    print(
        f"tokens reaching the screen  {shown_rate:7.1f} tok/s   all tokens shown: {all_shown} ({shown}/{tokens})"
    )
    print(
        f"keypress-to-screen latency  worst {max(latencies) * 1000:.1f} ms, median "
        f"{statistics.median(latencies) * 1000:.1f} ms over {len(latencies)} keys (target <= 50 ms)"
    )
    print(
        f"drawing cost per token      first 100: {early:.3f} ms, last 100: {late:.3f} ms "
        f"(growth x{late / early:.2f})"
    )


async def real_model(tokens: int, runs: int) -> None:
    from chatapp.engine import LocalEngine, Message
    from chatapp.engine.loading import silence_libraries
    from chatapp.params import SEED_VALUES, SamplingParams

    silence_libraries()
    engine = LocalEngine.load("bundled", quant="none", dtype="bfloat16")
    params = SamplingParams(**SEED_VALUES).replace(max_new_tokens=tokens, seed=0)
    prompt = "使用繁體中文回答，請問什麼是大型語言模型？"
    engine.stream_reply([Message("user", prompt)], params)  # warm-up
    app_rates, engine_rates = [], []
    app = ChatApp(lambda progress: engine, params)
    async with app.run_test(size=(120, 40)) as pilot:
        while app.source is None:
            await pilot.pause(0.01)
        for i in range(runs):
            await app.action_new_chat()
            direct = await asyncio.to_thread(engine.stream_reply, [Message("user", prompt)], params)
            engine_rates.append(direct.tokens_per_second)
            box = app.query_one("#prompt")
            box.insert(prompt)
            await pilot.press("enter")
            while app.replies_done <= i:
                await asyncio.sleep(0.02)
            stats = app.query(AssistantMessage).last().versions[-1].stats
            app_rates.append(stats.tokens_per_second)
    a, e = statistics.median(app_rates), statistics.median(engine_rates)
    print(f"real bundled model, {tokens} tokens, {runs} runs each (alternating)")
    print(
        f"engine direct   median {e:.2f} tok/s  (runs: {', '.join(f'{r:.1f}' for r in engine_rates)})"
    )
    print(
        f"in the app      median {a:.2f} tok/s  (runs: {', '.join(f'{r:.1f}' for r in app_rates)})"
    )
    print(f"ratio app/engine {a / e:.3f} (target >= 0.95)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--no-real", action="store_true")
    parser.add_argument("--real-tokens", type=int, default=48)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(fake_stream(args.tokens, args.rate))
    if not args.no_real:
        asyncio.run(real_model(args.real_tokens, args.runs))


if __name__ == "__main__":
    main()
