"""The client alone, in a fresh virtual environment: `pip install .` (no extras), then
`chatapp --help`, a reply from a stub server on loopback, and the one line a local model
gets without `[local]`. Prints what it saw and the install's time and package count.

    python bench/client_alone.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.openai_stub import StubServer  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        start = time.perf_counter()
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", str(ROOT)],
            check=True,
            stderr=subprocess.DEVNULL,
        )
        took = time.perf_counter() - start
        listed = subprocess.run(
            [str(venv / "bin" / "pip"), "list", "--format=freeze"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        local = [p for p in listed if p.split("==")[0].lower() in ("torch", "transformers")]
        print(
            f"pip install . took {took:.1f} s: {len(listed)} packages, local ones: {local or 'none'}"
        )
        chatapp = str(venv / "bin" / "chatapp")
        env = {**os.environ, "CHATAPP_CONFIG_DIR": f"{tmp}/c", "CHATAPP_DATA_DIR": f"{tmp}/d"}
        helped = subprocess.run([chatapp, "--help"], capture_output=True, text=True, env=env)
        print(f"chatapp --help: exit {helped.returncode}, {len(helped.stdout.splitlines())} lines")
        with StubServer(["Hello", " from", " the stub."]) as stub:
            reply = subprocess.run(
                [chatapp, "--server", stub.url, "--prompt", "hi"],
                capture_output=True,
                text=True,
                env=env,
            )
        print(f"reply from a stub server: exit {reply.returncode}, {reply.stdout.strip()!r}")
        local_run = subprocess.run(
            [chatapp, "--prompt", "hi"], capture_output=True, text=True, env=env
        )
        print(
            f"a local model without [local]: exit {local_run.returncode}, {local_run.stderr.strip()}"
        )


if __name__ == "__main__":
    main()
