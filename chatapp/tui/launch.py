"""The app as the command line starts it (``chatapp`` with no --prompt)."""

from __future__ import annotations

import argparse
from functools import partial

from chatapp.engine.from_args import engine_from_args
from chatapp.params import SamplingParams
from chatapp.tui.app import ChatApp
from chatapp.tui.model_loader import EngineFactory
from chatapp.tui.model_switch import engine_for


def make_app(
    args: argparse.Namespace, params: SamplingParams, engine_factory: EngineFactory | None = None
) -> ChatApp:
    """The app as the command line configures it (shared by ``run_app`` and the tests)."""
    factory = engine_factory or partial(engine_from_args, args, background=True)
    app = ChatApp(
        factory,
        params,
        preset=args.preset,
        theme=args.theme,
        system=args.system,
        chat_id=getattr(args, "chat", None),
        continue_last=getattr(args, "continue_last", False),
        params_given=getattr(args, "params_given", False),
    )
    if engine_factory is None:  # "Model…" loads another model with the same options
        app.switcher.factory = partial(engine_for, args)
    return app


def run_app(args: argparse.Namespace, params: SamplingParams) -> int:
    """Open the app (``chatapp`` with no --prompt)."""
    app = make_app(args, params)
    app.run()
    if app.engine is not None:
        app.engine.stop()
    return app.return_code or 0
