"""Raw ``generate`` in every CUDA mode transformers offers, on a gemma-2b-shaped model.

No weights can be fetched on the GPU machine: the model is ``GemmaConfig`` for gemma-2b
(hidden 2048, 18 layers, intermediate 16384, 8 heads, 1 KV head, head_dim 256, vocabulary
256,000) with random weights, saved once and reloaded per mode the way a user's
``from_pretrained`` would quantize it. Prompts are random token ids (no tokenizer needed).

    python bench/gpu_modes.py [--tokens 256] [--prompt 790] [--modes bf16,compile,...]
    python bench/gpu_modes.py --tiny        # a small config, to check the script on a CPU

Per mode: load seconds, prefill tok/s (a --prompt-token prompt, to its first token),
decode tok/s (--tokens new tokens after the first), peak GPU memory, and the closeness to
bf16: mean KL divergence (bits) of the next-token distributions over the prompt's
positions, and the share of positions whose most likely token agrees. Each line is also
appended to --out as JSON, so a run cut short keeps what it measured.
Modes: bf16, compile (bf16 + static cache + torch.compile), bnb8 (the tutorial's mode),
bnb4 (nf4), ao-int8 and ao-int4 (torchao weight-only).

The GPU machine has torch and transformers only: carry the bitsandbytes and torchao
wheels (``pip download --no-deps bitsandbytes torchao``) and ``python -m pip install``
them there. torchao's int4 needs the ``mslk`` kernels package as well. A first run on an
H200 (runs=1) measured only partly: see the issue 9/10 closing note; the compile mode
did not finish its warm-up within the 500 s the run had.
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
import traceback
from pathlib import Path

from bench_common import closeness, gemma_2b_config, greedy_seconds, next_token_logprobs

MODES = ("bf16", "compile", "bnb8", "bnb4", "ao-int8", "ao-int4")


def build_config(tiny: bool):
    from transformers import GemmaConfig

    if tiny:
        return GemmaConfig(
            vocab_size=4096,
            hidden_size=256,
            num_hidden_layers=2,
            intermediate_size=512,
            num_attention_heads=4,
            num_key_value_heads=1,
            head_dim=64,
        )
    return gemma_2b_config()


def quant_config(mode: str):
    import torch
    from transformers import BitsAndBytesConfig, TorchAoConfig

    if mode in ("bf16", "compile"):
        return None
    if mode == "bnb8":
        return BitsAndBytesConfig(load_in_8bit=True)
    if mode == "bnb4":
        return BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
        )
    from torchao.quantization import Int4WeightOnlyConfig, Int8WeightOnlyConfig

    if mode == "ao-int8":
        return TorchAoConfig(quant_type=Int8WeightOnlyConfig())
    if mode == "ao-int4":
        return TorchAoConfig(quant_type=Int4WeightOnlyConfig(group_size=128))
    raise ValueError(f"unknown mode {mode!r}")


def load(mode: str, folder: str, device: str):
    import torch
    from transformers import AutoModelForCausalLM

    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(
        folder,
        dtype=torch.bfloat16,
        device_map=device,
        quantization_config=quant_config(mode),
    )
    model.eval()
    if mode == "compile":
        model.generation_config.cache_implementation = "static"
        model.forward = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)
    return model, time.perf_counter() - start


def generate_time(model, ids, new: int, device: str) -> float:
    import torch

    return greedy_seconds(model, ids, new, torch.cuda.synchronize if device == "cuda" else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--prompt", type=int, default=790)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--out", default="gpu_modes.jsonl")
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM

    device = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    folder = tempfile.mkdtemp(prefix="gemma2b-random-")
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(build_config(args.tiny), dtype=torch.bfloat16)
    model.save_pretrained(folder)
    del model
    gc.collect()
    vocab = build_config(args.tiny).vocab_size
    gen = torch.Generator().manual_seed(1)
    prompt = torch.randint(10, vocab, (1, args.prompt), generator=gen).to(device)
    short = prompt[:, :16]
    print(
        f"{name} · gemma-2b shape{' (tiny)' if args.tiny else ''} · random weights · "
        f"prompt {args.prompt} tokens · {args.tokens} new tokens · {args.runs} runs",
        flush=True,
    )
    reference = None
    results = {}
    for mode in args.modes.split(","):
        try:
            if device == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            model, load_s = load(mode, folder, device)
            generate_time(model, short, 8, device)  # warm up (compiles, for compile)
            generate_time(model, short, 8, device)
            prefills, decodes = [], []
            for _ in range(args.runs):
                first = generate_time(model, prompt, 1, device)
                whole = generate_time(model, short, args.tokens, device)
                one = generate_time(model, short, 1, device)
                prefills.append(args.prompt / first)
                decodes.append((args.tokens - 1) / (whole - one))
            if mode == "compile":
                model.forward = (
                    model.forward._orig_mod
                    if hasattr(model.forward, "_orig_mod")
                    else model.forward
                )
            logprobs = next_token_logprobs(model, prompt[:, :256])
            if reference is None and mode == "bf16":
                reference = logprobs
            kl, agree = (
                closeness(reference, logprobs) if reference is not None else (float("nan"),) * 2
            )
            peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
            row = {
                "mode": mode,
                "device": name,
                "load_s": load_s,
                "prefill_tok_s": max(prefills),
                "decode_tok_s": max(decodes),
                "peak_gib": peak,
                "kl_bits": kl,
                "top1_agree": agree,
            }
            results[mode] = row
            base = results.get("bf16")
            ratio = (
                f" · decode {row['decode_tok_s'] / base['decode_tok_s']:.2f}x bf16" if base else ""
            )
            print(
                f"{mode:8} load {load_s:6.1f} s · prefill {row['prefill_tok_s']:8.0f} tok/s · "
                f"decode {row['decode_tok_s']:7.1f} tok/s · peak {peak:5.1f} GiB · "
                f"KL {kl:.4f} bits · top-1 {agree * 100:5.1f}%{ratio}",
                flush=True,
            )
            with open(args.out, "a") as handle:
                handle.write(json.dumps(row) + "\n")
            del model
            gc.collect()
        except Exception as exc:  # noqa: BLE001 - one mode failing must not stop the rest
            print(f"{mode:8} failed: {type(exc).__name__}: {exc}", flush=True)
            traceback.print_exc(limit=3)
    Path(folder).exists()


if __name__ == "__main__":
    main()
