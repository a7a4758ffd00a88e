"""Engine throughput against raw ``model.generate``, and cold/warm start to first token.

    python bench/throughput.py                 # bundled model, bf16, CPU
    python bench/throughput.py --runs 7 --max-new-tokens 128
    python bench/throughput.py --skip-start    # throughput only

Prints the median tokens/s of raw generate and of the engine's streaming path (run
alternately on the same model, prompt, seed and parameters, with EOS disabled on both
sides so each run makes exactly --max-new-tokens tokens; the counts are checked), their
ratio, and the start-up of the real command ``chatapp --prompt ... --max-new-tokens 4``
timed from outside as a whole process (interpreter start to exit, and to its first byte
on stdout): with a fresh model cache (conversion included), with the model files evicted
from the page cache (cold), and warm.  PYTHONDONTWRITEBYTECODE is removed for these runs,
so bytecode is cached as on a user's machine.
Targets on a 2-core CPU with the bundled model in bf16: ratio >= 0.97, warm start <= 5 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_common import TUTORIAL_PROMPT, disable_eos, timed_generate, tutorial_params  # noqa: E402


def _params(max_new_tokens: int, seed: int):
    return tutorial_params(max_new_tokens=max_new_tokens, seed=seed)


def evict_from_page_cache(folder: Path) -> int:
    """Drop the files under ``folder`` from the OS page cache; returns the bytes asked."""
    total = 0
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            total += path.stat().st_size
    return total


def time_command(model: str, quant: str, dtype: str, cache_dir: str) -> dict:
    """Run ``chatapp --prompt`` as a user would; wall time to first stdout byte and to exit."""
    env = {**os.environ, "CHATAPP_CACHE_DIR": cache_dir, "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    cmd = [sys.executable, "-m", "chatapp", "--model", model, "--quant", quant]
    cmd += ["--dtype", dtype, "--prompt", TUTORIAL_PROMPT, "--max-new-tokens", "4", "--seed", "0"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    first = proc.stdout.read(1)
    first_at = time.perf_counter()
    proc.stdout.read()
    code = proc.wait()
    end = time.perf_counter()
    if code != 0 or not first:
        raise SystemExit(f"chatapp exited {code} without a reply")
    return {"first_output_s": first_at - start, "exit_s": end - start}


def measure_start(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="chatapp-bench-") as cache:
        fresh = time_command(args.model, args.quant, args.dtype, cache)
        cold, warm = [], []
        import torch
        import transformers

        folders = [Path(cache), Path(torch.__file__).parent, Path(transformers.__file__).parent]
        for _ in range(3):  # alternate cold and warm runs
            evicted = sum(evict_from_page_cache(folder) for folder in folders)
            cold.append(time_command(args.model, args.quant, args.dtype, cache))
            warm.append(time_command(args.model, args.quant, args.dtype, cache))

    def line(label: str, runs: list[dict]) -> str:
        first = statistics.median(r["first_output_s"] for r in runs)
        end = statistics.median(r["exit_s"] for r in runs)
        return f"{label} first reply text after {first:5.2f} s, process exit after {end:5.2f} s"

    print("`chatapp --prompt ... --max-new-tokens 4`, timed from outside, whole process:")
    print(line("  fresh model cache (conversion included):     ", [fresh]))
    print(
        line(
            f"  cold (model, torch, transformers: {evicted / 1e9:.1f} GB evicted), median of 3:",
            cold,
        )
    )
    print(line("  warm, median of 3:                           ", warm) + " (target <= 5 s)")


def measure_throughput(args: argparse.Namespace) -> None:
    import torch

    from chatapp.engine import LocalEngine, Message
    from chatapp.engine.framework_internals import silence_libraries

    silence_libraries()
    torch.set_num_threads(torch.get_num_threads())
    # The turn format: the dialogue format's stop strings would end replies early.
    engine = LocalEngine.load(args.model, quant=args.quant, dtype=args.dtype, chat_format="turns")
    engine.reuse_cache = False  # the same prefill as raw generate on every run (fair ratio)
    params = _params(args.max_new_tokens, args.seed)
    messages = [Message("user", TUTORIAL_PROMPT)]
    input_ids = engine.prompt_ids(messages)
    # EOS off on both sides: every run makes exactly max_new_tokens tokens (checked below).
    disable_eos(engine)
    config = engine.generation_config(params)

    def raw() -> tuple[int, float]:
        return timed_generate(engine.model, input_ids, config, seed=args.seed)

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
            assert tokens == args.max_new_tokens, (fn.__name__, tokens)
            rates[fn].append(tokens / elapsed)
    raw_rates, engine_rates, lens_rates = rates[raw], rates[streamed], rates[lensed]
    idle_rates = rates[idle_lens]
    raw_med = statistics.median(raw_rates)
    eng_med = statistics.median(engine_rates)
    loaded = engine.loaded
    print(
        f"model: {loaded.name} ({loaded.quant}, {loaded.dtype}, {loaded.device}), "
        f"{args.max_new_tokens} new tokens on every run (EOS off), seed {args.seed}, "
        f"{args.runs} runs each, "
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
    args = parser.parse_args()
    if not args.skip_start and args.model == "bundled":
        measure_start(args)
    measure_throughput(args)


if __name__ == "__main__":
    main()
