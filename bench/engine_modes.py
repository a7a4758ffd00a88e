"""Every way to run the bundled model on this CPU, against raw bf16 ``generate``.

    python bench/engine_modes.py [--tokens 48] [--prompt 790] [--rounds 3]
    python bench/engine_modes.py --emulate-avx2   # as on a CPU without AVX-512 (see below)

Rows:
- raw bf16, raw fp32: plain ``model.generate`` (EOS off), the baseline and its float32 copy;
- engine MODE: chatapp's own streaming path (``LocalEngine.stream_reply``, EOS off, no KV
  reuse) for every ``--quant`` mode that runs on the CPU: none (in this machine's auto
  dtype), MODE+auto (MODE as ``--quant auto`` runs it on the CPU: bf16's one-token decode
  steps outside oneDNN, sampling among the stages' survivors), int8-dynamic (what auto
  picks here for the app), bitsandbytes 8bit and 4bit.

Like for like: every row does the same work per token. Greedy by default; with
``--tutorial-sampling`` (``--seed-sampling`` is its old name) every row, raw ones included,
samples with the tutorial's values from the same RNG seed, so the sampling stages (top-k,
top-p, temperature, repetition penalty over the 262k vocabulary) cost both sides.

Per row: load seconds, prefill tok/s (a --prompt-token prompt to its first token),
decode tok/s (--tokens tokens after the first, short prompt), time to first token of a
short prompt, the RSS the model added, and the closeness to bf16 of
``chatapp.engine.closeness`` (KL bits and top-1 agreement as generation runs). Timings are
medians over --rounds rounds, and every round measures all rows one after another, so a
machine that slows down slows all of them. Ratios are against raw bf16 in the same run.
Ends with ``best CPU mode: NAME decode Rd x, prefill Rp x vs raw bf16``: the fastest decode
among the engine's modes that pass the closeness check.

--emulate-avx2 re-runs itself with ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2 and
FBGEMM_ENABLE_INSTRUCTIONS=AVX2: torch, oneDNN and fbgemm then use only AVX2 kernels (bf16
matmuls emulated, fbgemm's 7-bit activations), an approximation of the 2-core AVX2 laptop
of the speed issue on an AVX-512 machine (same memory and cores, so not its figures).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_common import (  # noqa: E402
    LONG_TEXT,
    TUTORIAL_PROMPT,
    disable_eos,
    greedy_seconds,
    rss_bytes,
    timed_generate,
    tutorial_params,
)

SAMPLING_SEED = 7  # every sampled row draws from this RNG seed

AVX2_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2",
}


def rss_mb() -> float:
    return rss_bytes() / 2**20


class Raw:
    """Plain generate on a model: greedy, or sampling with ``params``'s values."""

    def __init__(self, model, long_ids, short_ids, tokens, params=None):
        self.model, self.long_ids, self.short_ids, self.tokens = model, long_ids, short_ids, tokens
        self.params = params

    def seconds(self, ids, new: int) -> float:
        """Seconds to add exactly ``new`` tokens to ``ids``."""
        if self.params is None:
            return greedy_seconds(self.model, ids, new)
        config = self.params.replace(max_new_tokens=new).to_generation_config(pad_token_id=0)
        made, seconds = timed_generate(self.model, ids, config, seed=SAMPLING_SEED)
        assert made == new, made
        return seconds

    def measure(self) -> dict[str, float]:
        prefill = self.seconds(self.long_ids, 1)
        first = self.seconds(self.short_ids, 1)
        whole = self.seconds(self.short_ids, self.tokens + 1)
        return {
            "prefill": self.long_ids.shape[1] / prefill,
            "decode": self.tokens / (whole - first),
            "first": first,
        }


