"""A 20-turn conversation on the bundled model: first-token time per turn with KV-cache
reuse and without it, a regenerate at the last turn, prefill and decode rates for each CPU
dtype, and peak memory.

    python bench/multiturn.py                     # 20 turns, the chat format in force
    python bench/multiturn.py --turns 8 --dtype float32 --chat-format turns

User turns are ~100 tokens, replies 24 greedy tokens (EOS disabled, so every reply has
the same length on both sides). The two engines share the weights and take turns going
first; each turn's reply must be the same token for token, or the bench says so.
Ends with: ``turn-20/turn-1 first-token ratio with reuse: R, without reuse: S``.
Targets (2-core CPU): with reuse, turn 20 and a regenerate at turn 20 within 1.5x turn 1's
first-token time; decode tokens/s no worse than the single-turn figure.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_common import disable_eos  # noqa: E402

TOPICS = [
    "the sea",
    "mountains",
    "old trains",
    "bread",
    "the moon",
    "bees",
    "rain",
    "libraries",
    "bicycles",
    "tea",
]


def user_turn(i: int) -> str:
    """About 100 tokens of plain English, different every turn."""
    topic = TOPICS[i % len(TOPICS)]
    sentences = [
        f"This is message number {i + 1}, and I would like to talk about {topic}.",
        f"I have been reading a lot about {topic} lately and I find it fascinating.",
        "There are so many small details that most people never notice at all.",
        "My friends think I spend too much time on these questions, but I disagree.",
        f"Could you tell me one surprising fact about {topic}, in a single short sentence?",
        "Please keep the answer brief, because I want to ask you more questions afterwards.",
    ]
    return " ".join(sentences)


def decode_rate(stats) -> float:
    steps = stats.new_tokens - 1
    span = stats.elapsed - stats.time_to_first_token
    return steps / span if steps > 0 and span > 0 else float("nan")


def conversation(args: argparse.Namespace) -> str:
    """Runs the conversation and prints a row per turn; returns the closing ratio line."""
    from chatapp.engine import LocalEngine, Message
    from chatapp.params import SamplingParams

    reuse = LocalEngine.load(
        "bundled", quant="none", dtype=args.dtype, chat_format=args.chat_format or None
    )
    fresh = LocalEngine(reuse.loaded, chat_format=reuse.chat_format)
    fresh.reuse_cache = False
    for engine in (reuse, fresh):  # EOS off: replies run to --reply-tokens or a stop string
        disable_eos(engine)
    params = SamplingParams(do_sample=False, repetition_penalty=1.0).replace(
        max_new_tokens=args.reply_tokens
    )
    # Warm both paths once (first-call overheads are not the conversation's).
    reuse.stream_reply([Message("user", "Hello")], params.replace(max_new_tokens=2))
    fresh.stream_reply([Message("user", "Hello")], params.replace(max_new_tokens=2))
    reuse.reset()

    print(
        f"model: {reuse.loaded.name} ({reuse.loaded.dtype}, {reuse.loaded.device}), "
        f"{reuse.chat_format} format, {args.turns} turns, ~100-token user turns, "
        f"{args.reply_tokens}-token greedy replies, prefill chunk {reuse.prefill_chunk}"
    )
    print(f"{'turn':>4} {'prompt':>7} {'reused':>7}  {'reuse ttft':>10}  {'fresh ttft':>10}  same")
    messages = [Message("system", "Be brief.")]
    with_reuse, without, decode, mismatches = [], [], [], 0
    for i in range(args.turns):
        messages.append(Message("user", user_turn(i)))
        runs = {}
        order = [("reuse", reuse), ("fresh", fresh)]
        for name, engine in order if i % 2 == 0 else order[::-1]:
            runs[name] = engine.stream_reply(messages, params)
        a, b = runs["reuse"], runs["fresh"]
        same = a.token_ids == b.token_ids
        mismatches += not same
        with_reuse.append(a.time_to_first_token)
        without.append(b.time_to_first_token)
        decode.append(decode_rate(a))
        print(
            f"{i + 1:>4} {a.prompt_tokens:>7} {a.reused_tokens:>7}  "
            f"{a.time_to_first_token:>9.2f}s  {b.time_to_first_token:>9.2f}s  "
            f"{'yes' if same else 'NO'}"
        )
        reply_ids = tuple(a.reply_ids) if a.reply_ids is not None else None
        messages.append(Message("assistant", a.text, reply_ids))
    messages.pop()  # regenerate the last reply: the same prompt again
    regen = reuse.stream_reply(messages, params)
    print(
        f"regenerate at turn {args.turns}: first token after {regen.time_to_first_token:.2f} s "
        f"({regen.reused_tokens} of {regen.prompt_tokens} prompt tokens reused), "
        f"{regen.time_to_first_token / with_reuse[0]:.2f}x turn 1"
    )
    print(
        f"decode with reuse: median {statistics.median(decode):.1f} tok/s over the turns "
        f"(turn 1 {decode[0]:.1f}, turn {args.turns} {decode[-1]:.1f})"
    )
    print(
        f"replies identical with and without reuse: {args.turns - mismatches}/{args.turns} turns"
        + ("" if not mismatches else " (bf16 rounds logits coarsely; see README)")
    )
    print(
        f"KV cache kept between turns: {reuse.cache_bytes() / 1e6:.1f} MB (live cache + "
        "prompt snapshot)"
    )
    return (
        f"turn-{args.turns}/turn-1 first-token ratio with reuse: "
        f"{with_reuse[-1] / with_reuse[0]:.2f}, without reuse: {without[-1] / without[0]:.2f}"
    )


def dtypes(args: argparse.Namespace) -> None:
    """Prefill (a ~790-token prompt) and decode rates per CPU dtype, alternating."""
    from chatapp.engine import LocalEngine, Message
    from chatapp.engine.quantization import cpu_has_native_bf16
    from chatapp.params import SamplingParams

    engines = {
        dtype: LocalEngine.load("bundled", quant="none", dtype=dtype, chat_format="turns")
        for dtype in ("bfloat16", "float32")
    }
    text = " ".join(user_turn(i) for i in range(7))
    messages = [Message("user", text)]
    params = SamplingParams(do_sample=False, repetition_penalty=1.0, max_new_tokens=32)
    rows: dict[str, list[tuple[float, float]]] = {d: [] for d in engines}
    for engine in engines.values():
        engine.reuse_cache = False
        engine.stream_reply(messages, params.replace(max_new_tokens=2))  # warm-up
    for i in range(args.dtype_runs):
        for dtype in list(engines)[i % 2 :] + list(engines)[: i % 2]:
            stats = engines[dtype].stream_reply(messages, params)
            rows[dtype].append(
                (stats.prompt_tokens / stats.time_to_first_token, decode_rate(stats))
            )
    prompt = len(engines["float32"].encode(messages))
    print(
        f"CPU dtypes ({prompt}-token prompt, 32 new tokens, {args.dtype_runs} alternating runs; "
        f"native bf16 on this CPU: {cpu_has_native_bf16()}):"
    )
    for dtype, values in rows.items():
        prefill = statistics.median(v[0] for v in values)
        dec = statistics.median(v[1] for v in values)
        print(
            f"  {dtype:<9} prefill {prefill:7.1f} tok/s ({prompt / prefill:.2f} s to first token)"
            f", decode {dec:5.1f} tok/s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--reply-tokens", type=int, default=24)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--chat-format", default="", choices=("", "turns", "dialogue", "raw"))
    parser.add_argument("--dtype-runs", type=int, default=3)
    parser.add_argument("--skip-dtypes", action="store_true")
    args = parser.parse_args()
    from chatapp.engine.framework_internals import silence_libraries

    silence_libraries()
    ratio_line = conversation(args)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of the conversation (resident, whole process): {peak:.0f} MB")
    if not args.skip_dtypes:
        dtypes(args)
    print(ratio_line)


if __name__ == "__main__":
    main()
