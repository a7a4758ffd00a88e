"""The lens of a finished reply, recomputed from its tokens: all steps' stages at once
(``replay_lens`` today) against one step at a time (as it was), alternating, in one run.

    python bench/lens_replay.py [--tokens 256] [--runs 3] [--quant auto]

The reply runs to its token count (raw format, no EOS) with the tutorial's sampling
values. Each run times, in turn: the replay one step at a time (forward pass in chunks,
then each step's stages alone, transformers' own top-p), the replay as the app does it,
and the forward pass alone (the floor: the full-vocabulary logits of every position).
It checks that both replays give the same tables, and ends with:

    lens replay of N tokens: X s (one step at a time: Y s; forward pass alone: Z s)
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


def forward(engine, messages, token_ids, params, analyze=None):
    """The replay's forward pass in chunks; ``analyze(step, ids, logits_row)`` per step."""
    import torch

    from chatapp.engine import framework_internals as internals
    from chatapp.engine.inspection import REPLAY_CHUNK

    prompt = engine.plan(messages, params).prompt_ids
    ids = torch.tensor([prompt + list(token_ids)], dtype=torch.long)
    first = len(prompt) - 1
    cache = engine.kv_cache.new()
    with torch.inference_mode(), internals.quiet():
        position = 0
        while position < first + len(token_ids):
            stop = min(position + REPLAY_CHUNK, first if position < first else len(ids[0]) - 1)
            out = engine.model(
                input_ids=ids[:, position:stop],
                past_key_values=cache,
                use_cache=True,
                cache_position=torch.arange(position, stop),
                logits_to_keep=0 if position >= first else 1,
            )
            if position >= first and analyze is not None:
                for row in range(stop - position):
                    step = position + row - first
                    analyze(step, ids[:, : first + 1 + step], out.logits[:, row, :])
            position = stop


def step_by_step(engine, messages, token_ids, params):
    """The replay as it was: each step's stages alone (``analyze_step``)."""
    from chatapp.engine.lens import add_sampled, analyze_step

    steps = []
    processors = None

    def analyze(step, ids, logits):
        nonlocal processors
        if processors is None:
            processors = engine.sampling_stages(engine.generation_config(params), ids)
        _, record, kept = analyze_step(step, ids, logits, processors, engine.tokenizer, 10)
        add_sampled(record, int(token_ids[step]), kept, engine.tokenizer)
        steps.append(record)

    forward(engine, messages, token_ids, params, analyze)
    return steps


def differences(old, new):
    """The largest probability difference and the number of steps whose rows differ."""
    worst, apart = 0.0, 0
    for a, b in zip(old, new, strict=True):
        if [c.token_id for c in a.candidates] != [c.token_id for c in b.candidates] or (
            a.survivors != b.survivors
        ):
            apart += 1
            continue
        for x, y in zip(a.candidates, b.candidates, strict=True):
            worst = max(worst, *(abs(p - q) for p, q in zip(x.probs, y.probs, strict=True)))
    return worst, apart


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quant", default="auto")
    args = parser.parse_args()

    from chatapp.engine import LocalEngine, Message
    from chatapp.engine.framework_internals import silence_libraries

    silence_libraries()
    engine = LocalEngine.load("bundled", quant=args.quant, dtype="auto")
    disable_eos(engine)
    engine.chat_format = "raw"
    messages = [Message("user", TUTORIAL_PROMPT)]
    params = tutorial_params(max_new_tokens=args.tokens, seed=2)
    stats = engine.stream_reply(messages, params, wait=True)
    print(f"{engine.describe()}; reply of {len(stats.token_ids)} tokens, {params.summary()}")
    times: dict[str, list[float]] = {"old": [], "new": [], "forward": []}
    for _ in range(args.runs):
        start = time.perf_counter()
        old = step_by_step(engine, messages, stats.token_ids, params)
        times["old"].append(time.perf_counter() - start)
        start = time.perf_counter()
        new = engine.replay_lens(messages, stats.token_ids, params)
        times["new"].append(time.perf_counter() - start)
        start = time.perf_counter()
        forward(engine, messages, stats.token_ids, params)
        times["forward"].append(time.perf_counter() - start)
    worst, apart = differences(old, new)
    print(
        f"tables: {apart} of {len(new)} steps differ in rows or survivors; largest "
        f"probability difference {worst:.2e}"
    )
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        "runs (s): "
        + "; ".join(f"{k} {', '.join(f'{t:.2f}' for t in v)}" for k, v in times.items())
    )
    print(
        f"lens replay of {len(new)} tokens: {med['new']:.2f} s (one step at a time: "
        f"{med['old']:.2f} s; forward pass alone: {med['forward']:.2f} s; stages "
        f"{med['new'] - med['forward']:.2f} s against {med['old'] - med['forward']:.2f} s)"
    )


if __name__ == "__main__":
    main()
