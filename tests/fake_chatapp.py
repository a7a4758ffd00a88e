"""The ``chatapp`` command with the fake engine in place of a model: the same arguments,
start, signals and exit, without loading torch or the model (the quit tests' idle cases).

Run as a script: ``python tests/fake_chatapp.py ARGS``."""

from __future__ import annotations

from typing import Any

from chatapp.engine import from_args
from chatapp.engine.fake import FakeTokenSource


def fake_engine(args: Any, progress: Any, **options: Any) -> FakeTokenSource:
    """A fake engine whatever ``--model`` names."""
    return FakeTokenSource(tokens_per_second=200.0)


# Before the app's module is imported: it takes the function by name.
from_args.engine_from_args = fake_engine

if __name__ == "__main__":
    from chatapp.cli import entry

    entry()
