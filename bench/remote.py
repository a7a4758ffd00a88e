"""The remote path against a bare ``openai`` SDK loop, on a real ``transformers serve``.

    python bench/remote.py                 # starts transformers serve on loopback itself
    python bench/remote.py --server URL    # or uses one that runs already

1. The same request (same messages, values and seed) through chatapp's RemoteEngine and
   through a plain ``client.chat.completions.create(stream=True)`` loop, alternating,
   so both see the same server state. Prints tokens/s (after the first token) and time
   to first token for each, their ratio and the difference.
   Targets: tokens/s ratio >= 0.98; time-to-first-token overhead <= 20 ms.
2. ``chatapp --server URL --prompt hi`` as a new process: time from the process start to
   its first token on stdout, and the modules it imported (torch must not be one).
   Bytecode is written first (one warm-up run), as a user's installed copy has it.
   Target: <= 1 s.
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

MESSAGES = [{"role": "user", "content": "Tell me a long story about the sea."}]


def bare_loop(url: str, model: str, fields: dict, extra: dict) -> tuple[float, float, int]:
    """(time to first token, decode tokens/s, tokens) with the SDK alone."""
    from openai import OpenAI

    client = OpenAI(base_url=url, api_key="none", max_retries=0)
    start = time.perf_counter()
    first = None
    chunks = 0
    stream = client.chat.completions.create(
        model=model, messages=MESSAGES, stream=True, extra_body=extra, **fields
    )
    for chunk in stream:
        for choice in chunk.choices[:1]:
            if choice.delta.content:
                chunks += 1
                if first is None:
                    first = time.perf_counter()
    end = time.perf_counter()
    return first - start, (chunks - 1) / (end - first), chunks


def chatapp_loop(engine, params) -> tuple[float, float, int]:
    from chatapp.engine.types import Message

    pieces: list[float] = []
    start = time.perf_counter()
    stats = engine.stream_reply(
        [Message("user", MESSAGES[0]["content"])],
        params,
        lambda p: pieces.append(time.perf_counter()),
    )
    end = time.perf_counter()
    first = pieces[0]
    return first - start, (len(pieces) - 1) / (end - first), stats.new_tokens


def compare(url: str, rounds: int, tokens: int) -> None:
    from chatapp.engine.remote import RemoteEngine
    from chatapp.engine.servers import request_fields
    from chatapp.params import SamplingParams

    engine = RemoteEngine(url)
    params = SamplingParams(max_new_tokens=tokens, seed=11)
    fields, extra = request_fields(engine.kind, params, params.seed)
    bare_loop(url, engine.model, fields, extra)  # warm both paths
    chatapp_loop(engine, params)
    results: dict[str, list[tuple[float, float, int]]] = {"chatapp": [], "bare": []}
    for i in range(rounds):
        order = ("chatapp", "bare") if i % 2 == 0 else ("bare", "chatapp")
        for name in order:
            if name == "bare":
                results[name].append(bare_loop(url, engine.model, fields, extra))
            else:
                results[name].append(chatapp_loop(engine, params))
    med = {
        name: (statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows))
        for name, rows in results.items()
    }
    print(f"server: {engine.describe()}")
    print(f"{rounds} alternating runs each, {tokens} tokens, seed {params.seed}, same request")
    for name, (ttft, rate) in med.items():
        print(f"  {name:8} first token {ttft * 1000:7.1f} ms   decode {rate:6.2f} tok/s")
    ratio = med["chatapp"][1] / med["bare"][1]
    overhead = (med["chatapp"][0] - med["bare"][0]) * 1000
    print(f"tokens/s ratio chatapp/bare: {ratio:.3f}   target >= 0.98")
    print(f"time-to-first-token overhead: {overhead:+.1f} ms   target <= 20 ms")


def process_start(url: str, runs: int) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    code = (
        "import sys; from chatapp.cli import main; "
        f"rc = main(['--server', '{url}', '--prompt', 'hi', '--max-new-tokens', '4']); "
        "print(len(sys.modules), 'torch' in sys.modules, file=sys.stderr)"
    )
    times, modules, torch = [], 0, True
    for i in range(runs + 1):
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=ROOT,
        )
        proc.stdout.read(1)
        first = time.perf_counter() - start
        _, err = proc.communicate(timeout=60)
        last = err.decode().strip().splitlines()[-1].split()
        modules, torch = int(last[0]), last[1] == "True"
        if i:  # the first run writes the bytecode
            times.append(first)
    print(
        f"chatapp --server URL --prompt hi: first token {statistics.median(times) * 1000:.0f} ms "
        f"after the process started (median of {runs}, worst {max(times) * 1000:.0f} ms)"
        f"   target <= 1000 ms"
    )
    print(f"modules imported: {modules}; torch imported: {torch}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", help="an OpenAI-compatible base URL already running")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    proc = None
    url = args.server
    if url is None:
        from chatapp import paths
        from chatapp.engine.bundled import ensure_bundled_model
        from tests.serve_helper import start_transformers_serve

        ensure_bundled_model()
        proc, url = start_transformers_serve(paths.bundled_model_dir())
    try:
        compare(url, args.rounds, args.tokens)
        process_start(url, 5)
    finally:
        if proc is not None:
            from tests.serve_helper import stop_server

            stop_server(proc)


if __name__ == "__main__":
    main()
