"""Command line: ``chatapp`` opens the app; ``chatapp --prompt TEXT`` streams one reply;
``chatapp chats|export|import`` work on the saved chats (``chatapp.chats_cli``).

Importing this module imports no torch, transformers or Textual: each is imported only
once the command line says it is needed, so ``--help``, a bad flag and the history
commands answer at once."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from chatapp import __version__, chats_cli, heap, sweep_cli, timings
from chatapp.cli_options import add_engine_options, add_sampling_options
from chatapp.params import PARAMS, SPEC, ParamError, SamplingParams, help_text

EXIT_USAGE = 2
EXIT_LOAD = 1
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatapp",
        usage="%(prog)s [OPTIONS]            the app; with --prompt TEXT, one reply\n"
        "       %(prog)s COMMAND [ARGS]      chats, export, import (the saved chats) or sweep",
        description="Chat with a local Hugging Face model (or one on an OpenAI-compatible "
        "server) and steer how it samples. Without a command or --prompt, opens the "
        "full-screen app.",
        epilog="'chatapp COMMAND --help' explains a command's own options.",
    )
    commands = chats_cli.add_commands(parser)
    sweep_cli.add_command(commands)
    parser.add_argument("--version", action="version", version=f"chatapp {__version__}")
    parser.add_argument(
        "--prompt", metavar="TEXT", help="stream one reply to TEXT and exit ('-' reads stdin)"
    )
    parser.add_argument("--system", metavar="TEXT", help="system prompt")
    add_engine_options(parser)
    chats = parser.add_mutually_exclusive_group()
    chats.add_argument(
        "--continue",
        dest="continue_last",
        action="store_true",
        help="reopen the last chat, with its last reply's sampling values unless flags or "
        "--preset give others",
    )
    chats.add_argument("--chat", type=int, metavar="ID", help="open the saved chat ID")
    parser.add_argument("--preset", metavar="NAME", help="start from a saved or built-in preset")
    parser.add_argument("--theme", metavar="NAME", help="app theme")
    parser.add_argument("--stats", action="store_true", help="print reply statistics to stderr")
    parser.add_argument(
        "--help-params",
        nargs="?",
        const="en",
        choices=("en", "zh"),
        metavar="LANG",
        help="explain every sampling parameter (en or zh) and exit",
    )
    add_sampling_options(parser)
    return parser


def _sampling_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The sampling values given as flags on the command line; raises ParamError."""
    changes: dict[str, Any] = {}
    for spec in PARAMS:
        raw = getattr(args, f"param_{spec.name}", None)
        if raw is not None:
            changes[spec.name] = SPEC[spec.name].parse(raw)
    return changes


def _base_params(args: argparse.Namespace) -> SamplingParams:
    if not args.preset:
        return SamplingParams()
    from chatapp.presets import PresetStore

    store = PresetStore()
    preset = store.get(args.preset)
    if preset is None:
        raise ParamError(
            "preset",
            f"no preset named {args.preset!r} (known: {', '.join(store.names())})",
        )
    return preset.params


def _fail(message: str, code: int) -> int:
    print(f"chatapp: error: {message}", file=sys.stderr)
    return code


def parse_command_line(
    argv: Sequence[str] | None,
) -> tuple[argparse.Namespace, SamplingParams | None]:
    """The parsed flags and the sampling values they ask for (None with --help-params or
    a history command): the flags' over --preset's over the defaults.
    ``args.params_given`` says whether flags or --preset chose any (a chat reopened at
    start-up then keeps them).

    Raises ``ParamError`` for a bad value or an unknown preset."""
    args = build_parser().parse_args(argv)
    if args.help_params or args.command not in (None, "sweep"):
        return args, None
    changes = _sampling_flags(args)
    args.params_given = bool(args.preset or changes)
    base = _base_params(args)
    return args, base.replace(**changes) if changes else base


