"""Every quantization mode that runs on the CPU, on the real bundled model: it loads,
generates, stops, and its next-token distributions stay close to the unquantized model's
(``chatapp.engine.closeness``)."""

from __future__ import annotations

import importlib.util
import threading

import pytest

from chatapp.engine import Message
from chatapp.engine.closeness import closeness_ids, compare
from chatapp.engine.loading import load_model
from chatapp.engine.quantization import auto_quant
from chatapp.engine.types import Int8Status, ModelLoadError
from chatapp.params import SamplingParams

pytestmark = pytest.mark.model

HELLO = [Message("user", "使用繁體中文回答，請問什麼是大型語言模型？")]
GREEDY = SamplingParams(do_sample=False, max_new_tokens=8)
MODES = ["int8-dynamic", "8bit", "4bit"]


@pytest.fixture(scope="module")
def reference(engine):
    from chatapp.engine.closeness import next_token_logprobs

    return next_token_logprobs(engine.model, closeness_ids(engine.tokenizer), one_pass=True)


@pytest.fixture(scope="module")
def engines(engine_int8, engine_8bit, engine_4bit):
    """One engine per mode, each loaded once for the session."""
    return {"int8-dynamic": engine_int8, "8bit": engine_8bit, "4bit": engine_4bit}


def _linear_kinds(model) -> set[str]:
    return {type(m).__name__ for m in model.modules() if "Linear" in type(m).__name__}


@pytest.mark.parametrize("mode", MODES)
def test_mode_loads_generates_and_stays_close_to_the_unquantized_model(
    engines, reference, engine, mode
):
    from chatapp.engine.closeness import next_token_logprobs

    quantized = engines[mode]
    assert quantized.loaded.quant == mode and mode in quantized.describe()
    kinds = _linear_kinds(quantized.model)
    expected = {"int8-dynamic": "DecodeInt8Linear", "8bit": "Linear8bitLt", "4bit": "Linear4bit"}
    assert expected[mode] in kinds, kinds
    if mode == "int8-dynamic":
        # Every Linear has its int8 copy, the 262k-row output head included.
        plain = [m for m in quantized.model.modules() if type(m).__name__ == "DecodeInt8Linear"]
        assert type(quantized.model.lm_head).__name__ == "DecodeInt8Linear"
        assert len(plain) == 1 + 7 * quantized.model.config.num_hidden_layers
    stats = quantized.stream_reply(HELLO, GREEDY)
    assert stats.new_tokens > 0 and stats.text.strip()
    assert stats.text == quantized.tokenizer.decode(stats.reply_ids, skip_special_tokens=True)
    result = compare(
        reference, next_token_logprobs(quantized.model, closeness_ids(engine.tokenizer))
    )
    assert result.close(four_bit=mode == "4bit"), (mode, str(result))


@pytest.mark.parametrize("mode", MODES)
def test_mode_stops_when_asked(engines, mode):
    quantized = engines[mode]
    quantized.reset()
    cancel = threading.Event()
    pieces: list[str] = []

    def on_text(piece: str) -> None:
        pieces.append(piece)
        cancel.set()  # stop after the first piece

    stats = quantized.stream_reply(HELLO, GREEDY.replace(max_new_tokens=40), on_text, cancel=cancel)
    assert stats.finish_reason == "stopped"
    assert 1 <= stats.new_tokens <= 3 and pieces


def test_closeness_check_fails_a_mode_that_is_not_close(engine, reference):
    """The measure can fail: 5-bit weights with one scale per tensor are refused, even by
    the looser 4-bit bound."""
    import copy

    import torch

    from chatapp.engine.closeness import next_token_logprobs

    crude = copy.deepcopy(engine.model).float()
    with torch.no_grad():
        for module in crude.model.layers.modules():
            if isinstance(module, torch.nn.Linear):
                w = module.weight
                scale = w.abs().max() / 15  # 5-bit, one scale per tensor
                w.copy_(torch.round(w / scale) * scale)
    ids = closeness_ids(engine.tokenizer)
    result = compare(reference, next_token_logprobs(crude, ids, one_pass=True))
    assert not result.close() and not result.close(four_bit=True), str(result)


def test_auto_on_the_cpu_is_the_fast_int8_mode_and_the_status_line_says_why(engine_int8):
    mode, reason = auto_quant()
    assert mode == "int8-dynamic" and "fastest" in reason
    assert engine_int8.loaded.quant == "int8-dynamic"  # the fixture asked for auto
    assert engine_int8.loaded.quant_reason == reason
    assert f"int8-dynamic (auto: {reason})" in engine_int8.describe()


def test_ao_int8_without_torchao_is_one_clear_line():
    if importlib.util.find_spec("torchao") is None:
        with pytest.raises(ModelLoadError, match="needs torchao: pip install torchao"):
            load_model("bundled", quant="ao-int8")
    else:  # pragma: no cover - torchao is not in the test extras
        loaded = load_model("bundled", quant="ao-int8")
        assert loaded.quant == "ao-int8"


def test_auto_leaves_a_short_one_shot_reply_unquantized_on_the_cpu():
    from chatapp.engine.quantization import QUANT_PAYS_AFTER_TOKENS

    mode, reason = auto_quant(reply_tokens=8)
    assert mode == "none" and "longer to make than it saves" in reason
    assert auto_quant(reply_tokens=QUANT_PAYS_AFTER_TOKENS)[0] == "int8-dynamic"
    assert auto_quant()[0] == "int8-dynamic"  # the app: a whole conversation


