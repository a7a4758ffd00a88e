"""chatapp's one-shot start against the obvious plain-transformers script.

    python bench/startup.py [--runs 5] [--tokens 8]

Alternates, in one run, ``chatapp --model bundled --prompt Hello --max-new-tokens N`` and a
minimal script doing the same with transformers (import torch and transformers, load the
tokenizer and the model from the converted bundled folder, generate N greedy tokens,
print them). Both run as whole processes, timed from outside from start to exit, with
bytecode caching on as on a user's machine (PYTHONDONTWRITEBYTECODE is removed; one run
of each first fills the caches). The plain script reads the model folder as transformers
saves it; chatapp's cache keeps tokenizer.json compact (a start-up measure of its own), so
the script also runs once more per round on that, reported apart, not in the ratio. The plain script reports its own steps; chatapp's are
read from its ``CHATAPP_TIMINGS=1`` line. Prints the medians and the breakdown, then the
app's time to "Ready" (``python bench/startup.py --app`` adds it: the full-screen app on a
pseudo-terminal, from start to the status line's Ready), and ends with one line:
``one-shot/plain-script wall ratio: R``. Target: R <= 0.6.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

PLAIN = r"""
import json, sys, time
marks = {"start": time.perf_counter()}
import torch
marks["torch import"] = time.perf_counter()
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer
marks["transformers import"] = time.perf_counter()
folder = sys.argv[1]
tokenizer = AutoTokenizer.from_pretrained(folder)
marks["tokenizer"] = time.perf_counter()
model = AutoModelForCausalLM.from_pretrained(folder)
marks["from_pretrained"] = time.perf_counter()
ids = tokenizer("Hello", return_tensors="pt")
out = model.generate(**ids, max_new_tokens=int(sys.argv[2]), do_sample=False)
print(tokenizer.decode(out[0][ids.input_ids.shape[1]:], skip_special_tokens=True), flush=True)
marks["generate"] = time.perf_counter()
print("TIMINGS " + json.dumps(marks), file=sys.stderr, flush=True)
"""


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return wall, proc.stderr


def steps(stderr: str, wall: float) -> dict[str, float]:
    """The step durations from a TIMINGS line, with 'exit' = the rest of the wall time."""
    for line in stderr.splitlines():
        if line.startswith("TIMINGS "):
            marks = json.loads(line.removeprefix("TIMINGS "))
            names = list(marks)
            out = {n: marks[n] - marks[p] for p, n in zip(names, names[1:], strict=False)}
            out["interpreter start + exit"] = wall - (marks[names[-1]] - marks[names[0]])
            return out
    return {}


def as_saved_by_transformers(folder: Path) -> Path:
    """The converted folder as ``save_pretrained`` writes it: chatapp's cache keeps a
    compact tokenizer.json (merges as strings, no indentation) that parses ~0.4 s faster
    and is one of its own start-up measures, so the plain script reads the usual file.
    Other files are linked."""
    plain = Path(tempfile.mkdtemp()) / "model"
    plain.mkdir()
    for item in folder.iterdir():
        if item.name != "tokenizer.json":
            (plain / item.name).symlink_to(item)
    data = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    merges = data["model"]["merges"]
    if merges and isinstance(merges[0], str):
        data["model"]["merges"] = [m.split(" ") for m in merges]
    text = json.dumps(data, indent=2, ensure_ascii=False)
    (plain / "tokenizer.json").write_text(text, encoding="utf-8")
    return plain


READY = re.compile(rb"Ready")


def app_ready(env: dict[str, str], timeout: float = 120) -> float:
    """Seconds from starting the full-screen app (80x24, a pseudo-terminal) to "Ready" on
    its status line; then Ctrl+Q."""
    from bench_common import ANSI, PtyChild

    cmd = [sys.executable, "-m", "chatapp", "--model", "bundled"]
    start = time.perf_counter()
    child = PtyChild(cmd, env, rows=24, cols=80)
    ready_at = None
    while time.perf_counter() - start < timeout:
        child.read(0.02)
        if READY.search(ANSI.sub(b"", bytes(child.buffer))):
            ready_at = time.perf_counter() - start
            break
    child.write(b"\x11")  # Ctrl+Q
    try:
        child.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        child.proc.kill()
    if ready_at is None:
        raise SystemExit("the app did not show Ready")
    return ready_at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=8)
    parser.add_argument("--app", action="store_true", help="also time the app to Ready")
    args = parser.parse_args()

    from chatapp.engine.bundled import ensure_bundled_model

    cache = ensure_bundled_model()
    folder = str(as_saved_by_transformers(cache))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CHATAPP_TIMINGS": "1"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    script = Path(tempfile.mkdtemp()) / "plain.py"
    script.write_text(PLAIN, encoding="utf-8")
    tokens = str(args.tokens)
    commands = {
        "chatapp one-shot": [
            sys.executable,
            "-m",
            "chatapp",
            "--model",
            "bundled",
            "--prompt",
            "Hello",
            "--max-new-tokens",
            tokens,
            "--do-sample",
            "off",
        ],
        "plain script": [sys.executable, str(script), folder, tokens],
        # Not in the ratio: the plain script on chatapp's compact tokenizer.json.
        "plain, compact": [sys.executable, str(script), str(cache), tokens],
    }
    for cmd in commands.values():  # fill the bytecode and page caches
        run(cmd, env)
    walls: dict[str, list[float]] = {name: [] for name in commands}
    parts: dict[str, list[dict[str, float]]] = {name: [] for name in commands}
    names = list(commands)
    for i in range(args.runs):
        for name in names[i % 2 :] + names[: i % 2]:  # alternate, rotating the order
            wall, err = run(commands[name], env)
            walls[name].append(wall)
            parts[name].append(steps(err, wall))
    print(f"{args.runs} runs each, alternating · {args.tokens} new tokens · bundled model")
    for name in names:
        median = statistics.median(walls[name])
        print(
            f"{name:17} median wall {median:5.2f} s  (runs: {', '.join(f'{w:.2f}' for w in walls[name])})"
        )
        keys = [k for k in parts[name][0]] if parts[name] and parts[name][0] else []
        for key in keys:
            values = [p[key] for p in parts[name] if key in p]
            print(f"    {key:28} {statistics.median(values):5.2f} s")
    if args.app:
        app_env = {k: v for k, v in env.items() if k != "CHATAPP_TIMINGS"}
        app_ready(app_env)  # fills the caches
        readies = [app_ready(app_env) for _ in range(args.runs)]
        loaded = [
            sum(p[k] for k in p if k not in ("generate", "interpreter start + exit"))
            for p in parts[names[1]]
        ]
        print(
            f"app to Ready (80x24)  median {statistics.median(readies):5.2f} s  (runs: "
            f"{', '.join(f'{r:.2f}' for r in readies)}); the plain script had its tokenizer "
            f"and weights loaded at {statistics.median(loaded):.2f} s"
        )
    compact = statistics.median(walls[names[0]]) / statistics.median(walls[names[2]])
    print(f"(one-shot against the plain script on chatapp's compact tokenizer.json: {compact:.2f})")
    ratio = statistics.median(walls[names[0]]) / statistics.median(walls[names[1]])
    print(f"one-shot/plain-script wall ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
