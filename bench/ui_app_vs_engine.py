"""Part 2 of bench/ui_stream.py: the app against the engine alone, on the real model.

    python bench/ui_app_vs_engine.py [--tokens 48] [--runs 5] [--model bundled] [--quant auto]

Both sides run in a child process on a pseudo-terminal, on the same engine, values and
prompt, with no KV reuse on either side (the app starts a new chat, the engine resets),
and each is timed from its request (Enter; a line) to the reply's end on the terminal
(the app's "Done" status, drawn after the last token; the engine's end mark, written
after the last token). Alternating, the order rotated each round. Every reply is exactly
--tokens long (no EOS, raw format, a fixed seed). Ends with the ratio of the median
tokens/s (target >= 0.97).
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

from bench_common import (  # noqa: E402
    ANSI,
    TUTORIAL_PROMPT,
    PtyChild,
    disable_eos,
    tutorial_params,
)

END_MARK = "REPLY-END"


def _part2_engine(model: str, quant: str, compile: bool, tokens: int):
    """The engine both sides use, and the values: every reply is exactly ``tokens`` long
    (no EOS, raw format, a fixed seed), after one full-size warm-up reply."""
    from chatapp.engine import LocalEngine, Message
    from chatapp.engine.framework_internals import silence_libraries

    silence_libraries()
    engine = LocalEngine.load(model, quant=quant, compile=compile)
    disable_eos(engine)
    engine.chat_format = "raw"  # no dialogue stop strings either
    params = tutorial_params(max_new_tokens=tokens, seed=0)
    engine.stream_reply([Message("user", TUTORIAL_PROMPT)], params)  # warm-up
    return engine, params


def direct_child(model: str, quant: str, compile: bool, tokens: int) -> None:
    """The engine alone on the terminal: each line read is a request; the reply is
    written to the terminal piece by piece as it comes, then END_MARK."""
    from chatapp.engine import Message

    engine, params = _part2_engine(model, quant, compile, tokens)
    print("READY", flush=True)
    for _ in sys.stdin:
        engine.reset()  # the same full prefill as the app's new chat

        def show(piece: str) -> None:
            sys.stdout.write(piece)
            sys.stdout.flush()

        stats = engine.stream_reply([Message("user", TUTORIAL_PROMPT)], params, show)
        sys.stdout.write(f"\n{END_MARK} {stats.new_tokens}\n")
        sys.stdout.flush()


def app_child(model: str, quant: str, compile: bool, tokens: int) -> None:
    """The real app on the terminal, on the same engine and values."""
    from chatapp.tui.app import ChatApp

    engine, params = _part2_engine(model, quant, compile, tokens)
    ChatApp(lambda progress: engine, params).run()


class _Pair:
    """The two children on their terminals; whichever is not being timed is read too,
    so that its terminal never fills up and blocks it."""

    def __init__(self, children: dict[str, PtyChild]) -> None:
        self.children = children

    def plain(self, name: str, start: int) -> str:
        data = bytes(self.children[name].buffer[start:])
        return ANSI.sub(b"", data).decode("utf-8", "replace")

    def wait_for(self, name: str, needle: str, start: int, timeout: float) -> float:
        """The moment ``needle`` arrived in ``name``'s terminal output after ``start``."""
        import select

        deadline = time.perf_counter() + timeout
        primaries = {child.primary: child for child in self.children.values()}
        while time.perf_counter() < deadline:
            ready, _, _ = select.select(list(primaries), [], [], 0.05)
            now = time.perf_counter()
            for fd in ready:
                primaries[fd].read(0)
            if needle in self.plain(name, start):
                return now
        raise SystemExit(f"ui_stream part 2: {name} never showed {needle!r}")

    def settle(self, seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            for child in self.children.values():
                child.read(0.01)


def real_model(
    tokens: int, runs: int, model: str = "bundled", quant: str = "none", compile: bool = False
) -> float:
    """The app against the engine alone, both in a child process on a pseudo-terminal,
    both on the same engine and values with no reuse (the app starts a new chat, the
    engine resets), each timed from the request (Enter; a line) to the reply's end on the
    terminal (the app's "Done" status, drawn after the last token; the engine's end mark,
    written after the last token). Alternating, the order rotated each round."""
    data = Path(tempfile.mkdtemp(prefix="ui-stream-"))
    env = {
        **os.environ,
        "CHATAPP_CONFIG_DIR": str(data / "config"),
        "CHATAPP_DATA_DIR": str(data / "data"),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(ROOT),
    }
    spec = [model, quant, "1" if compile else "0", str(tokens)]
    me = [sys.executable, str(Path(__file__).resolve())]
    pair = _Pair(
        {
            "engine": PtyChild([*me, "--direct-child", *spec], env),
            "app": PtyChild([*me, "--app-child", *spec], env),
        }
    )
    pair.wait_for("engine", "READY", 0, 600)
    pair.wait_for("app", "Ready", 0, 600)
    pair.settle(1.0)
    rates: dict[str, list[float]] = {"engine": [], "app": []}

    def direct() -> None:
        child = pair.children["engine"]
        start = len(child.buffer)
        sent = time.perf_counter()
        child.write(b"\n")
        ended = pair.wait_for("engine", END_MARK, start, 600)
        rates["engine"].append(tokens / (ended - sent))

    def in_app() -> None:
        child = pair.children["app"]
        start = len(child.buffer)
        child.write(b"\x0e")  # Ctrl+N: a new chat, so the engine prefills it all
        pair.wait_for("app", "New chat", start, 30)
        child.write(b"\x1b[200~" + TUTORIAL_PROMPT.encode() + b"\x1b[201~")
        pair.settle(0.5)
        start = len(child.buffer)
        sent = time.perf_counter()
        child.write(b"\r")
        ended = pair.wait_for("app", f"Done · {tokens} tokens", start, 600)
        rates["app"].append(tokens / (ended - sent))
        pair.settle(0.3)

    order = [direct, in_app]
    for i in range(runs):
        for fn in order[i % 2 :] + order[: i % 2]:  # rotate the order each round
            fn()
    pair.children["app"].write(b"\x11")
    for child in pair.children.values():
        try:
            child.proc.terminate()
            child.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.proc.kill()
    a, e = statistics.median(rates["app"]), statistics.median(rates["engine"])
    print(
        f"part 2: {model} ({quant}), {tokens} tokens, {runs} runs each on a terminal "
        "(alternating, order rotated), no reuse on either side"
    )
    print(
        f"engine alone    median {e:.2f} tok/s request to end mark  "
        f"(runs: {', '.join(f'{r:.1f}' for r in rates['engine'])})"
    )
    print(
        f"in the app      median {a:.2f} tok/s Enter to 'Done' drawn  "
        f"(runs: {', '.join(f'{r:.1f}' for r in rates['app'])})"
    )
    print(f"ratio app/engine {a / e:.3f} (target >= 0.97)")
    return a / e


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--quant", default="auto")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--direct-child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--app-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    for child, run in ((args.direct_child, direct_child), (args.app_child, app_child)):
        if child:
            run(child[0], child[1], child[2] == "1", int(child[3]))
            return
    ratio = real_model(args.tokens, args.runs, args.model, args.quant, args.compile)
    print(f"app/engine tokens/s ratio: {ratio:.3f}")


if __name__ == "__main__":
    main()
