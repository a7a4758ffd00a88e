"""The quantization modes: what ``--quant auto`` and ``--compile`` choose, the
transformers configs for the bitsandbytes and torchao modes, and int8-dynamic (an int8
copy of every ``Linear`` for the decode step) with the oneDNN switch auto adds in bf16."""

from __future__ import annotations

import functools
import importlib.util
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from chatapp.engine import framework_internals as internals
from chatapp.engine.types import ModelLoadError

QUANT_CHOICES = ("auto", "none", "int8-dynamic", "8bit", "4bit", "ao-int8")
# One line per mode, for --help and the README.
QUANT_MODES = {
    "none": "the weights as they are, in --dtype, computed as plain transformers does",
    "int8-dynamic": "each decode step multiplies int8 weights (fbgemm, activations quantized "
    "per token); prompts use the float weights; CPU only",
    "8bit": "bitsandbytes LLM.int8 (the tutorial's mode)",
    "4bit": "bitsandbytes nf4",
    "ao-int8": "torchao int8 weight-only (pip install torchao); made for CUDA with --compile",
}
AUTO_RULE = (
    "auto: int8-dynamic on the CPU (the fastest mode measured there, output close to "
    "bf16), but none for a one-shot --prompt reply under 768 tokens (making the int8 copy "
    "would take longer than it saves); in bf16 on the CPU, auto also runs the one-token "
    "decode steps outside oneDNN (faster, output within the closeness bound of plain "
    "bf16), and auto samples among the survivors of top-k/top-p on the CPU (the same "
    "distribution; a seed draws other replies than plain generate); on CUDA ao-int8 with "
    "the fast path (--compile) when torchao is installed, else the tutorial's 8bit "
    "(see docs/performance.md)"
)
# --compile's default: the modes whose weights torch.compile runs faster on CUDA.
COMPILE_AUTO_MODES = ("none", "ao-int8")
# Up to this many rows a matmul is a decode step (one token per reply of a batch: 16 is
# the sweep's batch), memory-bound: int8-dynamic multiplies them by the int8 copy.
DECODE_ROWS = 16
# Making the int8 copy costs a few seconds up front and saves time on every decode step
# (bench/engine_modes.py): a single reply shorter than this is faster without it.
QUANT_PAYS_AFTER_TOKENS = 768


def cuda_available() -> bool:
    """A CUDA device is there for torch."""
    import torch

    return bool(torch.cuda.is_available())


def _torchao_available() -> bool:
    return importlib.util.find_spec("torchao") is not None


def resolve_quant(quant: str) -> str:
    """The mode to load; ``auto`` as ``auto_quant`` chooses it."""
    if quant not in QUANT_CHOICES:
        raise ModelLoadError(f"--quant must be one of {', '.join(QUANT_CHOICES)}, got {quant!r}")
    return auto_quant()[0] if quant == "auto" else quant


def auto_quant(reply_tokens: int | None = None) -> tuple[str, str]:
    """What ``--quant auto`` loads on this machine, and why (for the status line).

    On the CPU, int8-dynamic: ``python bench/engine_modes.py`` measures it the fastest mode
    for both decode (int8 weights halve the bytes read per token; the large output head
    dominates them) and prefill (fbgemm's int8 GEMM), with next-token distributions within
    the closeness bound of bf16. On CUDA, torchao's int8 weight-only (fast under
    ``--compile``) when torchao is installed, else bitsandbytes 8-bit, the tutorial's mode.

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
    return "8bit", "the tutorial's mode; pip install torchao for ao-int8"


def auto_compile(loaded: LoadedModel) -> tuple[bool, str]:
    """Whether ``--compile`` left unset (auto) compiles this model, and why: on CUDA, for
    bf16/fp16 and torchao int8 weights, which the fast path makes much faster there
    (``python bench/gpu_engine.py``); never on the CPU, where compiling takes minutes and
    the bundled model's sliding-window layers recompile the step; never for bitsandbytes."""
    if not loaded.device.startswith("cuda"):
        return False, ""
    if loaded.quant not in COMPILE_AUTO_MODES:
        return False, f"{loaded.quant} weights are not compiled"
    if has_sliding_layers(getattr(loaded.model, "config", None)):
        return False, "not compiled: its sliding-window layers recompile the step"
    return True, "auto on CUDA"


