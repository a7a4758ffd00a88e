"""Every CPU mode for the bundled model, against raw bf16 ``generate`` (a first version
for the speed issue: raw modes only; the engine's own modes are to be added here).

    python bench/engine_modes.py [--tokens 48] [--prompt 790]

Modes: bf16 and fp32 (raw ``generate``), and dyn-int8: torch's dynamic int8 ``Linear``
(fbgemm) on fp32 weights, with the tied output head untied so that it is quantized too.
Per mode: load seconds, prefill tok/s (a --prompt-token prompt to its first token),
decode tok/s (--tokens greedy tokens after the first), time to first token of a short
prompt, the process's peak RSS so far, and the closeness to bf16: mean KL (bits) of the
next-token distributions over 256 positions and their top-1 agreement. Ends with
``best CPU mode: NAME decode Rd x, prefill Rp x vs raw bf16``.
"""

from __future__ import annotations

import argparse
import copy
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_common import closeness, greedy_seconds, next_token_logprobs  # noqa: E402

TEXT = (
    "The sea is wide and deep, and the light on it changes every hour of the day. "
    "Fishermen read its colour the way others read a clock. "
)


def dynamic_int8(model):
    """torch's dynamic int8 Linear on an fp32 copy; the output head untied first."""
    import torch

    quantized = copy.deepcopy(model).float()
    head = quantized.lm_head
    head.weight = torch.nn.Parameter(head.weight.detach().clone())
    quantized.config.tie_word_embeddings = False
    return torch.ao.quantization.quantize_dynamic(quantized, {torch.nn.Linear}, dtype=torch.qint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--prompt", type=int, default=790)
    args = parser.parse_args()

    import warnings

    import torch

    from chatapp.engine.loading import cpu_has_native_bf16, load_model, silence_libraries

    warnings.filterwarnings("ignore")
    silence_libraries()
    start = time.perf_counter()
    loaded = load_model("bundled", quant="none", dtype="bfloat16")
    bf16_load = time.perf_counter() - start
    tokenizer = loaded.tokenizer
    long_ids = tokenizer(TEXT * 40, return_tensors="pt").input_ids[:, : args.prompt]
    short = tokenizer("Tell me about the sea.", return_tensors="pt").input_ids
    builders = {
        "bf16": lambda: loaded.model,
        "fp32": lambda: copy.deepcopy(loaded.model).float(),
        "dyn-int8": lambda: dynamic_int8(loaded.model),
    }
    print(
        f"CPU: {torch.get_num_threads()} threads, native bf16: {cpu_has_native_bf16()} · "
        f"prompt {long_ids.shape[1]} tokens · {args.tokens} greedy tokens"
    )
    reference = None
    rows = {}
    for name, build in builders.items():
        start = time.perf_counter()
        model = build()
        load = bf16_load + (time.perf_counter() - start if name != "bf16" else 0.0)
        greedy_seconds(model, short, 4)  # warm up
        prefill = greedy_seconds(model, long_ids, 1)
        first = greedy_seconds(model, short, 1)
        whole = greedy_seconds(model, short, args.tokens + 1)
        logprobs = next_token_logprobs(model, long_ids[:, :256])
        if reference is None:
            reference = logprobs
        kl, agree = closeness(reference, logprobs)
        rows[name] = {
            "prefill": long_ids.shape[1] / prefill,
            "decode": args.tokens / (whole - first),
        }
        base = rows["bf16"]
        print(
            f"{name:9} load {load:5.1f} s · prefill {rows[name]['prefill']:6.0f} tok/s "
            f"({rows[name]['prefill'] / base['prefill']:.2f}x) · decode "
            f"{rows[name]['decode']:6.2f} tok/s ({rows[name]['decode'] / base['decode']:.2f}x) · "
            f"first token {first:.2f} s · peak RSS "
            f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB · "
            f"KL {kl:.4f} bits · top-1 {agree * 100:.1f}%",
            flush=True,
        )
    base = rows["bf16"]
    best = max((n for n in rows if n != "bf16"), key=lambda n: rows[n]["decode"])
    print(
        f"best CPU mode: {best} decode {rows[best]['decode'] / base['decode']:.2f}x, "
        f"prefill {rows[best]['prefill'] / base['prefill']:.2f}x vs raw bf16"
    )


if __name__ == "__main__":
    main()
