"""The chat history on a real SQLite file: migrations, concurrency, damaged and newer
files, a reply killed mid-stream, export and import."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chatapp import paths
from chatapp.cli import main as cli_main
from chatapp.conversation import ChatSession, Conversation, load_export
from chatapp.engine.types import ReplyStats
from chatapp.params import SamplingParams
from chatapp.store import ChatStore
from chatapp.store_migrations import MIGRATIONS, SCHEMA_VERSION

ROOT = Path(__file__).resolve().parent.parent


def _stats(text: str, reason: str = "eos", seed: int | None = 11) -> ReplyStats:
    ids = list(range(100, 100 + len(text.split())))
    return ReplyStats(
        prompt_tokens=12,
        new_tokens=len(ids),
        time_to_first_token=0.25,
        elapsed=1.5,
        finish_reason=reason,  # type: ignore[arg-type]
        text=text,
        token_ids=[*ids, 1],
        reply_ids=ids,
        window=4096,
        max_new_tokens=256,
        seed=seed,
    )


def _chat_with_versions(store: ChatStore) -> ChatSession:
    session = ChatSession(store, system="Be brief.")
    first = session.add_user("What does temperature do?")
    version = session.start_reply(first, SamplingParams(temperature=0.7), "gemma", "local")
    session.finish_reply(version, _stats("It flattens or sharpens the distribution."))
    second = session.add_user("And top_p 溫度？")
    v1 = session.start_reply(second, SamplingParams(top_p=0.5), "gemma", "local")
    session.finish_reply(v1, _stats("Nucleus sampling keeps", "stopped"))
    v2 = session.start_reply(second, SamplingParams(top_p=0.9, seed=3), "gemma", "local")
    session.finish_reply(v2, _stats("It keeps the smallest set of likely tokens.", seed=3))
    session.show_version(second, 0)
    return session


def test_a_chat_reopens_with_every_version_its_parameters_and_which_one_is_shown(tmp_path):
    path = tmp_path / "chats.db"
    session = _chat_with_versions(ChatStore(path))
    reopened = ChatSession(ChatStore(path))
    assert reopened.open(session.chat.id)
    chat = reopened.chat
    assert chat.system == "Be brief." and chat.title == "What does temperature do?"
    assert [t.user for t in chat.turns] == ["What does temperature do?", "And top_p 溫度？"]
    second = chat.turns[1]
    assert second.shown == 0 and len(second.versions) == 2
    assert [v.status for v in second.versions] == ["stopped", "done"]
    assert second.versions[0].params.top_p == 0.5 and second.versions[1].params.seed == 3
    assert second.versions[1].seed == 3 and chat.turns[0].reply.seed == 11
    stats = second.versions[1].stats
    assert stats.token_ids[-1] == 1 and stats.reply_ids == stats.token_ids[:-1]
    assert stats.time_to_first_token == 0.25 and stats.window == 4096
    # The engine's history uses the shown version, with its ids.
    messages = chat.messages()
    assert messages[-1].content == "Nucleus sampling keeps"
    assert messages[-1].token_ids == tuple(second.versions[0].stats.reply_ids)


def _build_version_1(path: Path) -> None:
    db = sqlite3.connect(path)
    for statement in MIGRATIONS[0]:
        db.execute(statement)
    db.execute("PRAGMA user_version = 1")
    db.execute("INSERT INTO chats VALUES (1, 'old chat', 100.0, 200.0)")
    db.execute("INSERT INTO messages VALUES (1, 1, 0, 'user', 'hello there', 100.0)")
    db.execute("INSERT INTO messages VALUES (2, 1, 1, 'assistant', 'general kenobi', 150.0)")
    db.commit()
    db.close()


def test_a_version_1_file_is_upgraded_and_keeps_its_messages(tmp_path):
    path = tmp_path / "chats.db"
    _build_version_1(path)
    store = ChatStore(path)
    assert store.problem is None
    version = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0]
    assert version == SCHEMA_VERSION > 1
    session = ChatSession(store)
    assert session.open(1)
    turn = session.chat.turns[0]
    assert turn.user == "hello there"
    assert [v.text for v in turn.versions] == ["general kenobi"] and turn.shown == 0
    assert [c.id for c in store.search("kenobi")] == [1]
    assert [c.id for c in store.search("hello")] == [1]


def test_search_finds_words_inside_chinese_text_and_deleting_a_chat_empties_its_index(tmp_path):
    store = ChatStore(tmp_path / "chats.db")
    session = _chat_with_versions(store)
    other = ChatSession(store)
    other.add_user("Something else entirely")
    assert [c.id for c in store.search("溫度")] == [session.chat.id]  # two characters
    assert [c.id for c in store.search("smallest set")] == [session.chat.id]  # any version
    found = store.search("flattens")
    assert found[0].snippet.startswith("It flattens")
    assert store.search("nothing like this") == []
    store.delete_chat(session.chat.id)
    assert store.search("flattens") == [] and store.search("溫度") == []
    assert store._read("SELECT count(*) FROM reply_text")[0][0] == 0
    assert [c.title for c in store.list_chats()] == ["Something else entirely"]


WRITER_SCRIPT = """
import sys, time
from chatapp.store import ChatStore
from chatapp.conversation import ChatSession
from chatapp.params import SamplingParams
print("ready", flush=True)
sys.stdin.readline()  # both open the new file at the same moment
store = ChatStore()
assert store.problem is None, store.problem
name = sys.argv[1]
for i in range(25):
    session = ChatSession(store)
    turn = session.add_user(f"{name} message {i}")
    version = session.start_reply(turn, SamplingParams(), "m", "e")
    for j in range(4):
        session.stream_text(version, f"{name} reply {i} part {j}", force=True)
