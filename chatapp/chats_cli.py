"""``chatapp chats``, ``chatapp export ID`` and ``chatapp import FILE``: the history, for
scripts (no UI, no model).

The parsers are added to the ``chatapp`` command's own (``add_commands``), so that
``chatapp --help`` lists them; the history modules are imported only when one runs, so
the app's start does not pay for them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

COMMANDS = {
    "chats": "list the saved chats (id, last active, messages, title; tab-separated)",
    "export": "write one saved chat as Markdown or JSON",
    "import": "add a chat from a JSON export, as a new chat",
}


def add_commands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    """Add the history commands to ``parser`` as subcommands (``args.command`` names one);
    returns the subcommands, for others to join."""
    sub = parser.add_subparsers(
        dest="command",
        metavar="COMMAND",
        prog=parser.prog,  # not the parser's usage text, which may span lines
        title="commands (chats, export and import work on the saved chats and load no model)",
    )
    chats = sub.add_parser("chats", help=COMMANDS["chats"], description=COMMANDS["chats"])
    chats.add_argument(
        "query",
        nargs="*",
        help="only the chats whose messages or replies hold every word (as Ctrl+O "
        "searches); a fifth column shows the matching text",
    )
    export = sub.add_parser("export", help=COMMANDS["export"], description=COMMANDS["export"])
    export.add_argument("id", type=int, help="the chat's id (see 'chatapp chats')")
    export.add_argument("--format", choices=("md", "json"), default="md")
    export.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")
    imported = sub.add_parser("import", help=COMMANDS["import"], description=COMMANDS["import"])
    imported.add_argument("file", help="a file written by 'chatapp export ID --format json'")
    return sub


def _fail(message: str) -> int:
    print(f"chatapp: error: {message}", file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    """Run the history command that ``args`` names; returns the exit status."""
    from chatapp import paths
    from chatapp.conversation import MAX_IMPORT_BYTES, ChatSession, load_export
    from chatapp.store import ChatStore

    store = ChatStore()
    if store.problem:
        print(f"chatapp: note: {store.problem}", file=sys.stderr)
    session = ChatSession(store)
    if args.command == "chats":
        query = " ".join(args.query)
        found = store.search(query, limit=1_000_000) if query else None
        for chat in store.list_chats(limit=1_000_000) if found is None else found:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(chat.updated))
            line = f"{chat.id}\t{when}\t{chat.messages}\t{chat.title}"
            print(line if found is None else f"{line}\t{chat.snippet}")
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
        size = Path(args.file).stat().st_size
        if size > MAX_IMPORT_BYTES:  # refused unread: memory stays bounded
            return _fail(
                f"{args.file} could not be imported: {size:,} bytes, more than a chat export "
                f"holds (at most {MAX_IMPORT_BYTES:,}); nothing was imported"
            )
        chat = load_export(Path(args.file).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        return _fail(f"{args.file} could not be imported: {exc}; nothing was imported")
    if store.read_only or not store.persistent:
        return _fail(f"the chat history {store.path} cannot be written; nothing was imported")
    chat_id = session.import_chat(chat)
    print(f"{chat_id}\t{chat.title}")
    return 0


def main(argv: Sequence[str]) -> int:
    """The history commands alone (``chatapp.cli.main`` is the usual way in)."""
    parser = argparse.ArgumentParser(prog="chatapp", description="The saved chats.")
    add_commands(parser)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.error("a command is required: " + ", ".join(COMMANDS))
    return run(args)
