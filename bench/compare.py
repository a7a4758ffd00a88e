"""Compare columns and sweeps in one batch against single replies, alternating, in one run.

    python bench/compare.py [--tokens 128] [--runs 3] [--quant auto] [--sweep-tokens 32]

Every reply runs to its token count (no EOS). Each run times, in turn: a single reply,
2 columns, a single reply, 4 columns (the KV cache is not reused between requests, so
each side evaluates the whole prompt). Then it counts flips: columns whose tokens differ
from the single reply with their parameters and seed (in the engine's own dtype and, with
--bf16, in bf16 without quantization). Then a sweep of 4 values x 8 samples against the
32 single replies it stands for. Ends with:

    compare/single time ratio: 2 columns R2, 4 columns R4
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_common import TUTORIAL_PROMPT, disable_eos, tutorial_params  # noqa: E402


def columns_for(params, count):
    variants = [
        {},
        {"temperature": 1.2},
        {"top_p": 0.5},
        {"top_k": 10, "repetition_penalty": 1.2},
    ]
    return [params.replace(**v) for v in variants[:count]]


def timed(call):
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def flips(engine, messages, columns):
    """Columns whose tokens differ from their single reply, and the first differing step."""
    rows = engine.stream_columns(messages, columns, wait=True)
    found = []
    for index, (row, params) in enumerate(zip(rows, columns, strict=True)):
        alone = engine.stream_reply(messages, params.replace(seed=row.seed), wait=True)
        if row.token_ids != alone.token_ids:
            step = next(
                (
                    i
                    for i, (a, b) in enumerate(zip(row.token_ids, alone.token_ids, strict=False))
                    if a != b
                ),
                min(len(row.token_ids), len(alone.token_ids)),
            )
            found.append((index + 1, step))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quant", default="auto")
    parser.add_argument("--sweep-tokens", type=int, default=32)
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()

    from chatapp.engine import LocalEngine
    from chatapp.engine.bundled import ensure_bundled_model
    from chatapp.engine.framework_internals import silence_libraries
    from chatapp.engine.types import Message

    silence_libraries()
    ensure_bundled_model()
    engine = LocalEngine.load("bundled", quant=args.quant)
    print(f"engine: {engine.describe()}")
    disable_eos(engine)
    engine.chat_format = "raw"  # no "User:" stop string either: every reply runs its length
    engine.reuse_cache = False
    messages = [Message("user", TUTORIAL_PROMPT)]
    params = tutorial_params(max_new_tokens=args.tokens, seed=1234)
    engine.stream_reply(messages, params.replace(max_new_tokens=8), wait=True)  # warm-up
    engine.stream_columns(messages, columns_for(params, 4), wait=True)

    times: dict[str, list[float]] = {"single": [], "2 columns": [], "4 columns": []}
    for run in range(args.runs):
        for name, call in (
            ("single", lambda: [engine.stream_reply(messages, params, wait=True)]),
            (
                "2 columns",
                lambda: engine.stream_columns(messages, columns_for(params, 2), wait=True),
            ),
            ("single", lambda: [engine.stream_reply(messages, params, wait=True)]),
            (
                "4 columns",
                lambda: engine.stream_columns(messages, columns_for(params, 4), wait=True),
            ),
        ):
            seconds, rows = timed(call)
            assert all(r.new_tokens == args.tokens for r in rows), [r.new_tokens for r in rows]
            times[name].append(seconds)
            print(f"run {run + 1} {name:>9}: {seconds:6.2f} s ({args.tokens} tokens per row)")
    single = statistics.median(times["single"])
    r2 = statistics.median(times["2 columns"]) / single
    r4 = statistics.median(times["4 columns"]) / single
    print(
        f"median: single {single:.2f} s · 2 columns {statistics.median(times['2 columns']):.2f} s"
        f" · 4 columns {statistics.median(times['4 columns']):.2f} s"
    )

    found = flips(engine, messages, columns_for(params, 4))
    print(f"flips, {engine.describe().split(' · ')[0]}: {len(found)} of 4 columns {found}")
    if args.bf16:
        bf16 = LocalEngine.load("bundled", quant="none", dtype="bfloat16")
        disable_eos(bf16)
        bf16.chat_format = "raw"
        bf16.reuse_cache = False
        short = params.replace(max_new_tokens=min(args.tokens, 64))
        found = flips(bf16, messages, columns_for(short, 4))
        print(f"flips, bf16 ({short.max_new_tokens} tokens): {len(found)} of 4 columns {found}")
        del bf16

    values = [0.2, 0.6, 1.0, 1.4]
    sweep_params = params.replace(max_new_tokens=args.sweep_tokens)
    rows = [sweep_params.replace(temperature=v) for v in values for _ in range(8)]
    seeds = [i for _ in values for i in range(8)]
    batched, _ = timed(lambda: [engine.stream_columns(messages, rows[i : i + 16], seeds=seeds[i : i + 16], logprobs=True, wait=True) for i in (0, 16)])  # fmt: skip
    singles, _ = timed(
        lambda: [
            engine.stream_reply(messages, row.replace(seed=seed), wait=True)
            for row, seed in zip(rows, seeds, strict=True)
        ]
    )
    print(
        f"sweep 4 values x 8 samples, {args.sweep_tokens} tokens: batched {batched:.2f} s, "
        f"32 single replies {singles:.2f} s, ratio {batched / singles:.3f}"
    )
    print(f"compare/single time ratio: 2 columns {r2:.3f}, 4 columns {r4:.3f}")


if __name__ == "__main__":
    main()