def test_a_reply_uses_the_float_weights_until_the_int8_copy_is_made_never_a_mix(
    engine, engine_int8
):
    """The app makes the int8 copy on a thread after Ready; each request decides at its
    start, for the whole request."""
    int8 = engine_int8.loaded.int8
    assert int8.ready.is_set() and int8.error is None
    int8.ready.clear()  # as while the copy is being made
    try:
        assert engine_int8.int8_pending and "making the int8 copy" in engine_int8.describe()
        assert engine_int8.int8_status() == Int8Status(pending=True)
        pending = engine_int8.stream_reply(HELLO, GREEDY)
        assert not int8.on
        engine.reset()
        assert pending.token_ids == engine.stream_reply(HELLO, GREEDY).token_ids
    finally:
        int8.ready.set()
    made = engine_int8.stream_reply(HELLO, GREEDY)
    assert int8.on and not engine_int8.int8_pending
    assert made.new_tokens > 0
    # What the app asks when the copy is done: how long it took, or why it failed.
    assert engine_int8.int8_status() == Int8Status(seconds=int8.seconds) and int8.seconds > 0
    int8.error = RuntimeError("no memory for the int8 copy")
    try:
        assert engine_int8.int8_status() == Int8Status(
            seconds=int8.seconds, error="no memory for the int8 copy"
        )
    finally:
        int8.error = None


def test_engines_without_an_int8_copy_report_nothing_pending(engine):
    from chatapp.engine.fake import FakeTokenSource

    assert engine.loaded.int8 is None
    for source in (engine, FakeTokenSource()):
        assert source.int8_status() == Int8Status()


def test_the_int8_copy_is_made_on_a_thread_when_asked():
    loaded = load_model("bundled", quant="int8-dynamic", background=True)
    assert loaded.int8 is not None
    assert loaded.int8.ready.wait(120) and loaded.int8.error is None
    assert all(m.packed is not None for m in loaded.int8.modules)
    assert loaded.int8.use(True)


def test_compile_auto_is_on_for_cuda_bf16_and_ao_int8_only_and_the_help_says_so(
    engine_int8, capsys
):
    """--compile left unset: the fast path where it was measured faster (an H200), never
    on the CPU or for bitsandbytes; --compile / --no-compile decide it outright."""
    from chatapp.cli import build_parser
    from chatapp.engine.prefill import GPU_CHUNK, first_chunk
    from chatapp.engine.quantization import LoadedModel, auto_compile

    def loaded(device: str, quant: str, model=None) -> LoadedModel:
        return LoadedModel(model, None, "m", quant, "bfloat16", device, 0.0)

    assert auto_compile(loaded("cuda:0", "ao-int8")) == (True, "auto on CUDA")
    assert auto_compile(loaded("cuda:0", "none"))[0]
    assert auto_compile(loaded("cuda:0", "8bit")) == (False, "8bit weights are not compiled")
    assert auto_compile(loaded("cpu", "none")) == (False, "")
    # The bundled Gemma 3 has sliding-window layers: not compiled by default, even on CUDA.
    bundled = loaded("cuda:0", "none", engine_int8.model)
    assert auto_compile(bundled) == (
        False,
        "not compiled: its sliding-window layers recompile the step",
    )
    # The CPU engine loaded with --compile unset is not compiled, and says nothing of it.
    assert not engine_int8.compiled and "torch.compile" not in engine_int8.describe()

    parser = build_parser()
    assert parser.parse_args([]).compile is None
    assert parser.parse_args(["--compile"]).compile is True
    assert parser.parse_args(["--no-compile"]).compile is False
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "ao-int8 with the fast path (--compile)" in text
    assert "Default auto: on for CUDA with none or ao-int8 weights" in text

    class OnGpu:  # a model on a GPU: generate evaluates a prompt in one pass, as raw does
        device = __import__("torch").device("cuda")

    assert first_chunk(OnGpu()) == GPU_CHUNK


def test_auto_runs_bf16_decode_steps_outside_onednn_and_stays_close(engine, reference):
    """auto's bf16 on the CPU: every one-token forward pass runs with oneDNN off, every
    longer one (the prompt) with it on, the switch is put back after each pass (also when
    one fails), the output stays close to plain bf16, and a mode named with --quant
    computes as plain transformers does (no switch)."""
    import torch

    from chatapp.engine import LocalEngine
    from chatapp.engine.closeness import next_token_logprobs

    assert engine.loaded.one_token_steps is None  # the fixture named --quant none
    auto = LocalEngine.load("bundled", quant="auto", dtype="bfloat16", reply_tokens=8)
    assert auto.loaded.quant == "none" and auto.loaded.one_token_steps is not None
    assert "decode steps without oneDNN" in auto.describe()
    seen: list[tuple[int, bool]] = []
    layer = auto.model.model.layers[0]
    probe = layer.register_forward_pre_hook(
        lambda module, args: seen.append((args[0].shape[1], torch.backends.mkldnn.enabled))
    )
    try:
        assert torch.backends.mkldnn.enabled
        stats = auto.stream_reply(HELLO, GREEDY.replace(max_new_tokens=4))
        assert stats.new_tokens == 4
        # The prompt (in chunks where the CPU has no native bf16) runs with oneDNN, each
        # one-token step without it: every pass, and the three steps after the first token.
        assert seen[0][0] > 1
        assert all(enabled == (tokens > 1) for tokens, enabled in seen), seen
        assert [tokens for tokens, _ in seen if tokens == 1] == [1] * 3
        assert torch.backends.mkldnn.enabled  # put back
        with pytest.raises(IndexError):  # a pass that fails puts it back too
            auto.model(input_ids=torch.tensor([[10**7]]))
        assert torch.backends.mkldnn.enabled
        result = compare(
            reference, next_token_logprobs(auto.model, closeness_ids(engine.tokenizer))
        )
        assert result.close(), str(result)
    finally:
        probe.remove()