assert store.persistent, store.problem
print("done", flush=True)
"""


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    env = {**os.environ, "CHATAPP_DATA_DIR": str(tmp_path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER_SCRIPT, name],
            env=env,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("alpha", "beta")
    ]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready"
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    store = ChatStore(tmp_path / "chats.db")
    titles = sorted(c.title for c in store.list_chats())
    assert len(titles) == 50
    assert titles == sorted(f"{n} message {i}" for n in ("alpha", "beta") for i in range(25))
    assert len(store.search("part 3")) == 50


def test_a_damaged_file_is_named_left_untouched_and_chats_go_on_in_memory(tmp_path):
    path = tmp_path / "chats.db"
    garbage = b"this is not a database, it is the user's file\n" * 200
    path.write_bytes(garbage)
    store = ChatStore(path)
    assert store.problem is not None and str(path) in store.problem
    assert not store.persistent
    session = ChatSession(store)
    turn = session.add_user("still chatting")
    session.finish_reply(session.start_reply(turn, SamplingParams(), "m", "e"), _stats("yes"))
    assert [c.title for c in store.list_chats()] == ["still chatting"]
    assert path.read_bytes() == garbage
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chats.db"]


def test_a_file_from_a_newer_chatapp_opens_read_only(tmp_path):
    path = tmp_path / "chats.db"
    _chat_with_versions(ChatStore(path))
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    before = path.read_bytes()
    store = ChatStore(path)
    assert store.read_only and "newer chatapp" in store.problem
    assert [c.title for c in store.list_chats()] == ["What does temperature do?"]
    session = ChatSession(store)
    assert session.open(store.last_chat_id()) and len(session.chat.turns) == 2
    session.new_chat()
    session.add_user("a new chat this run")  # kept in memory, not written
    assert path.read_bytes() == before


KILL_SCRIPT = """
import asyncio, sys
from chatapp.engine.fake import FakeTokenSource
from chatapp.tui.app import ChatApp

async def main():
    source = FakeTokenSource([f"piece{i} " for i in range(40)], 20, pause_after=12)
    app = ChatApp(lambda progress: source)
    async with app.run_test(size=(100, 30)) as pilot:
        while app.engine is None:
            await asyncio.sleep(0.02)
        box = app.query_one("#prompt")
        box.insert("tell me a long story")
        await pilot.press("enter")
        while not source.paused.is_set():
            await asyncio.sleep(0.02)
        await asyncio.sleep(1.6)  # more than one save interval
        print("STREAMING", flush=True)
        await asyncio.sleep(600)

asyncio.run(main())
"""


def test_a_reply_killed_mid_stream_keeps_its_text_and_shows_as_interrupted(tmp_path):
    env = {**os.environ, "CHATAPP_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.strip() == "STREAMING"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    store = ChatStore(tmp_path / "data" / "chats.db")
    session = ChatSession(store)
    assert session.open(store.last_chat_id())
    reply = session.chat.turns[0].reply
    assert reply.status == "interrupted"
    assert reply.text == "".join(f"piece{i} " for i in range(12))
    assert "interrupted" in reply.meta()


def test_export_and_import_round_trip_through_the_command_line(tmp_path, capsys):
    session = _chat_with_versions(ChatStore())
    chat_id = session.chat.id
    out = tmp_path / "chat.json"
    assert cli_main(["export", str(chat_id), "--format", "json", "-o", str(out)]) == 0
    exported = json.loads(out.read_text())
    assert exported["turns"][1]["versions"][1]["params"]["top_p"] == 0.9
    assert exported["turns"][1]["versions"][1]["seed"] == 3
    assert exported["turns"][1]["versions"][0]["stats"]["new_tokens"] == 3
    assert exported["turns"][1]["versions"][0]["model"] == "gemma"
    capsys.readouterr()
    assert cli_main(["import", str(out)]) == 0
    new_id = int(capsys.readouterr().out.split("\t")[0])
    assert new_id != chat_id
    again = tmp_path / "again.json"
    assert cli_main(["export", str(new_id), "--format", "json", "-o", str(again)]) == 0
    assert json.loads(again.read_text()) == exported
    assert cli_main(["chats"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert sorted(line.split("\t")[0] for line in listing) == sorted([str(new_id), str(chat_id)])
    assert cli_main(["export", str(chat_id), "--format", "md"]) == 0
    markdown = capsys.readouterr().out
    assert "## Model (version 1 of 2)" in markdown and "Nucleus sampling keeps" in markdown


def test_import_refuses_a_file_that_is_not_an_export(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"hello": 1}')
    assert cli_main(["import", str(bad)]) == 1
    assert "not a chatapp chat export" in capsys.readouterr().err
    with pytest.raises(ValueError):
        load_export("not json")
    assert cli_main(["export", "999"]) == 1


def test_the_conversation_model_and_store_import_no_textual():
    code = (
        "import sys, chatapp.conversation, chatapp.store, chatapp.chats_cli; "
        "print(any(m.startswith(('textual', 'torch')) for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "False", out.stderr


def test_chat_json_carries_every_version():
    chat = Conversation.from_json(_chat_with_versions(ChatStore()).chat.to_json())
    assert [len(t.versions) for t in chat.turns] == [1, 2]
    assert chat.turns[1].versions[0].stats.finish_reason == "stopped"
    assert paths.history_file().exists()
    assert time.time() - chat.created < 60
