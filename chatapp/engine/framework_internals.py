"""The engine's one seam to the frameworks' internals.

Every private transformers, torch or gguf name the engine relies on, and every change it
makes to their process-wide state, lives here and nowhere else in ``chatapp.engine``:

- the logits processors ``generate`` builds (``GenerationMixin._get_logits_processor``
  after ``_prepare_generation_config``): the lens applies the very same stages, and
  transformers has no public way to build them;
- ``DeferredStopCheck.is_supported`` widened to CUDA for the fast path's calls, and
  ``CompileConfig._compile_all_devices`` so that generate compiles off CUDA too;
- fbgemm's dynamic int8 linear kernels (``torch.ops.quantized``), for int8-dynamic;
- torch's process-wide oneDNN switch (``torch.backends.mkldnn.enabled``);
- one parsed ``gguf.GGUFReader`` per file while the bundled model is converted;
- the libraries' warnings and logs, silenced (``quiet``, ``silence_libraries``).

``PRIVATE_NAMES`` lists each of them; ``tests/test_framework_internals.py`` fails by name
when one disappears. ``version_warning`` says, in one line, when transformers or torch is
outside the range this seam was written and tested for. Patches are applied once.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

# The releases this seam was written and tested for: (major, minor) inclusive.
TESTED_VERSIONS: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    "transformers": ((5, 0), (5, 25)),
    "torch": ((2, 4), (2, 13)),
}


@dataclass(frozen=True)
class PrivateName:
    """One framework attribute the seam relies on, and the parameters it passes to it."""

    module: str  # where the owner is imported from
    owner: str  # the owner's dotted path inside ``module`` ("" for the module itself)
    name: str
    parameters: tuple[str, ...] = ()  # keyword parameters the seam passes

    @property
    def label(self) -> str:
        owner = f"{self.module}.{self.owner}" if self.owner else self.module
        return f"{owner}.{self.name}"

    def resolve_owner(self) -> Any:
        """The object that should carry ``name`` (raises ImportError/AttributeError)."""
        target: Any = importlib.import_module(self.module)
        for part in filter(None, self.owner.split(".")):
            target = getattr(target, part)
        return target


_UTILS = "transformers.generation.utils"
PRIVATE_NAMES: tuple[PrivateName, ...] = (
    PrivateName(_UTILS, "GenerationMixin", "_prepare_generation_config", ("generation_config",)),
    PrivateName(
        _UTILS,
        "GenerationMixin",
        "_get_logits_processor",
        (
            "generation_config",
            "input_ids_seq_length",
            "encoder_input_ids",
            "device",
            "model_kwargs",
        ),
    ),
    PrivateName(_UTILS, "DeferredStopCheck", "is_supported"),
    PrivateName("transformers", "CompileConfig", "_compile_all_devices"),
    PrivateName("torch", "ops.quantized", "linear_prepack"),
    PrivateName("torch", "ops.quantized", "linear_dynamic"),
    PrivateName("torch", "backends.mkldnn", "enabled"),
    PrivateName("gguf", "", "GGUFReader"),
)


def _major_minor(version: str) -> tuple[int, int]:
    parts = version.split("+")[0].split(".")
    return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)


@functools.cache
def version_warning() -> str | None:
    """One line when transformers or torch is outside ``TESTED_VERSIONS``, else None."""
    outside = []
    for package, (low, high) in TESTED_VERSIONS.items():
        try:
            version = importlib.import_module(package).__version__
            if not low <= _major_minor(version) <= high:
                outside.append(f"{package} {version}")
        except (ImportError, AttributeError, ValueError, IndexError):
            continue
    if not outside:
        return None
    tested = ", ".join(
        f"{p} {lo[0]}.{lo[1]}-{hi[0]}.{hi[1]}" for p, (lo, hi) in TESTED_VERSIONS.items()
    )
    return f"Untested {' and '.join(outside)} (chatapp's engine was tested with {tested})"


# -- the lens: generate's own logits processors ---------------------------------------------


def logits_processors(model: Any, generation_config: Any, input_ids: Any) -> Any:
    """The ``LogitsProcessorList`` that ``generate`` builds for this config and prompt."""
    import torch

    config, _ = model._prepare_generation_config(generation_config)
    return model._get_logits_processor(
        generation_config=config,
        input_ids_seq_length=input_ids.shape[-1],
        encoder_input_ids=input_ids,
        device=input_ids.device,
        model_kwargs={"attention_mask": torch.ones_like(input_ids)},
    )


# -- the fast path: a stop check a step late on CUDA, compiling on every device --------------

# Set on the generating thread around one generate call (``deferred_stop_check``).
_deferral = threading.local()
_patch_lock = threading.Lock()
_deferral_patched = False


def stop_check_deferred() -> bool:
    """This thread's generate call may defer its stop check (see ``allow_deferred_stop_check``)."""
    return bool(getattr(_deferral, "on", False))


