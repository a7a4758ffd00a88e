"""Engine vs raw ``model.generate`` per mode on a CUDA GPU, gemma-2b-shaped random model.

No weights can be fetched on the GPU machine, so a gemma-2b-shaped model (hidden 2048, 18
layers, intermediate 16384, 8 heads, 1 KV head, head_dim 256) with random weights is saved
once with the bundled tokenizer (``bench_common.random_model_folder``), and every mode
loads it through the app's own loading (``LocalEngine.load``, as ``chatapp --model FOLDER
--quant MODE [--compile]`` would).

    python bench/gpu_engine.py [--tokens 256] [--runs 3] [--modes none,none+compile,8bit,...]
    python bench/gpu_engine.py --tiny --modes none,none+compile   # check it on a CPU

Modes: none (bf16), none+compile (the fast path: static cache + torch.compile), 8bit (the
seed's bitsandbytes), 4bit (nf4), ao-int8 and ao-int8+compile (torchao int8 weight-only;
carry the torchao wheel). Per mode: load seconds (compile and warm-up included), raw
generate tok/s (with the same static cache + compile for the +compile modes), engine
tok/s, their ratio, peak GPU memory, and the closeness to bf16
(``chatapp.engine.closeness``). Runs alternate raw and engine. Ends with
``best CUDA mode: NAME decode R x vs raw bf16`` (closeness check passed), and the mode
``--quant auto`` picks here. For app/engine on the GPU run
``python bench/ui_stream.py --only-real --model FOLDER --quant MODE [--compile]``.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_common import disable_eos, random_model_folder, timed_generate  # noqa: E402

PROMPT = "使用繁體中文回答，請問什麼是大型語言模型？"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--folder", default="/tmp/gemma-2b-random")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--modes", default="none,none+compile,8bit,4bit,ao-int8,ao-int8+compile")
    args = parser.parse_args()

    import torch

    from chatapp.engine import LocalEngine, Message
    from chatapp.engine.closeness import closeness_ids, compare, next_token_logprobs
    from chatapp.engine.loading import auto_quant, silence_libraries
    from chatapp.params import SEED_VALUES, SamplingParams

    silence_libraries()
    cuda = torch.cuda.is_available()
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    folder = random_model_folder(args.folder + ("-tiny" if args.tiny else ""), tiny=args.tiny)
    params = SamplingParams(**SEED_VALUES).replace(max_new_tokens=args.tokens, seed=0)
    messages = [Message("user", PROMPT)]
    device = torch.cuda.get_device_name() if cuda else "CPU"
    print(f"{device} · {folder} · {args.tokens} new tokens · {args.runs} runs each", flush=True)
    reference = None
    rows = {}
    for mode in args.modes.split(","):
        quant, _, fast = mode.partition("+")
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        try:
            engine = LocalEngine.load(str(folder), quant=quant, compile=bool(fast))
        except Exception as exc:  # noqa: BLE001 - a mode this machine cannot run
            print(f"{mode:17} skipped: {exc}", flush=True)
            continue
        engine.reuse_cache = False
        engine.chat_format = "raw"
        disable_eos(engine)
        input_ids = engine.prompt_ids(messages)
        config = engine.generation_config(params)
        config.eos_token_id = None
        if fast:
            config.cache_implementation = "static"
            config.compile_config = engine._compile_config

        def raw(engine=engine, input_ids=input_ids, config=config) -> float:
            new, seconds = timed_generate(engine.model, input_ids, config, sync=sync)
            assert new == args.tokens
            return new / seconds

        def streamed(engine=engine) -> float:
            stats = engine.stream_reply(messages, params)
            sync()
            assert stats.new_tokens == args.tokens, stats.new_tokens
            return stats.new_tokens / stats.elapsed

        raw(), streamed()  # warm-up (compiles the raw path's own graph too)
        rates: dict = {raw: [], streamed: []}
        for i in range(args.runs):
            for fn in [raw, streamed][i % 2 :] + [raw, streamed][: i % 2]:
                rates[fn].append(fn())
        logprobs = next_token_logprobs(engine.model, closeness_ids(engine.tokenizer))
        if reference is None:
            reference = logprobs  # the first mode (none) is the reference
        close = compare(reference, logprobs)
        r, e = statistics.median(rates[raw]), statistics.median(rates[streamed])
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
        rows[mode] = {"raw": r, "engine": e, "ok": close.close(four_bit=quant == "4bit")}
        print(
            f"{mode:17} load {engine.loaded.load_seconds:6.1f} s · raw {r:7.1f} tok/s · "
            f"engine {e:7.1f} tok/s · engine/raw {e / r:.3f} · peak {peak:5.1f} GiB · {close}"
            + ("" if rows[mode]["ok"] else " · NOT close"),
            flush=True,
        )
        del engine
    base = rows.get("none")
    quantized = [m for m in rows if m.split("+")[0] not in ("none",) and rows[m]["ok"]]
    if base and rows:
        best = max((m for m in rows if rows[m]["ok"]), key=lambda m: rows[m]["engine"])
        print(
            f"best CUDA mode: {best} decode {rows[best]['engine'] / base['raw']:.2f}x vs raw bf16"
        )
    if quantized and base:
        fastest = max(quantized, key=lambda m: rows[m]["engine"])
        print(f"fastest close quantized mode: {fastest} ({rows[fastest]['engine']:.1f} tok/s)")
    mode, reason = auto_quant()
    print(f"--quant auto here: {mode} ({reason})")


if __name__ == "__main__":
    main()
