"""Engine throughput against raw ``model.generate``, and cold/warm start to first token.

    python bench/throughput.py                 # bundled model, bf16, CPU
    python bench/throughput.py --runs 7 --max-new-tokens 128
    python bench/throughput.py --skip-start    # throughput only

Prints the median tokens/s of raw generate and of the engine's streaming path (run
alternately on the same model, prompt, seed and parameters), their ratio, and the time
to first token of a cold start (a fresh cache: conversion included) and a warm start
(cached), each measured in a new process from before the first import.
Targets on a 2-core CPU with the bundled model in bf16: ratio >= 0.97, warm start <= 5 s.
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()  # before the heavy imports: start-up is measured from here

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPT = "使用繁體中文回答，請問什麼是大型語言模型？"


def _params(max_new_tokens: int, seed: int):
    from chatapp.params import SEED_VALUES, SamplingParams

    return SamplingParams(**SEED_VALUES).replace(max_new_tokens=max_new_tokens, seed=seed)


def child_start(model: str, quant: str, dtype: str) -> None:
    """Run in a fresh process: load, stream one short reply, print start-up timings as JSON."""
    from chatapp.engine import LocalEngine, Message
    from chatapp.engine.loading import silence_libraries

    silence_libraries()
    loaded_at: list[float] = []
    engine = LocalEngine.load(model, quant=quant, dtype=dtype)
    loaded_at.append(time.perf_counter())
    first: list[float] = []

    def on_text(piece: str) -> None:
        if not first:
            first.append(time.perf_counter())

    engine.stream_reply([Message("user", PROMPT)], _params(4, 0), on_text)
    print(
        json.dumps(
            {
                "load_s": loaded_at[0] - _T0,
                "first_token_s": (first[0] if first else time.perf_counter()) - _T0,
            }
        )
    )


def measure_start(model: str, quant: str, dtype: str, cache_dir: str) -> dict:
    env = {**os.environ, "CHATAPP_CACHE_DIR": cache_dir, "HF_HUB_OFFLINE": "1"}
    cmd = [
        sys.executable,
        __file__,
        "--child-start",
        "--model",
        model,
        "--quant",
        quant,
        "--dtype",
        dtype,
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_throughput(args: argparse.Namespace) -> None:
    import torch

    from chatapp.engine import LocalEngine, Message
    from chatapp.engine.loading import silence_libraries

    silence_libraries()
    torch.set_num_threads(torch.get_num_threads())
    engine = LocalEngine.load(args.model, quant=args.quant, dtype=args.dtype)
    params = _params(args.max_new_tokens, args.seed)
    messages = [Message("user", PROMPT)]
    input_ids = engine.prompt_ids(messages)
    config = engine.generation_config(params)

    def raw() -> tuple[int, float]:
        torch.manual_seed(args.seed)
        start = time.perf_counter()
        with torch.inference_mode():
            out = engine.model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                generation_config=config,
            )
        elapsed = time.perf_counter() - start
        return out.shape[1] - input_ids.shape[1], elapsed

    streaming_share: list[float] = []

    def streamed() -> tuple[int, float]:
        stats = engine.stream_reply(messages, params, lambda piece: None)
        streaming_share.append(stats.streaming_seconds / stats.elapsed)
        return stats.new_tokens, stats.elapsed

    stage_share: dict[str, list[float]] = {"on": [], "idle": []}

    def lensed() -> tuple[int, float]:
        from chatapp.engine.lens import LensRecorder

        recorder = LensRecorder()
        stats = engine.stream_reply(messages, params, lambda piece: None, lens=recorder)
        stage_share["on"].append(recorder.seconds / stats.elapsed)
        return stats.new_tokens, stats.elapsed

    def idle_lens() -> tuple[int, float]:
        # The app's path with the lens and heat map off: the stages run through the
        # pipeline (so F3 can switch recording on mid-reply) but nothing is recorded.
        from chatapp.engine.lens import LensRecorder

        recorder = LensRecorder(active=False)
        stats = engine.stream_reply(messages, params, lambda piece: None, lens=recorder)
        stage_share["idle"].append(recorder.seconds / stats.elapsed)
        return stats.new_tokens, stats.elapsed

    raw(), streamed(), lensed(), idle_lens()  # warm-up
    order = [raw, streamed, lensed, idle_lens]
    rates: dict = {fn: [] for fn in order}
    for i in range(args.runs):
        for fn in order[i % 4 :] + order[: i % 4]:  # rotate the order each round
            tokens, elapsed = fn()
            rates[fn].append(tokens / elapsed)
    raw_rates, engine_rates, lens_rates = rates[raw], rates[streamed], rates[lensed]
    idle_rates = rates[idle_lens]
    raw_med = statistics.median(raw_rates)
    eng_med = statistics.median(engine_rates)
    loaded = engine.loaded
    print(
        f"model: {loaded.name} ({loaded.quant}, {loaded.dtype}, {loaded.device}), "
        f"{args.max_new_tokens} new tokens, seed {args.seed}, {args.runs} runs each, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(
        f"raw model.generate      median {raw_med:7.2f} tok/s  (runs: {', '.join(f'{r:.1f}' for r in raw_rates)})"
    )
    print(
        f"engine stream_reply     median {eng_med:7.2f} tok/s  (runs: {', '.join(f'{r:.1f}' for r in engine_rates)})"
    )
    print(
        f"ratio engine/raw        {eng_med / raw_med:.3f}   (target >= 0.97; best-of ratio "
        f"{max(engine_rates) / max(raw_rates):.3f})"
    )
    print(
        f"engine's own streaming work (decoding + callbacks): "
        f"{100 * statistics.median(streaming_share):.2f}% of reply time (median)"
    )
    lens_med = statistics.median(lens_rates)
    print(
        f"engine + lens recording median {lens_med:7.2f} tok/s  (runs: {', '.join(f'{r:.1f}' for r in lens_rates)})"
    )
    print(
        f"lens cost               {100 * (eng_med / lens_med - 1):+.1f}% generation time with the lens or heat map on "
        "(target <= 10%)"
    )
    on_share = statistics.median(stage_share["on"])
    idle_share = statistics.median(stage_share["idle"])
    print(
        f"lens stages, timed inside the recorder: {100 * on_share:.2f}% of reply time recording, "
        f"{100 * idle_share:.2f}% idle (applying the stages, as generate would): recording adds "
        f"{100 * (on_share - idle_share):.2f}%"
    )
    idle_med = statistics.median(idle_rates)
    print(
        f"lens off (app path)     median {idle_med:7.2f} tok/s, {100 * (eng_med / idle_med - 1):+.1f}% "
        "(stages applied, nothing recorded; the CLI path has no lens code at all)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--quant", default="none")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-start", action="store_true", help="skip the cold/warm start runs")
    parser.add_argument("--child-start", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_start:
        child_start(args.model, args.quant, args.dtype)
        return
    if not args.skip_start and args.model == "bundled":
        with tempfile.TemporaryDirectory(prefix="chatapp-bench-") as cache:
            cold = measure_start(args.model, args.quant, args.dtype, cache)
            warm = [measure_start(args.model, args.quant, args.dtype, cache) for _ in range(3)]
        warm_ttft = statistics.median(w["first_token_s"] for w in warm)
        print(
            f"cold start (fresh cache, conversion included): first token after {cold['first_token_s']:.1f} s"
        )
        print(
            f"warm start (cached, median of 3):              first token after {warm_ttft:.2f} s "
            f"(load {statistics.median(w['load_s'] for w in warm):.2f} s; target <= 5 s; "
            "process start to first token, imports included)"
        )
    measure_throughput(args)


if __name__ == "__main__":
    main()
