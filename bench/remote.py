"""The remote path's client overhead: CPU time per streamed chunk, chatapp's RemoteEngine
against the bare ``openai`` SDK, both reading the same zero-delay stub server.

    python bench/remote.py [--chunks 2000] [--rounds 8]

1. A stub OpenAI-compatible server (``tests/openai_stub.py``) runs in a process of its
   own on loopback and streams ``--chunks`` chat chunks as fast as it can write them, so
   the figure is the client's work, not the server's pace (a real server's tokens/s
   bounds both clients alike and hides it). The same request (same messages and fields,
   ``stream_options`` included) goes through chatapp's ``RemoteEngine.stream_reply`` and
   through a plain ``client.chat.completions.create(stream=True)`` loop that keeps each
   piece, alternating, one of each first to warm up. The client's CPU time is the bench
   process's own (``time.process_time``: every thread of it, the engine's reader thread
   included; the server is another process), divided by the chunks received. Prints
   both medians in µs per chunk, with their wall time.
2. ``chatapp --server URL --prompt hi`` as a new process against the same stub: time from
   the process start to its first token on stdout, and whether it imported torch.
   Bytecode is written first (one warm-up run), as a user's installed copy has it.
   Target: <= 1 s.

Ends with: ``client CPU per chunk: chatapp X µs, bare openai SDK Y µs (chatapp/bare R)``.
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
STUB = r"""
import sys
sys.path.insert(0, sys.argv[1])
from tests.openai_stub import StubServer
pieces = [f" w{i % 10}" for i in range(int(sys.argv[2]))]
with StubServer(pieces) as stub:
    print(stub.url, flush=True)
    sys.stdin.read()  # serves until the bench closes this pipe
"""


class StubProcess:
    """The zero-delay stub server in a process of its own (its CPU time is not ours)."""

    def __init__(self, chunks: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", STUB, str(ROOT), str(chunks)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.url = self.proc.stdout.readline().strip()
        if not self.url:
            raise SystemExit("the stub server did not start")

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def clients(url: str):
    """chatapp's remote engine on ``url``, and a bare SDK client built as it builds its own
    (the engine's imports kept here, in one place)."""
    from openai import OpenAI, Timeout

    from chatapp.engine.remote import CONNECT_TIMEOUT, READ_TIMEOUT, RemoteEngine

    timeout = Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT)
    bare = OpenAI(base_url=url, api_key="none", max_retries=0, timeout=timeout)
    return RemoteEngine(url, kind="openai"), bare


def request(engine, tokens: int) -> tuple[object, dict, dict]:
    """The values, and the request fields and extra body chatapp sends for them."""
    from chatapp.engine.servers import request_fields
    from chatapp.params import SamplingParams

    params = SamplingParams(max_new_tokens=tokens, seed=11)
    fields, extra = request_fields(engine.kind, params, params.seed)
    if engine.kind.usage_option:
        fields["stream_options"] = {"include_usage": True}
    return params, fields, extra


def measured(run) -> tuple[float, float, int]:
    """(process CPU seconds, wall seconds, chunks) of ``run()``, which returns its chunks."""
    cpu, wall = time.process_time(), time.perf_counter()
    chunks = run()
    return time.process_time() - cpu, time.perf_counter() - wall, chunks


def bare_sdk(client, model: str, fields: dict, extra: dict) -> int:
    """The SDK alone: stream the reply, keep each piece."""
    pieces: list[str] = []
    stream = client.chat.completions.create(
        model=model, messages=MESSAGES, stream=True, extra_body=extra, **fields
    )
    for chunk in stream:
        for choice in chunk.choices[:1]:
            if choice.delta.content:
                pieces.append(choice.delta.content)
    return len(pieces)


def chatapp_engine(engine, params) -> int:
    from chatapp.engine.types import Message

    pieces: list[str] = []
    engine.stream_reply([Message("user", MESSAGES[0]["content"])], params, pieces.append)
    return len(pieces)


def compare(url: str, chunks: int, rounds: int) -> str:
    engine, bare = clients(url)
    params, fields, extra = request(engine, chunks)
    sides = {
        "chatapp": lambda: chatapp_engine(engine, params),
        "bare SDK": lambda: bare_sdk(bare, engine.model, fields, extra),
    }
    for run in sides.values():  # warm both paths
        run()
    results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in sides}
    names = list(sides)
    for i in range(rounds):
        for name in names[i % 2 :] + names[: i % 2]:
            results[name].append(measured(sides[name]))
    print(f"server: zero-delay stub at {url}, {chunks} chunks per reply, same request")
    print(f"{rounds} alternating runs each; CPU: this process's (all its threads)")
    per_chunk = {}
    for name, rows in results.items():
        got = {row[2] for row in rows}
        if got != {chunks}:
            raise AssertionError(f"{name} received {sorted(got)} chunks, not {chunks}")
        per_chunk[name] = statistics.median(row[0] / chunks for row in rows) * 1e6
        wall = statistics.median(row[1] / chunks for row in rows) * 1e6
        print(f"  {name:9} CPU {per_chunk[name]:7.1f} µs/chunk   wall {wall:7.1f} µs/chunk")
    ratio = per_chunk["chatapp"] / per_chunk["bare SDK"]
    return (
        f"client CPU per chunk: chatapp {per_chunk['chatapp']:.1f} µs, bare openai SDK "
        f"{per_chunk['bare SDK']:.1f} µs (chatapp/bare {ratio:.2f})"
    )


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
    parser.add_argument("--chunks", type=int, default=2000, help="chunks per streamed reply")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--starts", type=int, default=5, help="process starts to time")
    args = parser.parse_args()
    stub = StubProcess(args.chunks)
    try:
        line = compare(stub.url, args.chunks, args.rounds)
        if args.starts:
            process_start(stub.url, args.starts)
    finally:
        stub.close()
    print(line)


if __name__ == "__main__":
    main()