@contextlib.contextmanager
def deferred_stop_check(on: bool) -> Iterator[None]:
    """Within this block, this thread's generate calls defer their stop check if ``on``."""
    _deferral.on = on
    try:
        yield
    finally:
        _deferral.on = False


def allow_deferred_stop_check() -> bool:
    """Let generate defer its stop check by a step on CUDA, for the fast path.

    Each decode step, generate reads the stop flag and the new token back from the GPU,
    so the host waits for the device before it prepares the next step, and the step's
    Python work and the GPU's run one after the other. transformers' ``DeferredStopCheck``
    reads them a step late instead (tokens stream one step behind; one extra forward pass
    at the end is undone by cropping the cache), so the host queues step n+1 while the
    device runs step n; transformers turns it on only for Apple's MPS so far. This widens
    its ``is_supported`` to CUDA for calls inside ``deferred_stop_check(True)``, under
    the same cache condition; once per process. False where this transformers has no
    such class (then nothing changes)."""
    global _deferral_patched
    try:
        from transformers.generation import utils
    except ImportError:  # pragma: no cover
        return False
    check = getattr(utils, "DeferredStopCheck", None)
    if check is None or not hasattr(check, "is_supported"):
        return False
    with _patch_lock:
        if not _deferral_patched:
            original = check.is_supported

            def is_supported(
                device: Any, cache: Any, cache_is_returned: bool, is_assistant: bool
            ) -> bool:
                if stop_check_deferred() and device.type == "cuda" and not is_assistant:
                    return bool(cache is None or cache.is_croppable or not cache_is_returned)
                return bool(original(device, cache, cache_is_returned, is_assistant))

            check.is_supported = staticmethod(is_supported)
            _deferral_patched = True
    return True


def compile_config(all_devices: bool) -> Any:
    """A ``CompileConfig`` for generate; ``all_devices``: compile off CUDA as well (generate
    compiles on CUDA by itself, elsewhere only when told to)."""
    from transformers import CompileConfig

    config = CompileConfig()
    config._compile_all_devices = all_devices
    return config


# -- int8-dynamic: fbgemm's kernels ------------------------------------------------------------


def int8_linear_prepack(quantized_weight: Any, bias: Any) -> Any:
    """fbgemm's packed form of a per-channel int8 weight (and its float bias)."""
    import torch

    return torch.ops.quantized.linear_prepack(quantized_weight, bias)


def int8_linear_dynamic(x: Any, packed: Any, reduce_range: bool) -> Any:
    """``x`` (float32) times a packed int8 weight, ``x`` quantized per call."""
    import torch

    return torch.ops.quantized.linear_dynamic(x, packed, reduce_range=reduce_range)


# -- process-wide switches ---------------------------------------------------------------------


def onednn_enabled() -> bool:
    """Whether torch sends CPU matmuls to oneDNN now (a process-wide flag)."""
    import torch

    return bool(torch.backends.mkldnn.enabled)


def set_onednn_enabled(enabled: bool) -> None:
    """Set torch's process-wide oneDNN flag (callers put the previous value back)."""
    import torch

    torch.backends.mkldnn.enabled = enabled


@contextlib.contextmanager
def one_gguf_reader_per_file() -> Iterator[None]:
    """Within this block, one parsed ``gguf.GGUFReader`` per file is reused.

    transformers parses a GGUF file's fields anew for the config, for the weights and for
    the tokenizer, nearly all of it the vocabulary and the merges read field by field. The
    reader is read-only (a memory map), so sharing it changes nothing else. The module's
    name is put back at the end, even on an error."""
    import gguf

    original: Callable[..., Any] = gguf.GGUFReader
    readers: dict[tuple[str, str], Any] = {}

    def reader(path: Any, mode: str = "r") -> Any:
        key = (os.path.abspath(os.fspath(path)), mode)
        if key not in readers:
            readers[key] = original(path, mode)
        return readers[key]

    gguf.GGUFReader = reader
    try:
        yield
    finally:
        gguf.GGUFReader = original


def drop_quantization_marks(model: Any) -> None:
    """A GGUF-loaded model is marked as quantized and refuses ``save_pretrained``, though
    its weights are already dequantized: drop the marks."""
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


# -- the libraries' chatter ----------------------------------------------------------------


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence transformers/bitsandbytes warnings that would corrupt a terminal UI."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def silence_libraries() -> None:
    """Turn off progress bars and advisory logs of the ML libraries (process-wide)."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", message=".*MatMul8bitLt.*")
    warnings.filterwarnings("ignore", category=UserWarning, module="bitsandbytes")
    # bitsandbytes logs "MatMul8bitLt: inputs will be cast …" at every 8-bit forward pass,
    # i.e. once per token (through logging, which the warning filters do not reach).
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass
