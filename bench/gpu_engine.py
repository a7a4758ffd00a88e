"""Every CUDA mode through the engine and the app, against raw bf16 ``generate``.

No weights can be fetched on the GPU machine, so a gemma-2b-shaped model (hidden 2048, 18
layers, intermediate 16384, 8 heads, 1 KV head, head_dim 256) with random weights is saved
once with the bundled tokenizer (``bench_common.random_model_folder``; on the GPU machine
``bench/gpu_carry.sh`` brings the tokenizer), and every mode loads it through the app's
own loading (``LocalEngine.load``, as ``chatapp --model FOLDER --quant MODE [--compile]``).

    python bench/gpu_engine.py [--tokens 256] [--prompt 790] [--runs 2] [--modes ...]
                               [--app-modes none+compile] [--out gpu_engine.jsonl]
    python bench/gpu_engine.py --tiny --modes none,none+compile   # check it on a CPU

Modes: none (bf16), none+compile (the fast path: one static cache + generate's own
torch.compile of the decode step), 8bit (the tutorial's bitsandbytes), 4bit (nf4), ao-int8
and ao-int8+compile (torchao int8 weight-only); bitsandbytes and torchao are carried.

Per mode, timings alternate raw and engine (after a warm-up of each):
  - load seconds (the compile and its warm-up included for +compile);
  - prefill tok/s: a --prompt-token prompt to its first token;
  - decode tok/s: the --tokens tokens after the first, a short prompt, the tutorial's sampling
    values, EOS off;
  - time to first token of the short prompt;
  - raw: plain ``model.generate`` with the same config (and, for +compile, the same static
    cache and compile config, so the compiled step is shared, not compiled twice);
  - engine/raw, and the engine's decode and prefill against raw bf16 (the none row);
  - peak GPU memory; the closeness to bf16 (``chatapp.engine.closeness``);
  - for --app-modes: the app's tokens/s against the engine alone, both on a terminal
    (``ui_stream.real_model``: two child processes on the same model and values),
    alternating.
Each row is also appended to --out as JSON, so a run cut short keeps what it measured,
and a later run into the same --out adds its modes to the same table (ratios and the
closeness stay against that file's none row and the bf16 --reference it saved).
Ends with ``best CUDA mode: NAME decode Rd x, prefill Rp x vs raw bf16`` (among the modes
that pass the closeness check) and the mode ``--quant auto`` picks here.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_common import (  # noqa: E402
    LONG_TEXT,
    TUTORIAL_PROMPT,
    disable_eos,
    random_model_folder,
    timed_generate,
    tutorial_params,
)


class Mode:
    """One loaded engine and its raw twin."""

    def __init__(self, engine, args, sync) -> None:
        from chatapp.engine import Message

        self.engine, self.sync, self.tokens = engine, sync, args.tokens
        engine.reuse_cache = False  # every request prefills from scratch, like raw generate
        engine.chat_format = "raw"
        disable_eos(engine)
        tokenizer = engine.tokenizer
        long_ids = tokenizer(LONG_TEXT * 60).input_ids[: args.prompt]
        self.short = [Message("user", TUTORIAL_PROMPT)]
        self.long = [Message("user", tokenizer.decode(long_ids[1:]))]
        self.params = tutorial_params(max_new_tokens=args.tokens, seed=0)
        self.deferral = engine.defer_stop_check
        self.short_ids = engine.prompt_ids(self.short)
        self.long_ids = engine.prompt_ids(self.long)

    def _config(self, new: int):
        config = self.engine.generation_config(self.params.replace(max_new_tokens=new))
        config.min_new_tokens = new
        config.eos_token_id = None
        if self.engine.compiled:
            config.compile_config = self.engine.compile_config
        return config

    def _raw(self, ids, new: int) -> float:
        extra = {}
        if self.engine.compiled:  # the engine's own static cache: one compiled step for both
            extra["past_key_values"] = self.engine.kv_cache.new(for_generate=True)
        got, seconds = timed_generate(
            self.engine.model, ids, self._config(new), sync=self.sync, **extra
        )
        assert got == new, (got, new)
        return seconds

    def raw(self) -> dict[str, float]:
        prefill = self._raw(self.long_ids, 1)
        first = self._raw(self.short_ids, 1)
        whole = self._raw(self.short_ids, self.tokens)
        return {
            "prefill": self.long_ids.shape[1] / prefill,
            "decode": (self.tokens - 1) / (whole - first),
            "first": first,
            "overall": self.tokens / whole,
        }

    def streamed(self) -> dict[str, float]:
        long = self.engine.stream_reply(self.long, self.params.replace(max_new_tokens=1))
        short = self.engine.stream_reply(self.short, self.params)
        self.sync()
        assert short.new_tokens == self.tokens, short.new_tokens
        return {
            "prefill": long.prompt_tokens / long.time_to_first_token,
            "decode": (short.new_tokens - 1) / (short.elapsed - short.time_to_first_token),
            "first": short.time_to_first_token,
            "overall": short.new_tokens / short.elapsed,
        }

    def streamed_without_deferral(self) -> dict[str, float]:
        """The fast path with generate's own per-step stop check (the A/B of the deferral)."""
        self.engine.defer_stop_check = False
        try:
            return self.streamed()
        finally:
            self.engine.defer_stop_check = self.deferral

    def profile(self, messages, new: int, top: int = 12) -> str:
        """cProfile of one reply: the functions with the most time of their own."""
        import cProfile
        import io
        import pstats

        # On this thread (the fast path's own would hide the work from the profiler; this
        # thread has its CUDA graphs already, from the raw runs).
        runner, self.engine._runner = self.engine._runner, None
        profiler = cProfile.Profile()
        try:
            profiler.enable()
            self.engine.stream_reply(messages, self.params.replace(max_new_tokens=new))
            self.sync()
            profiler.disable()
        finally:
            self.engine._runner = runner
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
        lines = [line for line in text.getvalue().splitlines() if line.strip()]
        return "\n".join(lines[-top - 1 :])

    def check_fast_path(self) -> str:
        """Streaming, stop, KV reuse and the lens on the fast path, the deferred check on."""
        import threading

        from chatapp.engine import Message
        from chatapp.engine.lens import LensRecorder
        from chatapp.params import SamplingParams

        engine, greedy = self.engine, SamplingParams(do_sample=False, max_new_tokens=48)
        engine.reuse_cache, engine.chat_format = True, "dialogue"
        try:
            engine.reset()
            deferred = engine.stream_reply(self.short, greedy)
            engine.defer_stop_check = False
            engine.reset()
            plain = engine.stream_reply(self.short, greedy)
            engine.defer_stop_check = self.deferral
            same = deferred.token_ids == plain.token_ids
            second = [*self.short, Message("assistant", plain.text), Message("user", "再說一次。")]
            reused = engine.stream_reply(second, greedy)
            engine.reset()
            fresh = engine.stream_reply(second, greedy)
            cancel = threading.Event()
            stopped = engine.stream_reply(
                self.short,
                greedy.replace(max_new_tokens=200),
                lambda p: cancel.set(),
                cancel=cancel,
            )
            recorder = LensRecorder()
            drawn = engine.stream_reply(
                self.short, self.params.replace(max_new_tokens=16), lens=recorder
            )
            lens_ok = [step.sampled_id for step in recorder.steps] == drawn.token_ids
        finally:
            engine.reuse_cache, engine.chat_format = False, "raw"
            engine.reset()
        return (
            f"fast path checks (deferred stop check {'on' if self.deferral else 'off'}): "
            f"greedy tokens the same with and without it: {same} · stop after the first "
            f"piece: {stopped.finish_reason}, {stopped.new_tokens} tokens · next turn reused "
            f"{reused.reused_tokens} of {reused.prompt_tokens} prompt tokens, same tokens as "
            f"from scratch: {reused.token_ids == fresh.token_ids} · lens steps match the "
            f"sampled tokens: {lens_ok}"
        )

    def warm_up(self) -> None:
        self._raw(self.short_ids, 16)
        self.engine.stream_reply(self.short, self.params.replace(max_new_tokens=16))
        self._raw(self.long_ids, 1)
        self.engine.stream_reply(self.long, self.params.replace(max_new_tokens=1))


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--prompt", type=int, default=790)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--folder", default="/tmp/gemma-2b-random")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--modes", default="none,none+compile,ao-int8+compile,4bit,ao-int8,8bit")
    parser.add_argument("--app-modes", default="none+compile,ao-int8+compile")
    parser.add_argument("--app-runs", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="cProfile one prefill/reply")
    parser.add_argument("--out", default="gpu_engine.jsonl")
    parser.add_argument(
        "--reference",
        default="/tmp/gpu_engine-reference.pt",
        help="the bf16 next-token table (~170 MB) kept for later runs' closeness",
    )
    args = parser.parse_args()

    import torch

    from chatapp.engine import LocalEngine
    from chatapp.engine.closeness import closeness_ids, compare, next_token_logprobs
    from chatapp.engine.framework_internals import silence_libraries
    from chatapp.engine.quantization import auto_quant

    silence_libraries()
    warnings.filterwarnings("ignore")  # deprecations from inside generate, per call
    cuda = torch.cuda.is_available()
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    started = time.perf_counter()
    folder = random_model_folder(args.folder + ("-tiny" if args.tiny else ""), tiny=args.tiny)
    device = torch.cuda.get_device_name() if cuda else "CPU"
    print(
        f"{device} · torch {torch.__version__} · {folder} (made in "
        f"{time.perf_counter() - started:.0f} s) · prompt {args.prompt} tokens · "
        f"{args.tokens} new tokens, the tutorial's sampling · {args.runs} runs each, alternating",
        flush=True,
    )
    # Rows and the bf16 reference from an earlier run into the same --out (the modes can
    # be measured in several runs: the ratios and the closeness stay against its none row).
    rows: dict[str, dict] = {}
    out, ref_path = Path(args.out), Path(args.reference)
    if out.exists():
        for line in out.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if row.get("device") == device:
                rows[row["mode"]] = row
    reference = torch.load(ref_path) if ref_path.exists() else None
    for name in args.modes.split(","):
        quant, _, fast = name.partition("+")
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        began = time.perf_counter()
        try:
            engine = LocalEngine.load(str(folder), quant=quant, compile=bool(fast))
        except Exception as exc:  # noqa: BLE001 - a mode this machine cannot run
            print(f"{name:16} skipped: {type(exc).__name__}: {exc}", flush=True)
            continue
        load = time.perf_counter() - began
        mode = Mode(engine, args, sync)
        try:
            mode.warm_up()
            raws, streams, undeferred = [], [], []
            for i in range(args.runs):
                pair = [(raws, mode.raw), (streams, mode.streamed)]
                if mode.deferral:
                    pair.append((undeferred, mode.streamed_without_deferral))
                for into, fn in pair[i % 2 :] + pair[: i % 2]:
                    into.append(fn())
        except Exception as exc:  # noqa: BLE001 - one mode failing must not stop the rest
            print(f"{name:16} failed: {type(exc).__name__}: {exc}", flush=True)
            del engine, mode
            continue
        raw, eng = median_of(raws), median_of(streams)
        if undeferred:
            plain = median_of(undeferred)
            print(
                f"{name:16} deferred stop check: engine decode {eng['decode']:6.1f} tok/s "
                f"with it, {plain['decode']:6.1f} without (generate's own check, per step)",
                flush=True,
            )
        if args.profile:
            print(
                f"{name}: cProfile of the {args.prompt}-token prompt's first token\n"
                + mode.profile(mode.long, 1),
                flush=True,
            )
            if fast:
                print(
                    f"{name}: cProfile of a {args.tokens}-token reply\n"
                    + mode.profile(mode.short, args.tokens),
                    flush=True,
                )
        if fast:
            print(mode.check_fast_path(), flush=True)
        logprobs = next_token_logprobs(engine.model, closeness_ids(engine.tokenizer))
        if reference is None and quant == "none":
            reference = logprobs
            torch.save(reference, ref_path)
        close = compare(reference, logprobs) if reference is not None else None
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
        row = {
            "mode": name,
            "device": device,
            "load_s": load,
            "raw": raw,
            "engine": eng,
            "peak_gib": peak,
            "engine_without_deferral": median_of(undeferred) if undeferred else None,
            "kl_bits": close.kl_bits if close else None,
            "top1": close.top1 if close else None,
            "ok": bool(close and close.close(four_bit=quant == "4bit")),
        }
        base = rows.get("none", row if quant == "none" else None)
        ratios = ""
        if base:
            row["rd"] = eng["decode"] / base["raw"]["decode"]
            row["rp"] = eng["prefill"] / base["raw"]["prefill"]
            ratios = f" · vs raw bf16: decode {row['rd']:.2f}x, prefill {row['rp']:.2f}x"
        print(
            f"{name:16} load {load:6.1f} s · engine: prefill {eng['prefill']:7.0f} tok/s, "
            f"decode {eng['decode']:6.1f} tok/s, first token {eng['first'] * 1000:5.0f} ms, "
            f"overall {eng['overall']:6.1f} tok/s · raw: prefill {raw['prefill']:7.0f}, "
            f"decode {raw['decode']:6.1f} · engine/raw decode {eng['decode'] / raw['decode']:.3f}"
            f"{ratios} · peak {peak:5.1f} GiB · {close or 'no bf16 reference'}"
            + ("" if row["ok"] else " · NOT close"),
            flush=True,
        )
        if name in args.app_modes.split(","):
            from ui_app_vs_engine import real_model

            row["app_engine"] = real_model(
                args.tokens, args.app_runs, str(folder), quant, compile=bool(fast)
            )
        rows[name] = row
        with open(args.out, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
        del engine, mode
    base = rows.get("none")
    close_rows = [n for n in rows if rows[n]["ok"]]
    if base and close_rows:
        best = max(close_rows, key=lambda n: rows[n]["engine"]["decode"])
        print(
            f"best CUDA mode: {best} decode {rows[best]['rd']:.2f}x, "
            f"prefill {rows[best]['rp']:.2f}x vs raw bf16 "
            f"({rows[best]['engine']['decode']:.1f} tok/s)"
        )
        quantized = [n for n in close_rows if not n.startswith("none")]
        if quantized:
            fastest = max(quantized, key=lambda n: rows[n]["engine"]["decode"])
            print(
                f"fastest close quantized mode: {fastest} "
                f"({rows[fastest]['engine']['decode']:.1f} tok/s decode)"
            )
    mode_name, reason = auto_quant()
    print(f"--quant auto here: {mode_name} ({reason})")


if __name__ == "__main__":
    main()
