"""`chatapp chats | head -1` and `chatapp export ID | head`: a reader that stops early
ends the command quietly (no BrokenPipeError traceback, exit status 0)."""

from __future__ import annotations

import os
import subprocess
import sys

from chatapp.conversation import ChatSession
from chatapp.params import SamplingParams
from chatapp.store import ChatStore
from tests.test_store import _stats


def _piped_to_head(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``chatapp ARGS | head -1``, with pipefail: the command's own exit status."""
    command = " ".join([sys.executable, "-m", "chatapp", *args]) + " | head -1"
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_a_reader_that_stops_early_ends_the_command_quietly(tmp_path):
    env = {
        **os.environ,
        "CHATAPP_CONFIG_DIR": str(tmp_path / "c"),
        "CHATAPP_DATA_DIR": str(tmp_path / "d"),
    }
    os.environ.update({k: env[k] for k in ("CHATAPP_CONFIG_DIR", "CHATAPP_DATA_DIR")})
    session = ChatSession(ChatStore())
    for i in range(1200):  # a listing well over a pipe's 64 KB
        session.new_chat()
        turn = session.add_user(f"question {i} " + "x" * 200)
        session.finish_reply(
            session.start_reply(turn, SamplingParams(), "m", "e"), _stats("a" * 300)
        )
    long_chat = session.chat.id
    for i in range(300):
        turn = session.add_user(f"more {i} " + "y" * 300)
        session.finish_reply(
            session.start_reply(turn, SamplingParams(), "m", "e"), _stats("b" * 300)
        )
    for args in (["chats"], ["export", str(long_chat)]):
        done = _piped_to_head(args, env)
        assert done.returncode == 0, (args, done.stderr)
        assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr
        assert done.stdout.strip()
