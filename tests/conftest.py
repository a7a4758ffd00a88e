"""Shared fixtures: private config/cache folders and one loaded bundled model per session."""

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


@pytest.fixture(autouse=True)
def private_config(tmp_path, monkeypatch):
    """Every test gets its own config and data folders."""
    monkeypatch.setenv("CHATAPP_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("CHATAPP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("CHATAPP_PRESETS_FILE", raising=False)
    return tmp_path / "config"


@pytest.fixture(scope="session")
def engine():
    """The real bundled Gemma 3 270M on the CPU, loaded once, in the dtype a user gets
    here (bf16 where the CPU has native bf16, else float32)."""
    from chatapp.engine import LocalEngine
    from chatapp.engine.framework_internals import silence_libraries

    silence_libraries()
    return LocalEngine.load("bundled", quant="none", dtype="auto")


@pytest.fixture(scope="session")
def engine32(engine):
    """The same weights in float32, where reused and fresh KV agree to the last bits that
    matter (bf16 rounds logits to steps of 0.125, so a near-tie can flip)."""
    from chatapp.engine import LocalEngine

    return LocalEngine.load("bundled", quant="none", dtype="float32")


@pytest.fixture(scope="session")
def engine_int8(engine):
    """The bundled model in the CPU's fast mode: int8-dynamic, loaded as --quant auto (the
    default) loads it on the CPU."""
    from chatapp.engine import LocalEngine

    return LocalEngine.load("bundled", quant="auto")
