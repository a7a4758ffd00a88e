"""Quitting the real app (``python -m chatapp`` on a pseudo-terminal, the bundled model):
Ctrl+Q, SIGINT and SIGTERM, idle or mid-reply, end the process promptly, restore the
terminal, and leave the history whole, a reply cut short kept and marked stopped."""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from bench_common import PtyChild  # noqa: E402

pytestmark = pytest.mark.model

LEAVE_ALT_SCREEN = b"\x1b[?1049l"
EXPECTED_CODE = {"ctrl+q": 0, "sigint": 130, "sigterm": 143}
QUIT_LIMIT_S = 2.0  # the issue asks for 1 s; bench/ui_stream.py --quit measures it


def _wait_for(child: PtyChild, needle: bytes, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while needle not in child.buffer:
        if time.monotonic() > deadline or child.proc.poll() is not None:
            raise AssertionError(f"never saw {needle!r}: {bytes(child.buffer[-600:])!r}")
        child.read(0.2)


@pytest.mark.parametrize("how", ["ctrl+q", "sigint", "sigterm"])
@pytest.mark.parametrize("when", ["idle", "mid-reply"])
def test_quit_ends_the_process_at_once_and_keeps_the_history_whole(tmp_path, how, when):
    env = {
        **os.environ,
        "CHATAPP_CONFIG_DIR": str(tmp_path / "config"),
        "CHATAPP_DATA_DIR": str(tmp_path / "data"),
    }
    args = [sys.executable, "-m", "chatapp", "--model", "bundled", "--quant", "none"]
    tokens = "8" if when == "idle" else "400"
    args += ["--raw", "--max-new-tokens", tokens, "--seed", "5"]
    child = PtyChild(args, env, rows=24, cols=80)
    try:
        _wait_for(child, b"Ready", 120)
        child.write(b"Once upon a time")
        child.read(0.3)
        child.write(b"\r")
        _wait_for(child, b"Generating", 30)
        if when == "idle":
            _wait_for(child, b"Done", 120)
        else:
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                child.read(0.1)  # a few seconds of streaming
        drawn = len(child.buffer)
        began = time.monotonic()
        if how == "ctrl+q":
            child.write(b"\x11")
        else:
            child.proc.send_signal(signal.SIGINT if how == "sigint" else signal.SIGTERM)
        while child.proc.poll() is None and time.monotonic() - began < 30:
            child.read(0.05)
        took = time.monotonic() - began
        code = child.proc.wait(timeout=5)
        while child.read(0.1):
            pass
    finally:
        if child.proc.poll() is None:
            child.proc.kill()
    assert code == EXPECTED_CODE[how], bytes(child.buffer[-800:])
    assert took <= QUIT_LIMIT_S, f"{how} {when}: the process took {took:.2f} s to end"
    assert LEAVE_ALT_SCREEN in child.buffer[drawn:], "the terminal was not restored"

    with sqlite3.connect(tmp_path / "data" / "chats.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = db.execute(
            "SELECT m.role, m.text, v.status, v.text FROM messages m "
            "LEFT JOIN versions v ON v.message_id = m.id ORDER BY m.position"
        ).fetchall()
    assert rows[0][:2] == ("user", "Once upon a time")
    reply_status, reply_text = rows[1][2], rows[1][3]
    assert reply_text.strip(), "the streamed text was kept"
    assert reply_status == ("stopped" if when == "mid-reply" else "done"), rows[1]
