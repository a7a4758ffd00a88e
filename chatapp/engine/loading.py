"""Finding and loading models, with one clear message per failure."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from chatapp import timings
from chatapp.engine import framework_internals as internals
from chatapp.engine.bundled import ensure_bundled_model
from chatapp.engine.quantization import (
    LoadedModel,
    auto_quant,
    cpu_has_native_bf16,
    cuda_available,
    quantization_config,
    quantize_dynamic_int8,
    resolve_quant,
    run_as_auto,
)
from chatapp.engine.types import ModelLoadError, ProgressFn, no_progress

BUNDLED = "bundled"
DEFAULT_GPU_MODEL = "google/gemma-2b-it"
DTYPE_CHOICES = ("auto", "bfloat16", "float16", "float32")


def resolve_model_name(name: str | None) -> str:
    """``None``/``default``: the tutorial's model on a CUDA GPU, the bundled model elsewhere."""
    if name in (None, "", "default"):
        return DEFAULT_GPU_MODEL if cuda_available() else BUNDLED
    return name


def resolve_dtype(dtype: str) -> Any:
    """The torch dtype for ``--dtype`` (``auto``: bf16 where the device computes it natively)."""
    import torch

    if dtype == "auto":
        if cuda_available():
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    if dtype not in DTYPE_CHOICES:
        raise ModelLoadError(f"--dtype must be one of {', '.join(DTYPE_CHOICES)}, got {dtype!r}")
    return getattr(torch, dtype)


def _looks_like_path(name: str) -> bool:
    """Hub ids are ``name`` or ``owner/name``; anything else is meant as a path."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def load_tokenizer(folder: str) -> Any:
    """Fast path for a folder with tokenizer.json and a Gemma tokenizer (the bundled model):
    the fast tokenizer built straight from the file, without AutoTokenizer's detours."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tokenizer_file = Path(folder) / "tokenizer.json"
    config_file = Path(folder) / "tokenizer_config.json"
    if tokenizer_file.is_file() and config_file.is_file():
        config = json.loads(config_file.read_text(encoding="utf-8"))
        if config.get("tokenizer_class", "").startswith("Gemma"):
            specials = {
                k: config[k]
                for k in ("bos_token", "eos_token", "pad_token", "unk_token", "mask_token")
                if isinstance(config.get(k), str)
            }
            tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_file), **specials)
            tokenizer.chat_template = config.get("chat_template")
            return tokenizer
    return AutoTokenizer.from_pretrained(folder)


def load_model(
    name: str | None = None,
    quant: str = "auto",
    dtype: str = "auto",
    progress: ProgressFn = no_progress,
    reply_tokens: int | None = None,
    background: bool = False,
) -> LoadedModel:
    """Load model + tokenizer; raises ModelLoadError with a one-line, actionable message.
    ``reply_tokens``: see ``auto_quant``. ``background``: int8-dynamic's int8 copy is
    made on a thread (the app is ready at once; replies use it once it is made)."""
    start = time.perf_counter()
    name = resolve_model_name(name)
    chosen_by_auto = quant == "auto"
    if chosen_by_auto:
        quant, quant_reason = auto_quant(reply_tokens)
    else:
        quant, quant_reason = resolve_quant(quant), ""
    torch_dtype = resolve_dtype(dtype)
    if name == BUNDLED:
        source = str(ensure_bundled_model(progress))
    else:
        source = name
        local = Path(name).expanduser()
        if local.exists():
            source = str(local)
        elif _looks_like_path(name):
            raise ModelLoadError(f"No model at {name}: the path does not exist", kind="not_found")
    try:
        from transformers import AutoModelForCausalLM

        timings.mark("torch + transformers import")
        progress(f"Loading {name}" + (f" ({quant})" if quant != "none" else ""), 0.95)
        # One after the other: tokenizers holds the GIL while it parses tokenizer.json,
        # and most of from_pretrained's first call is Python importing modules, so a
        # thread for each only makes them take turns, and is slower.
        tokenizer = load_tokenizer(source)
        timings.mark("tokenizer")
        with internals.quiet():
            model = AutoModelForCausalLM.from_pretrained(
                source,
                dtype=torch_dtype,
                device_map="auto",
                low_cpu_mem_usage=True,
                quantization_config=quantization_config(quant, torch_dtype),
            )
        timings.mark("weights (from_pretrained)")
        int8 = None
        if quant == "int8-dynamic":
            if not background:
                progress(f"Making the int8 copy of {name}", 0.98)
            int8 = quantize_dynamic_int8(model, background=background)
            timings.mark("int8 copy of the weights")
    except ModelLoadError:
        raise
    except BaseException as exc:  # noqa: BLE001 - every failure becomes one clear line
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise classify_load_error(name, exc) from exc
    model.eval()
    device = str(next(model.parameters()).device)
    dtype_name = str(torch_dtype).replace("torch.", "")
    loaded = LoadedModel(
        model=model,
        tokenizer=tokenizer,
        name=name,
        quant=quant,
        dtype=dtype_name,
        device=device,
        load_seconds=time.perf_counter() - start,
        quant_reason=quant_reason,
        int8=int8,
    )
    if chosen_by_auto:
        run_as_auto(loaded)
        if quant == "none" and loaded.one_token_steps is not None:
            loaded.quant_reason += "; decode steps without oneDNN (faster here)"
    return loaded


def classify_load_error(name: str, exc: BaseException) -> ModelLoadError:
    """Turn a loading exception into one line the user can act on."""
    text = f"{type(exc).__name__}: {exc}"
    lowered = text.lower()
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "GatedRepoError" in names or "gated repo" in lowered or "is restricted" in lowered:
        return ModelLoadError(
            f"{name} is a gated model: accept its licence on the Hugging Face hub, then log in "
            "with `hf auth login`",
            kind="gated",
        )
    if "RepositoryNotFoundError" in names or "is not a valid model identifier" in lowered:
        return ModelLoadError(
            f"No model named {name} on the hub or on disk (check the spelling, or give a "
            "local path)",
            kind="not_found",
        )
    if isinstance(exc, MemoryError) or "out of memory" in lowered or "OutOfMemoryError" in names:
        return ModelLoadError(
            f"Not enough memory to load {name}: try --quant 4bit, a smaller model, or "
            "--model bundled",
            kind="memory",
        )
    offline_signs = (
        "LocalEntryNotFoundError",
        "OfflineModeIsEnabled",
        "ConnectionError",
        "ConnectError",
    )
    if names & set(offline_signs) or any(
        s in lowered
        for s in (
            "offline",
            "couldn't connect",
            "cannot find the requested files in the local cache",
            "we couldn't connect",
            "connection",
            "outgoing traffic has been disabled",
        )
    ):
        return ModelLoadError(
            f"{name} is not in the local cache and the hub cannot be reached (offline): "
            "try --model bundled",
            kind="offline",
        )
    if "bitsandbytes" in lowered:
        return ModelLoadError(f"Quantized loading failed ({exc}); try --quant none", kind="quant")
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ModelLoadError(f"Could not load {name}: {first_line}", kind="other")
