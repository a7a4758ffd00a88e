"""``chatapp sweep``: one prompt, one parameter (or two, as a grid) over a few values,
several seeded samples at each, and the figures of ``chatapp.sweep`` as a table, JSON or
CSV on stdout (progress on stderr). The sweep is saved in the history, as a chat."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from chatapp.cli_options import add_engine_options, add_sampling_options
from chatapp.params import ParamError, SamplingParams

HELP = "sample one prompt over a parameter's values and print figures for each"


def add_command(commands: Any) -> None:
    sweep = commands.add_parser(
        "sweep",
        help=HELP,
        description=HELP + " (docs/sweep.md defines them). The other sampling flags set the "
        "values that stay fixed.",
    )
    sweep.add_argument("--prompt", required=True, metavar="TEXT", help="'-' reads stdin")
    sweep.add_argument("--system", metavar="TEXT", help="system prompt")
    sweep.add_argument(
        "--param",
        action="append",
        required=True,
        metavar="NAME",
        help="the parameter to sweep (twice: a grid of two)",
    )
    sweep.add_argument(
        "--values",
        action="append",
        required=True,
        metavar="LIST",
        help="its values, comma-separated, e.g. 0.2,0.6,1.0,1.4 (one --values per --param)",
    )
    sweep.add_argument("--samples", type=int, default=8, metavar="N", help="samples per value")
    sweep.add_argument(
        "--seed", type=int, default=0, metavar="N", help="sample i is drawn with seed N+i"
    )
    sweep.add_argument("--format", choices=("table", "json", "csv"), default="table")
    sweep.add_argument(
        "--no-save", action="store_true", help="do not keep the sweep in the history"
    )
    add_engine_options(sweep)
    add_sampling_options(sweep, skip=("seed",))


def _fail(message: str, code: int = 2) -> int:
    print(f"chatapp: error: {message}", file=sys.stderr)
    return code


def run(args: argparse.Namespace, params: SamplingParams | None) -> int:
    from chatapp import heap
    from chatapp.sweep import Sweep, parse_values, render, run_sweep

    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    if not prompt.strip():
        return _fail("the prompt is empty")
    if len(args.param) != len(args.values) or len(args.param) > 2:
        return _fail("give one --values per --param, for one or two parameters")
    if args.samples < 1:
        return _fail("--samples must be at least 1")
    try:
        grid = {
            name: parse_values(name, text)
            for name, text in zip(args.param, args.values, strict=True)
        }
    except ValueError as exc:  # ParamError too
        return _fail(str(exc))
    base = (params or SamplingParams()).replace(seed=None)
    if not any(v is True for v in grid.get("do_sample", [])) and not base.do_sample:
        base = base.replace(do_sample=True)  # a sweep samples unless told otherwise
    sweep = Sweep(prompt, base, grid, args.samples, args.seed)

    from chatapp.engine.from_args import engine_from_args
    from chatapp.engine.types import EngineError

    def progress(message: str, fraction: float | None) -> None:
        print(f"chatapp: {message}…", file=sys.stderr, flush=True)

    try:
        engine = engine_from_args(args, progress, reply_tokens=base.max_new_tokens)
    except EngineError as exc:
        return _fail(str(exc), 1)
    heap.loaded()
    total = args.samples * math.prod(len(values) for values in grid.values())
    print(f"chatapp: sweeping {total} samples…", file=sys.stderr, flush=True)
    try:
        run_sweep(
            engine,
            sweep,
            lambda done, all_: print(f"chatapp: {done}/{all_}", file=sys.stderr, flush=True),
        )
    except KeyboardInterrupt:
        engine.stop()
        return _fail("stopped", 130)
    except (EngineError, ParamError) as exc:
        return _fail(str(exc), 1)
    sys.stdout.write(render(sweep, args.format))
    if not args.no_save:
        from chatapp.sweep import save_sweep

        chat_id = save_sweep(sweep, engine.model_name, engine.engine_label())
        print(f"chatapp: saved as chat {chat_id}", file=sys.stderr)
    return 0
