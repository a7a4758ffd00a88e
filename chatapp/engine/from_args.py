"""The engine the command line asks for: a server (``--server URL``) or a local model.

A remote engine never imports torch or transformers, so ``chatapp --server URL`` starts
quickly; the local model is imported only when it is the one asked for.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from chatapp.engine.protocol import Engine
from chatapp.engine.types import ModelLoadError, ProgressFn

LOCAL_PACKAGES = ("torch", "transformers", "accelerate", "gguf", "safetensors")


def local_extras_missing() -> list[str]:
    """The packages of ``chatapp[local]`` that are not installed (the client alone runs
    without them)."""
    return [name for name in LOCAL_PACKAGES if importlib.util.find_spec(name) is None]


def engine_from_args(
    args: Any, progress: ProgressFn, reply_tokens: int | None = None, background: bool = False
) -> Engine:
    """Connect to ``args.server`` or load ``args.model``; raises EngineError or
    ModelLoadError with one line for the user. ``reply_tokens``: the one-shot command's
    single reply's limit (``--quant auto`` weighs it). ``background``: the app's way, an
    int8 copy made on a thread while the app is already usable."""
    if getattr(args, "server", None):
        from chatapp.engine.remote import RemoteEngine

        progress(f"Connecting to {args.server}", None)
        return RemoteEngine(
            args.server,
            model=args.model,
            kind=args.server_kind,
            api_key_env=args.api_key_env,
            chat_format=args.chat_format or "turns",
            context=args.context,
        )
    missing = local_extras_missing()
    if missing:
        raise ModelLoadError(
            f"Running a model here needs chatapp's local extras ({', '.join(missing)} "
            "missing): pip install 'chatapp[local]', or chat with a server: --server URL",
            kind="setup",
        )
    from chatapp.engine import LocalEngine
    from chatapp.engine.framework_internals import silence_libraries

    silence_libraries()
    return LocalEngine.load(
        args.model,
        quant=args.quant,
        dtype=args.dtype,
        progress=progress,
        context=args.context,
        chat_format=args.chat_format,
        compile=getattr(args, "compile", None),
        reply_tokens=reply_tokens,
        background=background,
    )
