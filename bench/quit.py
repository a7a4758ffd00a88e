"""How long the app takes to end: Ctrl+Q, SIGINT and SIGTERM, idle and mid-reply.

    python bench/quit.py [--rounds 3]

Each case runs the real app (``python -m chatapp``, the bundled model, 80x24 on a
pseudo-terminal, a fresh config and history) as ``tests/test_quit.py`` does
(``bench_common.quit_the_app``): a message, then the key or the signal, idle once the
reply is done or 3 s into a 400-token reply. Times from the key or signal to the
process's end, read from outside every 10 ms; the rounds alternate the cases. Also checks
the exit code (0, 130, 143) and that the terminal's own screen came back. Ends with one
line: ``quit: worst S s over N quits (target <= 1 s)``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_common import QUIT_EXIT_CODES, quit_the_app  # noqa: E402

CASES = [(how, when) for when in ("idle", "mid-reply") for how in QUIT_EXIT_CODES]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    times: dict[tuple[str, str], list[float]] = {case: [] for case in CASES}
    problems: list[str] = []
    for _ in range(args.rounds):
        for how, when in CASES:
            with tempfile.TemporaryDirectory() as folder:
                env = {
                    **os.environ,
                    "CHATAPP_CONFIG_DIR": str(Path(folder) / "config"),
                    "CHATAPP_DATA_DIR": str(Path(folder) / "data"),
                }
                result = quit_the_app(how, when, env)
            times[(how, when)].append(result["seconds"])
            if result["code"] != QUIT_EXIT_CODES[how]:
                problems.append(f"{how} {when}: exit code {result['code']}")
            if not result["restored"]:
                problems.append(f"{how} {when}: the terminal was not restored")
    print(f"quitting the app (bundled model, 80x24), {args.rounds} rounds, cases alternating")
    for (how, when), values in times.items():
        print(
            f"{how:8} {when:9}  median {statistics.median(values):.2f} s, worst "
            f"{max(values):.2f} s  (runs: {', '.join(f'{v:.2f}' for v in values)})"
        )
    for problem in problems:
        print("problem:", problem)
    every = [v for values in times.values() for v in values]
    print(f"quit: worst {max(every):.2f} s over {len(every)} quits (target <= 1 s)")


if __name__ == "__main__":
    main()
