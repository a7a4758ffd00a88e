"""Generation engine: loads a model and streams replies. Knows nothing of the UI."""

from chatapp.engine.loading import BUNDLED, DEFAULT_GPU_MODEL, load_model
from chatapp.engine.local import LocalEngine
from chatapp.engine.quantization import LoadedModel
from chatapp.engine.types import EngineBusy, Message, ModelLoadError, ReplyStats

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
