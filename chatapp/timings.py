"""Where the one-shot command's start-up time goes: with ``CHATAPP_TIMINGS=1`` it ends by
writing one ``TIMINGS {json}`` line to stderr (``bench/startup.py`` reads it)."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

MARKS: dict[str, float] = {"start": time.perf_counter()}


def mark(name: str) -> None:
    """The step ``name`` ends now (steps are timed from the previous mark)."""
    MARKS[name] = time.perf_counter()


def report(collector: dict[str, Any] | None = None) -> None:
    """The marks; with ``collector`` (chatapp.heap.report()) a ``TIMINGS-GC`` line too."""
    if os.environ.get("CHATAPP_TIMINGS") == "1":
        print("TIMINGS " + json.dumps(MARKS), file=sys.stderr, flush=True)
        if collector is not None:
            print("TIMINGS-GC " + json.dumps(collector), file=sys.stderr, flush=True)
