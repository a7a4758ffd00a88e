"""``chatapp chats``, ``chatapp export ID`` and ``chatapp import FILE``: the history, for
scripts (no UI, no model)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from chatapp import paths
from chatapp.conversation import ChatSession, load_export
from chatapp.store import ChatStore

COMMANDS = ("chats", "export", "import")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatapp", description="The saved chats.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("chats", help="list the saved chats: id, last active, title (tab-separated)")
    export = sub.add_parser("export", help="write one chat as Markdown or JSON")
    export.add_argument("id", type=int, help="the chat's id (see 'chatapp chats')")
    export.add_argument("--format", choices=("md", "json"), default="md")
    export.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")
    imported = sub.add_parser("import", help="add a chat from a JSON export")
    imported.add_argument("file", help="a file written by 'chatapp export ID --format json'")
    return parser


def _fail(message: str) -> int:
    print(f"chatapp: error: {message}", file=sys.stderr)
    return 1


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    store = ChatStore()
    if store.problem:
        print(f"chatapp: note: {store.problem}", file=sys.stderr)
    session = ChatSession(store)
    if args.command == "chats":
        for chat in store.list_chats(limit=1_000_000):
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(chat.updated))
            print(f"{chat.id}\t{when}\t{chat.messages}\t{chat.title}")
        return 0
    if args.command == "export":
        if not session.open(args.id):
            return _fail(f"no chat with id {args.id} in {store.path}")
        chat = session.chat
        if args.format == "json":
            text = json.dumps(chat.to_json(), ensure_ascii=False, indent=2) + "\n"
        else:
            text = chat.to_markdown()
        if args.output:
            paths.atomic_write_text(Path(args.output), text)
        else:
            sys.stdout.write(text)
        return 0
    try:
        chat = load_export(Path(args.file).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        return _fail(f"{args.file} could not be imported: {exc}")
    if store.read_only or not store.persistent:
        return _fail(f"the chat history {store.path} cannot be written; nothing was imported")
    chat_id = session.import_chat(chat)
    print(f"{chat_id}\t{chat.title}")
    return 0
