"""The ``chatapp`` command with the fake engine in place of a model: the same arguments,
start, signals and exit, without loading torch or the model (the quit tests' idle cases).

Run as a script: ``python tests/fake_chatapp.py ARGS``."""

from __future__ import annotations

import os
from typing import Any

from chatapp.engine import from_args
from chatapp.engine.fake import FakeTokenSource


def fake_engine(args: Any, progress: Any, **options: Any) -> FakeTokenSource:
    """A fake engine whatever ``--model`` names (``FAKE_CHATAPP_RATE``: its tokens a
    second; slow, a reply is still streaming when the test quits)."""
    rate = float(os.environ.get("FAKE_CHATAPP_RATE", "200"))
    return FakeTokenSource(["word "] * 400 if rate < 100 else None, tokens_per_second=rate)


# Before the app's module is imported: it takes the function by name.
from_args.engine_from_args = fake_engine

if __name__ == "__main__":
    from chatapp.cli import entry

    entry()
