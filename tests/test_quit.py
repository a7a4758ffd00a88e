"""Quitting the app (the ``chatapp`` command on a pseudo-terminal): Ctrl+Q, SIGINT and
SIGTERM, idle or mid-reply, end the process promptly, restore the terminal, and leave the
history whole, a reply cut short kept and marked stopped. Mid-reply, the real bundled model
generates for Ctrl+Q (torch at work when the quit comes); idle, and for the signals
mid-reply (the same path out of the app as Ctrl+Q's), the same command runs with the fake
engine (tests/fake_chatapp.py): starting the real model costs seconds."""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from bench_common import QUIT_EXIT_CODES, quit_the_app  # noqa: E402

QUIT_LIMIT_S = 2.0  # the issue asks for 1 s, which bench/quit.py measures; here, room for a busy CI
FAKE_CHATAPP = [sys.executable, str(Path(__file__).resolve().parent / "fake_chatapp.py")]


CASES = [
    *[("idle", how) for how in ("ctrl+q", "sigint", "sigterm")],
    pytest.param("mid-reply", "ctrl+q", marks=pytest.mark.model, id="mid-reply-real-ctrl+q"),
    ("mid-reply", "sigint"),
    ("mid-reply", "sigterm"),
]


@pytest.mark.parametrize(("when", "how"), CASES)
def test_quit_ends_the_process_at_once_and_keeps_the_history_whole(request, tmp_path, how, when):
    real = when == "mid-reply" and how == "ctrl+q"
    if real:
        request.getfixturevalue("bundled_folder")  # converted before the app's clock starts
    env = {
        **os.environ,
        "CHATAPP_CONFIG_DIR": str(tmp_path / "config"),
        "CHATAPP_DATA_DIR": str(tmp_path / "data"),
        "FAKE_CHATAPP_RATE": "20",  # a reply still streaming when the quit comes
    }
    result = quit_the_app(how, when, env, None if real else FAKE_CHATAPP)
    assert result["code"] == QUIT_EXIT_CODES[how], result["tail"]
    took = result["seconds"]
    assert took <= QUIT_LIMIT_S, f"{how} {when}: the process took {took:.2f} s to end"
    assert result["restored"], "the terminal was not restored"

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
