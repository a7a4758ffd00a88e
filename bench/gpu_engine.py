"""Engine vs raw ``model.generate`` on a CUDA GPU with a gemma-2b-shaped random model.

No weights can be fetched on the GPU machine, so this builds ``GemmaConfig`` for
gemma-2b (hidden 2048, 18 layers, intermediate 16384, 8 heads, 1 KV head, head_dim 256)
with random weights, and uses the bundled model's tokenizer (its vocabulary, 262,144,
sets the embedding size; gemma-2b's is 256,000).

    python bench/gpu_engine.py --tokenizer DIR [--tokens 256] [--runs 3] [--quant none|8bit|4bit]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_common import disable_eos, gemma_2b_config  # noqa: E402

PROMPT = "使用繁體中文回答，請問什麼是大型語言模型？"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quant", default="none", choices=("none", "8bit", "4bit"))
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM

    from chatapp.engine import LocalEngine, Message
    from chatapp.engine.loading import (
        LoadedModel,
        _load_tokenizer,
        quantization_config,
        silence_libraries,
    )
    from chatapp.params import SEED_VALUES, SamplingParams

    silence_libraries()
    tokenizer = _load_tokenizer(args.tokenizer)
    config = gemma_2b_config(vocab_size=len(tokenizer))
    start = time.perf_counter()
    torch.manual_seed(0)
    with torch.device("cuda" if args.quant == "none" else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    if args.quant != "none":
        # Quantize the random weights the way from_pretrained would: save, then reload.
        import tempfile

        folder = tempfile.mkdtemp()
        model.save_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(
            folder,
            dtype=torch.bfloat16,
            device_map="auto",
            quantization_config=quantization_config(args.quant, torch.bfloat16),
        )
    loaded = LoadedModel(
        model,
        tokenizer,
        "gemma-2b-shaped random",
        args.quant,
        "bfloat16",
        str(model.device),
        time.perf_counter() - start,
    )
    engine = LocalEngine(loaded)
    # Random weights rarely stop early, but never let EOS end a run: same length both ways.
    params = SamplingParams(**SEED_VALUES).replace(max_new_tokens=args.tokens, seed=0)
    messages = [Message("user", PROMPT)]
    input_ids = engine.prompt_ids(messages)
    disable_eos(engine)  # the config for the values asked (the lens's neutral one too)
    engine.model.generation_config.eos_token_id = None
    gen_config = engine.generation_config(params)
    engine.stop_ids = []

    def raw() -> float:
        torch.manual_seed(0)
        torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                generation_config=gen_config,
            )
        torch.cuda.synchronize()
        assert out.shape[1] - input_ids.shape[1] == args.tokens
        return (out.shape[1] - input_ids.shape[1]) / (time.perf_counter() - t)

    from chatapp.engine.lens import LensRecorder

    def streamed(lens: LensRecorder | None = None) -> float:
        stats = engine.stream_reply(messages, params, lens=lens)
        torch.cuda.synchronize()
        assert stats.new_tokens == args.tokens, (stats.new_tokens, args.tokens)
        return stats.new_tokens / stats.elapsed

    def lensed() -> float:
        return streamed(LensRecorder())

    def idle_lens() -> float:
        return streamed(LensRecorder(active=False))

    order = [raw, streamed, lensed, idle_lens]
    for fn in order:
        fn()
    rates: dict = {fn: [] for fn in order}
    for i in range(args.runs):
        for fn in order[i % 4 :] + order[: i % 4]:
            rates[fn].append(fn())
    raws, engs = rates[raw], rates[streamed]
    r, e = statistics.median(raws), statistics.median(engs)
    lens_med, idle_med = statistics.median(rates[lensed]), statistics.median(rates[idle_lens])
    print(
        f"{torch.cuda.get_device_name()} · {args.quant} · {args.tokens} new tokens · {args.runs} runs each"
    )
    print(f"raw generate    median {r:.1f} tok/s  {[f'{x:.1f}' for x in raws]}")
    print(f"engine stream   median {e:.1f} tok/s  {[f'{x:.1f}' for x in engs]}")
    print(f"ratio engine/raw {e / r:.3f}")
    print(f"lens recording  median {lens_med:.1f} tok/s ({100 * (e / lens_med - 1):+.1f}% time)")
    print(f"lens idle (app) median {idle_med:.1f} tok/s ({100 * (e / idle_med - 1):+.1f}% time)")


if __name__ == "__main__":
    main()
