"""A hostile or broken file given to `chatapp import` is refused whole, with one line,
and nothing is imported: a huge string, a million versions, deeply nested JSON, an
export without its turns, a file over the size any export has (refused unread)."""

from __future__ import annotations

import json

import pytest

from chatapp import conversation
from chatapp.cli import main as cli_main
from chatapp.store import ChatStore

HEAD = '{"format": "chatapp-chat", "version": 1, "title": "t", '


def _export(**fields) -> str:
    data = {"format": "chatapp-chat", "version": 1, "title": "t", **fields}
    return json.dumps(data)


@pytest.mark.parametrize(
    "name,text,said",
    [
        ("huge-string", _export(turns=[{"user": "x" * 5_000_000, "versions": []}]), "characters"),
        (
            "million-versions",
            HEAD + '"turns": [{"user": "u", "versions": [' + ",".join(["{}"] * 1_000_000) + "]}]}",
            "reply versions",
        ),
        (
            "deep-nesting",
            HEAD + '"turns": ' + "[" * 100_000 + "]" * 100_000 + "}",
            "nested too deeply",
        ),
        ("no-turns", _export(), "no list of turns"),
        ("turn-not-a-turn", _export(turns=["just text"]), "not a chat export's turn"),
    ],
)
def test_a_hostile_file_is_refused_whole(tmp_path, capsys, name, text, said):
    path = tmp_path / f"{name}.json"
    path.write_text(text, encoding="utf-8")
    before = len(ChatStore().list_chats())
    assert cli_main(["import", str(path)]) == 1
    err = capsys.readouterr().err
    assert said in err and "nothing was imported" in err and len(err.strip().splitlines()) == 1
    assert len(ChatStore().list_chats()) == before


def test_a_file_larger_than_any_export_is_refused_unread(tmp_path, capsys, monkeypatch):
    path = tmp_path / "big.json"
    path.write_text(_export(turns=[]) + " " * 2048, encoding="utf-8")
    monkeypatch.setattr(conversation, "MAX_IMPORT_BYTES", 1024)
    import chatapp.chats_cli  # noqa: F401 - reads the limit when it runs

    reads = []
    monkeypatch.setattr(
        type(path), "read_text", lambda self, *a, **k: reads.append(self) or "", raising=True
    )
    assert cli_main(["import", str(path)]) == 1
    assert "more than a chat export holds" in capsys.readouterr().err
    assert reads == []


def test_an_ordinary_export_still_imports(tmp_path, capsys):
    path = tmp_path / "fine.json"
    path.write_text(_export(turns=[{"user": "Hi", "versions": [{"text": "Hello."}]}]))
    assert cli_main(["import", str(path)]) == 0
    assert "\tt" in capsys.readouterr().out
