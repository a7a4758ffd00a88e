"""The engine's seam to the frameworks' internals: every private transformers, torch or
gguf name it relies on is still there, by name, and nothing outside the seam reaches
for one. Fast: no model is loaded."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from chatapp.engine import framework_internals as internals

ENGINE = Path(internals.__file__).parent


@pytest.mark.parametrize("private", internals.PRIVATE_NAMES, ids=lambda p: p.label)
def test_every_private_name_the_seam_uses_is_still_there(private):
    try:
        owner = private.resolve_owner()
    except (ImportError, AttributeError) as exc:
        pytest.fail(f"{private.label}: its owner is gone ({exc})")
    package = private.module.split(".")[0]
    where = f"{private.owner}.{private.name}" if private.owner else private.name
    assert hasattr(owner, private.name), f"{package} no longer has {where}"
    if private.parameters:
        accepted = inspect.signature(getattr(owner, private.name)).parameters
        missing = [name for name in private.parameters if name not in accepted]
        assert not missing, f"{private.label} no longer takes {', '.join(missing)}"


def test_no_engine_module_but_the_seam_names_a_private_attribute():
    """Own objects' privates (``self._lock``) are fine; anything else belongs in the seam."""
    offenders = []
    for path in sorted(ENGINE.glob("*.py")):
        if path.name == "framework_internals.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in re.finditer(r"(\w+)\._[A-Za-z]\w*", line):
                if match.group(1) not in ("self", "cls"):
                    offenders.append(f"{path.name}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_the_tested_versions_pass_quietly_and_others_get_one_line(monkeypatch):
    internals.version_warning.cache_clear()
    try:
        assert internals.version_warning() is None  # the versions this suite runs on
        monkeypatch.setitem(internals.TESTED_VERSIONS, "torch", ((1, 0), (1, 13)))
        internals.version_warning.cache_clear()
        warning = internals.version_warning()
        assert warning is not None and "\n" not in warning
        assert warning.startswith("Untested torch ") and "torch 1.0-1.13" in warning
    finally:
        internals.version_warning.cache_clear()


def test_the_deferred_stop_check_patch_is_applied_once():
    from transformers.generation.utils import DeferredStopCheck

    assert internals.allow_deferred_stop_check()
    patched = DeferredStopCheck.__dict__["is_supported"]
    assert internals.allow_deferred_stop_check()
    assert DeferredStopCheck.__dict__["is_supported"] is patched


def test_the_compile_config_compiles_off_cuda_only_when_asked():
    assert internals.compile_config(all_devices=True)._compile_all_devices is True
    assert not internals.compile_config(all_devices=False)._compile_all_devices


def test_the_onednn_switch_is_put_back():
    before = internals.onednn_enabled()
    internals.set_onednn_enabled(not before)
    try:
        assert internals.onednn_enabled() is (not before)
    finally:
        internals.set_onednn_enabled(before)
    assert internals.onednn_enabled() is before


def test_the_gguf_reader_is_put_back_after_an_error(monkeypatch):
    import gguf

    class Reader:
        def __init__(self, path, mode="r"):
            pass

    monkeypatch.setattr(gguf, "GGUFReader", Reader)
    with pytest.raises(RuntimeError), internals.one_gguf_reader_per_file():
        assert gguf.GGUFReader is not Reader
        raise RuntimeError("conversion failed")
    assert gguf.GGUFReader is Reader