class Engine:
    """The app's streaming path."""

    def __init__(self, engine, long_text, tokens, params=None):
        from chatapp.engine import Message
        from chatapp.params import SamplingParams

        self.engine = engine
        engine.reuse_cache = False
        engine.chat_format = "raw"  # no stop strings either: every reply is --tokens long
        disable_eos(engine)
        self.long = [Message("user", long_text)]
        self.short = [Message("user", TUTORIAL_PROMPT)]
        # The same values as the raw rows: greedy, or the tutorial's sampling values.
        if params is not None:
            base = params.replace(seed=SAMPLING_SEED)
        else:
            base = SamplingParams(do_sample=False, repetition_penalty=1.0)
        self.one = base.replace(max_new_tokens=1)
        self.many = base.replace(max_new_tokens=tokens + 1)

    def measure(self) -> dict[str, float]:
        long = self.engine.stream_reply(self.long, self.one)
        short = self.engine.stream_reply(self.short, self.many)
        assert short.new_tokens == self.many.max_new_tokens, short.new_tokens
        return {
            "prefill": long.prompt_tokens / long.time_to_first_token,
            "decode": (short.new_tokens - 1) / (short.elapsed - short.time_to_first_token),
            "first": short.time_to_first_token,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--prompt", type=int, default=790)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--emulate-avx2", action="store_true")
    parser.add_argument(
        "--modes",
        default="none,none+auto,int8-dynamic+auto,8bit,4bit",
        help="MODE or MODE:DTYPE, comma-separated; MODE+auto: MODE as --quant auto runs it "
        "on the CPU (bf16 one-token decode steps outside oneDNN, sampling among the stages' "
        "survivors)",
    )
    parser.add_argument(
        "--tutorial-sampling",
        "--seed-sampling",
        dest="tutorial_sampling",
        action="store_true",
        help="every row, raw and engine, samples with the tutorial's values",
    )
    args = parser.parse_args()
    sampling = tutorial_params() if args.tutorial_sampling else None
    if args.emulate_avx2 and os.environ.get("FBGEMM_ENABLE_INSTRUCTIONS") != "AVX2":
        argv = [a for a in sys.argv[1:] if a != "--emulate-avx2"]
        env = {**os.environ, **AVX2_ENV}
        print(
            "(emulating a CPU without AVX-512: "
            + " ".join(f"{k}={v}" for k, v in AVX2_ENV.items())
            + ")"
        )
        sys.exit(subprocess.call([sys.executable, __file__, *argv], env=env))

    import copy
    import warnings

    import torch

    from chatapp.engine import LocalEngine
    from chatapp.engine.closeness import closeness_ids, compare, next_token_logprobs
    from chatapp.engine.framework_internals import silence_libraries
    from chatapp.engine.loading import load_model
    from chatapp.engine.quantization import cpu_has_native_bf16, fbgemm_reduce_range, run_as_auto

    warnings.filterwarnings("ignore")
    silence_libraries()
    rows: dict[str, dict] = {}

    def add(name, build):
        before = rss_mb()
        start = time.perf_counter()
        runner, model, load = build()
        load = load if load is not None else time.perf_counter() - start
        rows[name] = {
            "runner": runner,
            "model": model,
            "load": load,
            "rss": rss_mb() - before,
            "runs": [],
        }

    base = load_model("bundled", quant="none", dtype="bfloat16")  # as plain transformers
    tokenizer = base.tokenizer
    # No EOS for the raw rows either (generate fills an unset one from here), so every
    # reply runs to its length; the fp32 copy below inherits it.
    base.model.generation_config.eos_token_id = None
    long_ids = tokenizer(LONG_TEXT * 60, return_tensors="pt").input_ids[:, : args.prompt]
    long_text = tokenizer.decode(long_ids[0, 1:])
    short_ids = tokenizer(TUTORIAL_PROMPT, return_tensors="pt").input_ids
    add(
        "raw bf16",
        lambda: (
            Raw(base.model, long_ids, short_ids, args.tokens, sampling),
            base.model,
            base.load_seconds,
        ),
    )
    add(
        "raw fp32",
        lambda: (
            Raw(m := copy.deepcopy(base.model).float(), long_ids, short_ids, args.tokens, sampling),
            m,
            None,
        ),
    )
    for mode in args.modes.split(","):

        def build(mode=mode):
            quant, _, dtype = mode.partition(":")  # e.g. int8-dynamic:float32
            quant, auto, _ = quant.partition("+auto")
            engine = LocalEngine.load("bundled", quant=quant, dtype=dtype or "auto")
            if auto:
                run_as_auto(engine.loaded)
            runner = Engine(engine, long_text, args.tokens, sampling)
            return runner, engine.model, engine.loaded.load_seconds

        label = f"engine {mode.partition(':')[0]}"
        label += f" ({mode.partition(':')[2]})" if ":" in mode else ""
        add(label, build)
        rows[label]["label"] = (
            f"engine {mode.partition(':')[0]} ({rows[label]['runner'].engine.loaded.dtype})"
        )

    print(
        f"CPU: {torch.get_num_threads()} threads · native bf16: {cpu_has_native_bf16()} · "
        f"fbgemm 7-bit activations: {fbgemm_reduce_range()} · prompt {long_ids.shape[1]} "
        f"tokens · {args.tokens} tokens decoded · {args.rounds} rounds · every row "
        + ("samples with the tutorial's values" if sampling else "greedy"),
        flush=True,
    )
    for row in rows.values():  # warm up
        row["runner"].measure()
    for _ in range(args.rounds):
        for row in rows.values():
            row["runs"].append(row["runner"].measure())
    ids = closeness_ids(tokenizer)
    reference = next_token_logprobs(base.model, ids)
    for row in rows.values():
        row["close"] = compare(reference, next_token_logprobs(row["model"], ids))
        for key in ("prefill", "decode", "first"):
            row[key] = statistics.median(r[key] for r in row["runs"])
    baseline = rows["raw bf16"]
    for name, row in rows.items():
        row["rd"] = row["decode"] / baseline["decode"]
        row["rp"] = row["prefill"] / baseline["prefill"]
        four_bit = name.endswith("4bit")
        row["ok"] = row["close"].close(four_bit=four_bit)
        print(
            f"{row.get('label', name):27} load {row['load']:5.1f} s · prefill "
            f"{row['prefill']:6.0f} tok/s ({row['rp']:.2f}x) · decode {row['decode']:6.2f} "
            f"tok/s ({row['rd']:.2f}x) · first token {row['first']:.2f} s · +RSS "
            f"{row['rss']:5.0f} MB · {row['close']} · "
            + ("close" if row["ok"] else "NOT close")
            + (" (4-bit bound)" if four_bit else ""),
            flush=True,
        )
    engines = [n for n in rows if n.startswith("engine") and rows[n]["ok"]]
    best = max(engines, key=lambda n: rows[n]["decode"])
    print(
        f"best CPU mode: {best.removeprefix('engine ')} decode {rows[best]['rd']:.2f}x, "
        f"prefill {rows[best]['rp']:.2f}x vs raw bf16"
    )


if __name__ == "__main__":
    main()
