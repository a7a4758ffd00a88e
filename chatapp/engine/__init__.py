"""Generation engine: loads a model and streams replies. Knows nothing of the UI."""

from chatapp.engine.chat_format import Message
from chatapp.engine.loading import (
    BUNDLED,
    DEFAULT_GPU_MODEL,
    LoadedModel,
    ModelLoadError,
    load_model,
)
from chatapp.engine.local import EngineBusy, LocalEngine, ReplyStats

__all__ = [
    "BUNDLED",
    "DEFAULT_GPU_MODEL",
    "EngineBusy",
    "LoadedModel",
    "LocalEngine",
    "Message",
    "ModelLoadError",
    "ReplyStats",
    "load_model",
]