def main(argv: Sequence[str] | None = None) -> int:
    """The ``chatapp`` command with ``argv``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args, params = parse_command_line(argv)
    except ParamError as exc:
        return _fail(str(exc), EXIT_USAGE)
    if args.command == "sweep":
        return sweep_cli.run(args, params)
    if args.command is not None:
        heap.resume()  # the history commands load no model: nothing to keep out of collections
        return chats_cli.run(args)
    if params is None:
        print(help_text(args.help_params))
        return 0
    if args.prompt is None:
        from chatapp.tui.launch import run_app

        return run_app(args, params)
    return run_once(args, params)


def run_once(args: argparse.Namespace, params: SamplingParams) -> int:
    """The one-shot mode: stream the reply to stdout, like the tutorial's TextStreamer cell."""
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    if not prompt.strip():
        return _fail("the prompt is empty", EXIT_USAGE)
    for advice in params.advice():
        print(f"chatapp: note: {advice.message}", file=sys.stderr)

    from chatapp.engine.context import ContextTooLong
    from chatapp.engine.from_args import engine_from_args
    from chatapp.engine.types import EngineError, Message, ReplyInterrupted

    def progress(message: str, fraction: float | None) -> None:
        print(f"chatapp: {message}…", file=sys.stderr, flush=True)

    try:
        engine = engine_from_args(args, progress, reply_tokens=params.max_new_tokens)
    except EngineError as exc:  # the model could not load, or the server cannot be used
        return _fail(str(exc), EXIT_LOAD)
    except KeyboardInterrupt:
        return _fail("interrupted while loading", EXIT_INTERRUPTED)
    heap.loaded()  # the loaded heap out of later collections, which resume
    for warning in engine.warnings:
        print(f"chatapp: warning: {warning}", file=sys.stderr)
    missing = engine.capabilities.unsupported([spec.name for spec in PARAMS])
    if missing:
        print(
            f"chatapp: note: not supported by {engine.capabilities.kind}, so not sent: "
            + ", ".join(missing),
            file=sys.stderr,
        )
    messages = []
    if args.system:
        messages.append(Message("system", args.system))
    messages.append(Message("user", prompt))
    try:
        plan = engine.plan(messages, params)
    except ContextTooLong as exc:
        return _fail(str(exc), EXIT_USAGE)
    if plan.clipped:
        print(
            f"chatapp: note: max_new_tokens clipped from {params.max_new_tokens} to "
            f"{plan.max_new_tokens}: the prompt takes {plan.used:,} of the "
            f"{plan.window:,}-token window",
            file=sys.stderr,
        )

    def write(piece: str) -> None:
        sys.stdout.write(piece)
        sys.stdout.flush()

    try:
        stats = engine.stream_reply(messages, params, write)
    except KeyboardInterrupt:
        engine.stop()
        sys.stdout.write("\n")
        print("chatapp: stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ReplyInterrupted as exc:
        sys.stdout.write("\n")
        return _fail(str(exc), EXIT_LOAD)
    except EngineError as exc:
        return _fail(str(exc), EXIT_LOAD)
    sys.stdout.write("\n")
    sys.stdout.flush()
    timings.mark("generate")
    timings.report(heap.report())
    if args.stats:
        print(
            f"chatapp: model {engine.describe()} · prompt {stats.prompt_tokens} tokens · "
            f"{stats.summary()} · {params.summary()}",
            file=sys.stderr,
        )
    return 0


def entry() -> None:  # pragma: no cover - tests/test_quit.py runs it in a subprocess
    """The ``chatapp`` command: ``main``, then an exit that does not wait for teardown.

    By the time ``main`` returns the terminal is restored, the reply is on stdout, and
    every file is written (presets, settings and the history are written whole, under a
    lock, before the call that changes them returns). What is left is the interpreter's
    teardown: joining a generation thread that is finishing its token, unloading torch
    and freeing the model, which can take seconds for nothing the user sees. Skip it."""
    import logging
    import os

    heap.pause()  # until the model is loaded: see chatapp/heap.py for why
    try:
        code = main()
    except BrokenPipeError:  # `chatapp chats | head -1`: the reader had what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to it
        code = 0
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
