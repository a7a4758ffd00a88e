"""Model loading: the bundled-model cache and one clear message per failure."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chatapp import paths
from chatapp.engine import bundled
from chatapp.engine.bundled import bundled_cache_is_complete, ensure_bundled_model
from chatapp.engine.loading import classify_load_error, load_model
from chatapp.engine.types import ModelLoadError


@pytest.fixture
def converted(bundled_folder):
    """The complete converted cache folder (converted once for the session)."""
    assert bundled_cache_is_complete(bundled_folder)
    return bundled_folder


@pytest.mark.model
def test_cache_missing_marker_is_incomplete(converted, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(converted, copy)
    assert bundled_cache_is_complete(copy)
    (copy / "chatapp-complete.json").unlink()
    assert not bundled_cache_is_complete(copy)


@pytest.mark.model
def test_cache_truncated_weights_are_incomplete(converted, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(converted, copy)
    with open(copy / "model.safetensors", "r+b") as handle:
        handle.truncate(1000)
    assert not bundled_cache_is_complete(copy)


@pytest.mark.model
def test_cache_garbled_marker_is_incomplete(converted, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(converted, copy)
    (copy / "chatapp-complete.json").write_text("{not json")
    assert not bundled_cache_is_complete(copy)


@pytest.mark.model
def test_conversion_killed_midway_is_rebuilt_never_loaded(bundled_folder, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    env = {**os.environ, "CHATAPP_CACHE_DIR": str(cache)}
    code = "from chatapp.engine.bundled import ensure_bundled_model; ensure_bundled_model()"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    models = cache / "models"
    deadline = time.time() + 120
    # Kill it once the partial conversion has started writing.
    while time.time() < deadline:
        partials = list(models.glob(".gemma3-270m.partial-*")) if models.exists() else []
        if any(list(p.rglob("*.gguf")) for p in partials):
            break
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    target = models / "gemma3-270m"
    assert not bundled_cache_is_complete(target)
    # A half-written target (as an older crash could leave) must be replaced, too.
    target.mkdir(parents=True, exist_ok=True)
    (target / "model.safetensors").write_bytes(b"half")
    monkeypatch.setenv("CHATAPP_CACHE_DIR", str(cache))
    # The rebuild gets the files the session's conversion made, linked (or copied): one
    # conversion per run is enough to know the conversion works.
    converted = []

    def convert(work: Path, progress) -> None:
        converted.append(work)
        for file in bundled_folder.iterdir():
            try:
                os.link(file, work / file.name)
            except OSError:  # another file system
                shutil.copy2(file, work / file.name)

    monkeypatch.setattr(bundled, "_convert_bundled", convert)
    stages = []
    folder = ensure_bundled_model(lambda message, fraction: stages.append(message))
    assert len(converted) == 1 and converted[0].name.startswith(".gemma3-270m.partial-")
    assert folder == target
    assert bundled_cache_is_complete(folder)
    assert any("half-written" in s for s in stages)
    assert not list(models.glob(".gemma3-270m.partial-*")), "stale partial folders are cleaned up"
    marker = json.loads((folder / "chatapp-complete.json").read_text())
    assert marker["files"]["model.safetensors"] == (folder / "model.safetensors").stat().st_size


def test_unknown_path_is_one_clear_line(tmp_path):
    with pytest.raises(
        ModelLoadError, match=r"No model at .*nope: the path does not exist"
    ) as info:
        load_model(str(tmp_path / "nope"), quant="none")
    assert info.value.kind == "not_found"


def test_offline_model_not_in_cache_suggests_bundled(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="not in the local cache.*--model bundled") as info:
        load_model("google/gemma-2b-it", quant="none")
    assert info.value.kind == "offline"


def test_corrupt_model_folder_is_reported(tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text("{ this is not json")
    with pytest.raises(ModelLoadError, match="Could not load"):
        load_model(str(folder), quant="none")


def test_gated_model_error_explains_licence_and_login():
    # What transformers raises for a gated repo without access (utils/hub.py).
    exc = OSError(
        "You are trying to access a gated repo.\nMake sure to have access to it at "
        "https://huggingface.co/google/gemma-2b-it.\n401 Client Error."
    )
    error = classify_load_error("google/gemma-2b-it", exc)
    assert error.kind == "gated"
    assert "accept its licence" in str(error) and "hf auth login" in str(error)


def test_out_of_memory_suggests_smaller_options():
    import torch

    error = classify_load_error(
        "big/model", torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
    )
    assert error.kind == "memory"
    assert "--quant 4bit" in str(error)
    assert classify_load_error("x/y", MemoryError()).kind == "memory"


def test_bad_quant_choice_is_rejected():
    with pytest.raises(ModelLoadError, match="--quant must be one of"):
        load_model("bundled", quant="3bit")


def test_native_bf16_is_read_from_the_cpu_flags_and_a_held_back_onednn(tmp_path, monkeypatch):
    from chatapp.engine.quantization import cpu_has_native_bf16, fbgemm_reduce_range

    avx512 = tmp_path / "avx512"
    avx512.write_text("flags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n")
    avx2 = tmp_path / "avx2"
    avx2.write_text("flags\t\t: fpu avx2 fma\n")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("FBGEMM_ENABLE_INSTRUCTIONS", raising=False)
    assert cpu_has_native_bf16(str(avx512)) and not cpu_has_native_bf16(str(avx2))
    assert not fbgemm_reduce_range(str(avx512)) and fbgemm_reduce_range(str(avx2))
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setenv("FBGEMM_ENABLE_INSTRUCTIONS", "AVX2")
    assert not cpu_has_native_bf16(str(avx512))
    assert fbgemm_reduce_range(str(avx512))


def _as_transformers_writes_it(path) -> None:
    """tokenizer.json as save_pretrained writes it: indented, merges as pairs."""
    data = json.loads(path.read_text(encoding="utf-8"))
    merges = data["model"]["merges"]
    if merges and isinstance(merges[0], str):
        data["model"]["merges"] = [m.split(" ") for m in merges]
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")


@pytest.mark.model
def test_the_compacted_tokenizer_json_is_the_same_tokenizer(converted, tmp_path):
    from tokenizers import Tokenizer

    from chatapp.engine.bundled import compact_tokenizer_json

    original = tmp_path / "tokenizer.json"
    shutil.copy(converted / "tokenizer.json", original)
    _as_transformers_writes_it(original)
    before = Tokenizer.from_file(str(original))
    size = original.stat().st_size
    assert compact_tokenizer_json(original)
    data = json.loads(original.read_text(encoding="utf-8"))
    assert isinstance(data["model"]["merges"][0], str)
    assert original.stat().st_size < size * 0.7
    after = Tokenizer.from_file(str(original))
    seed = (Path(__file__).resolve().parents[2] / "shared" / "seed").glob("*.txt")
    texts = [
        "<start_of_turn>user\n使用繁體中文回答，請問什麼是大型語言模型？<end_of_turn>\n",
        "Hello **world**\n\n```python\nx = 1\n```\n",
        "  spaced\tout  émoji 🤖\n\n\n",
        *[p.read_text(encoding="utf-8") for p in seed],
    ]
    for text in texts:
        assert before.encode(text).ids == after.encode(text).ids
    ids = list(range(0, before.get_vocab_size(), 97))
    assert before.decode(ids) == after.decode(ids)
    assert not compact_tokenizer_json(original)  # already compact: left alone


@pytest.mark.model
def test_a_cache_from_an_earlier_chatapp_is_upgraded_in_place(converted, tmp_path, monkeypatch):
    monkeypatch.setenv("CHATAPP_CACHE_DIR", str(tmp_path / "cache"))
    target = paths.bundled_model_dir()
    shutil.copytree(converted, target)
    _as_transformers_writes_it(target / "tokenizer.json")
    marker = json.loads((target / "chatapp-complete.json").read_text())
    marker["format"] = 2
    marker["files"]["tokenizer.json"] = (target / "tokenizer.json").stat().st_size
    (target / "chatapp-complete.json").write_text(json.dumps(marker))
    weights = (target / "model.safetensors").stat()
    assert not bundled_cache_is_complete(target)
    stages = []
    assert ensure_bundled_model(lambda message, fraction: stages.append(message)) == target
    assert stages == []  # not converted again
    assert bundled_cache_is_complete(target)
    assert (target / "model.safetensors").stat().st_mtime_ns == weights.st_mtime_ns
    data = json.loads((target / "tokenizer.json").read_text(encoding="utf-8"))
    assert isinstance(data["model"]["merges"][0], str)


def test_the_conversion_parses_the_gguf_file_once(tmp_path, monkeypatch):
    """transformers opens a GGUF file three times (config, weights, tokenizer); inside the
    conversion each path is parsed once (the real conversion is timed by the conversion
    test above and by the first-run figures)."""
    import gguf

    from chatapp.engine.framework_internals import one_gguf_reader_per_file

    opened = []

    class Reader:
        def __init__(self, path, mode="r"):
            opened.append((str(path), mode))

    monkeypatch.setattr(gguf, "GGUFReader", Reader)
    with one_gguf_reader_per_file():
        first = gguf.GGUFReader(tmp_path / "a.gguf")
        assert gguf.GGUFReader(str(tmp_path / "a.gguf")) is first
        assert gguf.GGUFReader(tmp_path / "b.gguf") is not first
    assert gguf.GGUFReader is Reader  # restored
    assert len(opened) == 2