def has_sliding_layers(config: Any) -> bool:
    """The model has sliding-window attention layers (Gemma 2 and 3, the bundled model):
    with a static cache they recompile the compiled decode step, so ``--compile`` is not
    chosen for them by default."""
    types = getattr(config, "layer_types", None) or ()
    return "sliding_attention" in types or bool(getattr(config, "sliding_window", None))


def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """The CPU computes bf16 matmuls natively (AVX512-BF16, AMX, or Arm's BF16).

    Without them bf16 is emulated and a prompt takes several times longer than in
    float32, so float32 is the CPU default there."""
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
    the sums are exact in int32 and all 8 bits are used, which is much closer to bf16."""
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
    and packs their weights, on a thread when the app should not wait for it. Until
    ``use(True)`` switches them on, the wrapped layers use their float weights, so a reply
    is computed one way from its start to its end: the engine decides per request."""

    def __init__(self, modules: list[Any]) -> None:
        self.modules = modules
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.seconds = 0.0
        self.on = False  # read by every wrapped layer

    def make(self) -> None:
        """Quantize and pack every wrapped layer's weights; a failure is kept in ``error``."""
        start = time.perf_counter()
        try:
            with internals.quiet():
                for module in self.modules:
                    module.pack()
        except BaseException as exc:  # noqa: BLE001 - the engine stays on float weights
            self.error = exc
        self.seconds = time.perf_counter() - start
        self.ready.set()

    def make_in_background(self) -> threading.Thread:
        """``make`` on a daemon thread of its own."""
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

    class DecodeInt8Linear(torch.nn.Module):  # type: ignore[misc]  # torch is not analysed
        """A ``Linear`` that multiplies one token's activations by int8 weights.

        One row (decode), or one token of each of a few sequences (the compare columns'
        and sweep samples' decode step, ``DECODE_ROWS``): the activations are quantized per
        call (a batch's rows share one scale, so a batched row can differ from the same
        row alone: bench/compare.py counts the flips), and fbgemm multiplies them by the
        weights' int8 copy: a quarter of the
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
            self.packed = internals.int8_linear_prepack(quantized, bias)

        @property
        def weight(self) -> Any:
            return self.linear.weight

        @property
        def bias(self) -> Any:
            return self.linear.bias

        def forward(self, x: Any) -> Any:
            # A decode step: one token per sequence ([batch, 1, features]), a few
            # sequences. A prompt's rows differ wildly in size (the first token's are
            # huge), and one scale for them all would crush the others: float weights.
            tokens = x.shape[-2] if x.dim() >= 2 else 1
            rows = x.numel() // x.shape[-1]
            if tokens != 1 or rows > DECODE_ROWS or not self.copy.on:
                return self.linear(x)
            out = internals.int8_linear_dynamic(x.float(), self.packed, self.reduce_range)
            return out.to(x.dtype)

    return DecodeInt8Linear


class OneTokenStepsWithoutOneDNN:
    """Runs a bf16 model's one-token forward passes (the decode steps) with oneDNN off.

    torch sends CPU bf16 matmuls to oneDNN, which is right for a prompt (many rows) and
    slow for one row, where ATen's own kernel runs the large output head faster. With
    bf16 emulated the two are even, and float32 decode is a little slower without
    oneDNN, so this is for bf16 only (figures in docs/performance.md). The switch is
    torch's process-wide flag: set before each forward pass of one token and put back
    after it, so every other pass (a prompt, a second model in the same process) runs as
    before."""

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
        self._saved.append(internals.onednn_enabled())
        if self._tokens(args, kwargs) == 1:
            internals.set_onednn_enabled(False)

    def _after(self, module: Any, args: tuple[Any, ...], output: Any) -> None:
        if self._saved:
            internals.set_onednn_enabled(self._saved.pop())

    def remove(self) -> None:
        """Take the hooks off the model."""
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
    int8: Int8Copy | None = None  # int8-dynamic's int8 copy
    one_token_steps: OneTokenStepsWithoutOneDNN | None = None  # where it is installed
    auto: bool = False  # --quant auto chose the mode (auto may trade bit-exactness for speed)
