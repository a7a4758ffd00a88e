"""The app itself on a GPU box, at 80x24 in tmux, in the tutorial's 8-bit mode: it streams,
stops and quits.

    python bench/gpu_app.py [--quant 8bit] [--folder /tmp/gemma-2b-random] [--compile]
    python bench/gpu_app.py --tiny --quant none   # the same steps on a CPU, a tiny model

No weights can be fetched on the GPU machine: a gemma-2b-shaped model with random weights
is saved once (with the bundled tokenizer) and opened with ``chatapp --model FOLDER``. The
app runs in a detached tmux session of 80x24 (``tmux`` must be installed); the script
types a message, waits for the reply to stream, presses Esc to stop it, checks the pane
says so, sends a second message, and quits with Ctrl+Q, timing each step from outside.
Random weights give random text: the steps, not the words, are what is checked. Prints
the pane at each step and a last line ``gpu app: streams OK, stops OK, quits OK in S s``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_common import random_model_folder  # noqa: E402

SESSION = "chatapp-gpu-app"
LOADING_WORDS = ("Loading", "Compil", "Warming", "Quantiz", "load")


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=False).stdout


def pane() -> str:
    return tmux("capture-pane", "-p", "-t", SESSION)


def wait_for(predicate, timeout: float, what: str, seen: list[str] | None = None) -> float:
    """Seconds until the pane satisfies ``predicate``; ``seen`` collects the distinct
    loading-view lines shown meanwhile (what the user watches during a compile)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        text = pane()
        if seen is not None:
            for line in text.splitlines():
                line = line.strip(" │┃║|")
                if any(w in line for w in LOADING_WORDS) and line not in seen:
                    seen.append(line)
        if predicate(text):
            return time.monotonic() - start
        time.sleep(0.2)
    print(pane())
    raise SystemExit(f"gpu app: timed out after {timeout:.0f} s waiting for {what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quant", default="8bit")
    parser.add_argument("--folder", default="/tmp/gemma-2b-random")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--load-timeout", type=float, default=600)
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        raise SystemExit("gpu app: tmux is not installed (apt install tmux)")
    folder = random_model_folder(args.folder + ("-tiny" if args.tiny else ""), tiny=args.tiny)
    env_dir = Path("/tmp/chatapp-gpu-app")
    env = {
        "CHATAPP_CONFIG_DIR": str(env_dir / "config"),
        "CHATAPP_DATA_DIR": str(env_dir / "data"),
        "HF_HUB_OFFLINE": "1",
        "TERM": "xterm-256color",
    }
    command = " ".join(
        [
            *(f"{k}={shlex.quote(v)}" for k, v in env.items()),
            shlex.quote(sys.executable),
            "-m chatapp --model",
            shlex.quote(str(folder)),
            "--quant",
            args.quant,
            "--max-new-tokens 200 --chat-format dialogue",
            "--compile" if args.compile else "",
            "; echo chatapp-exited-$?; sleep 30",
        ]
    )
    tmux("kill-session", "-t", SESSION)
    start = time.monotonic()
    tmux("new-session", "-d", "-s", SESSION, "-x", "80", "-y", "24", "-c", str(ROOT), command)
    seen: list[str] = []
    loaded = wait_for(lambda t: "Ready" in t or "ready" in t, args.load_timeout, "Ready", seen)
    print("--- the loading view showed, in order:\n  " + "\n  ".join(seen))
    print(f"--- loaded in {loaded:.1f} s (since start {time.monotonic() - start:.1f} s)\n{pane()}")
    tmux("send-keys", "-t", SESSION, "Tell me about the sea.", "Enter")
    streaming = wait_for(lambda t: "Generating" in t or "tok/s" in t, 60, "the reply to stream")
    time.sleep(2.0)
    print(f"--- streaming after {streaming:.2f} s\n{pane()}")
    tmux("send-keys", "-t", SESSION, "Escape")
    stopped = wait_for(lambda t: "stopped" in t.lower(), 10, "the stop")
    print(f"--- stopped {stopped:.2f} s after Esc\n{pane()}")
    tmux("send-keys", "-t", SESSION, "And the mountains?", "Enter")
    wait_for(lambda t: "Generating" in t or "tok/s" in t, 60, "the second reply")
    time.sleep(1.0)
    quit_at = time.monotonic()
    tmux("send-keys", "-t", SESSION, "C-q")
    wait_for(lambda t: "chatapp-exited-" in t, 30, "the app to quit")
    quit_seconds = time.monotonic() - quit_at
    print(f"--- quit {quit_seconds:.2f} s after Ctrl+Q (mid-reply)\n{pane()}")
    code = pane().split("chatapp-exited-")[1].split()[0]
    tmux("kill-session", "-t", SESSION)
    if code != "0":
        raise SystemExit(f"gpu app: the app exited with {code}")
    print(f"gpu app: streams OK, stops OK, quits OK in {quit_seconds:.2f} s ({args.quant})")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
