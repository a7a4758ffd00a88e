"""Shared fixtures: private config/cache folders, and each kind of loaded bundled model once
per session. A test that loads the bundled model must be marked ``model``: ``pytest -m
"not model"`` is the quick run, and a test that loads it unmarked fails here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The converted bundled model is kept between runs in the repo's (ignored) .test-cache,
# never in the real home directory.  CI starts from a clean clone, so it converts once.
MODEL_CACHE = Path(os.environ.get("CHATAPP_TEST_MODEL_CACHE", ROOT / ".test-cache" / "cache"))

os.environ["CHATAPP_CACHE_DIR"] = str(MODEL_CACHE)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two workers on two cores: one thread each (torch's default, a thread per core in
    # every worker, would have them fight over the cores).
    os.environ.setdefault("OMP_NUM_THREADS", "1")

UNMARKED_LOAD = "a test not marked model loads the bundled model"


@pytest.fixture(autouse=True)
def private_config(tmp_path, monkeypatch):
    """Every test gets its own config and data folders."""
    monkeypatch.setenv("CHATAPP_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("CHATAPP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("CHATAPP_PRESETS_FILE", raising=False)
    return tmp_path / "config"


@pytest.fixture(scope="session")
def no_model_cache(tmp_path_factory) -> Path:
    """A cache folder where the bundled model can be neither found nor converted: its
    ``models`` is a file, so a process that tries names this folder in its error."""
    cache = tmp_path_factory.mktemp("cache") / UNMARKED_LOAD.replace(" ", "-")
    cache.mkdir()
    (cache / "models").write_text(UNMARKED_LOAD + "; mark it @pytest.mark.model\n")
    return cache


@pytest.fixture(autouse=True)
def model_only_where_marked(request, monkeypatch, no_model_cache):
    """A test not marked ``model`` that loads the bundled model fails, in this process
    (where the bundled folder is asked for) or in one it starts (an unusable cache)."""
    if request.node.get_closest_marker("model"):
        yield
        return
    from chatapp import paths

    asked: list[str] = []

    def refuse() -> Path:
        asked.append(request.node.nodeid)
        raise RuntimeError(f"{UNMARKED_LOAD}: mark it @pytest.mark.model")

    monkeypatch.setattr(paths, "bundled_model_dir", refuse)
    monkeypatch.setenv("CHATAPP_CACHE_DIR", str(no_model_cache))
    yield
    if asked:
        pytest.fail(f"{UNMARKED_LOAD}: mark it @pytest.mark.model", pytrace=False)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Fail before its fixtures load a model: an unmarked test asking for a loaded one."""
    if "bundled_folder" in getattr(item, "fixturenames", ()) and not item.get_closest_marker(
        "model"
    ):
        pytest.fail(f"{UNMARKED_LOAD} (through its fixtures): mark it @pytest.mark.model")


@pytest.fixture(scope="session")
def bundled_folder() -> Path:
    """The converted bundled model's folder, converted at most once per run (every
    fixture that loads the model asks for it first)."""
    from chatapp.engine.bundled import ensure_bundled_model
    from chatapp.engine.framework_internals import silence_libraries

    silence_libraries()
    return ensure_bundled_model()


@pytest.fixture(scope="session")
def engine(bundled_folder):
    """The real bundled Gemma 3 270M on the CPU, loaded once, in the dtype a user gets
    here (bf16 where the CPU has native bf16, else float32)."""
    from chatapp.engine import LocalEngine

    return LocalEngine.load("bundled", quant="none", dtype="auto")


@pytest.fixture(scope="session")
def engine32(bundled_folder):
    """The same weights in float32, where reused and fresh KV agree to the last bits that
    matter (bf16 rounds logits to steps of 0.125, so a near-tie can flip)."""
    from chatapp.engine import LocalEngine

    return LocalEngine.load("bundled", quant="none", dtype="float32")


@pytest.fixture(scope="session")
def engine_int8(bundled_folder):
    """The bundled model in the CPU's fast mode: int8-dynamic, loaded as --quant auto (the
    default) loads it on the CPU."""
    from chatapp.engine import LocalEngine

    return LocalEngine.load("bundled", quant="auto")


@pytest.fixture(scope="session")
def engine_8bit(bundled_folder):
    """The bundled model with bitsandbytes' 8-bit weights (--quant 8bit)."""
    from chatapp.engine import LocalEngine

    return LocalEngine.load("bundled", quant="8bit")


@pytest.fixture(scope="session")
def engine_4bit(bundled_folder):
    """The bundled model with bitsandbytes' 4-bit weights (--quant 4bit)."""
    from chatapp.engine import LocalEngine

    return LocalEngine.load("bundled", quant="4bit")
