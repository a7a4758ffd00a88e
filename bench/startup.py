"""chatapp's one-shot start against the obvious plain-transformers script, on the same files.

    python bench/startup.py [--runs 5] [--tokens 8] [--app] [--transformers-layout]

Alternates, in one run, ``chatapp --model bundled --prompt Hello --max-new-tokens N`` and a
minimal script doing the same with transformers (import torch and transformers, load the
tokenizer and the model, generate N greedy tokens, print them). Like for like: the plain
script reads the very folder chatapp reads, the converted bundled model in the user cache
(its compact tokenizer.json, its config and safetensors weights), in the same environment,
so the two differ only in what each does with those files. Both run as whole processes,
timed from outside from start to exit, with bytecode caching on as on a user's machine
(PYTHONDONTWRITEBYTECODE is removed; one run of each first fills the caches). The plain
script reports its own steps; chatapp's are read from its ``CHATAPP_TIMINGS=1`` line.
``--transformers-layout`` adds, for reference only, the plain script on a copy of that
folder whose tokenizer.json is laid out as ``save_pretrained`` writes it (pretty-printed,
merges as pairs): what compacting the file buys. ``--app`` adds the full-screen app's time
to "Ready" on a pseudo-terminal. Ends with one line: ``one-shot/plain-script wall ratio
(same files): R``. Target: R <= 0.6.
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
    """A copy of ``folder`` whose tokenizer.json is laid out as ``save_pretrained`` writes
    it (indented, merges as pairs); the other files are linked. For the reference row
    only: the headline reads chatapp's own folder."""
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
    parser.add_argument(
        "--transformers-layout",
        action="store_true",
        help="also run the plain script on a pretty-printed tokenizer.json (reference only)",
    )
    args = parser.parse_args()

    from chatapp.engine.bundled import ensure_bundled_model

    # The folder chatapp itself loads (the user cache, or $CHATAPP_CACHE_DIR's, which both
    # processes inherit): the plain script reads these same files.
    cache = ensure_bundled_model()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CHATAPP_TIMINGS": "1"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    script = Path(tempfile.mkdtemp()) / "plain.py"
    script.write_text(PLAIN, encoding="utf-8")
    tokens = str(args.tokens)
    one_shot = [sys.executable, "-m", "chatapp", "--model", "bundled", "--prompt", "Hello"]
    one_shot += ["--max-new-tokens", tokens, "--do-sample", "off"]
    commands = {
        "chatapp one-shot": one_shot,
        "plain script": [sys.executable, str(script), str(cache), tokens],
    }
    if args.transformers_layout:
        pretty = str(as_saved_by_transformers(cache))
        commands["plain, pretty json"] = [sys.executable, str(script), pretty, tokens]
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
    print(
        f"{args.runs} runs each, alternating · {args.tokens} new tokens · bundled model · "
        f"both read {cache}"
    )
    for name in names:
        median = statistics.median(walls[name])
        runs = ", ".join(f"{w:.2f}" for w in walls[name])
        print(f"{name:18} median wall {median:5.2f} s  (runs: {runs})")
        keys = list(parts[name][0]) if parts[name] and parts[name][0] else []
        for key in keys:
            values = [p[key] for p in parts[name] if key in p]
            print(f"    {key:28} {statistics.median(values):5.2f} s")
    if args.app:
        app_env = {k: v for k, v in env.items() if k != "CHATAPP_TIMINGS"}
        app_ready(app_env)  # fills the caches
        readies = [app_ready(app_env) for _ in range(args.runs)]
        loaded = [
            sum(p[k] for k in p if k not in ("generate", "interpreter start + exit"))
            for p in parts["plain script"]
        ]
        print(
            f"app to Ready (80x24)  median {statistics.median(readies):5.2f} s  (runs: "
            f"{', '.join(f'{r:.2f}' for r in readies)}); the plain script had its tokenizer "
            f"and weights loaded at {statistics.median(loaded):.2f} s"
        )
    one_shot_wall = statistics.median(walls["chatapp one-shot"])
    if args.transformers_layout:
        pretty_ratio = one_shot_wall / statistics.median(walls["plain, pretty json"])
        print(f"(reference, not like for like: against the pretty-printed file {pretty_ratio:.2f})")
    ratio = one_shot_wall / statistics.median(walls["plain script"])
    print(f"one-shot/plain-script wall ratio (same files): {ratio:.2f}   target <= 0.6")


if __name__ == "__main__":
    main()
