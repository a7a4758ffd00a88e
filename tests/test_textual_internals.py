"""The one seam to Textual's and Rich's private names: each name it relies on still
exists (a failure names the one that went away), and no other module reaches past the
public API."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from rich.markdown import Markdown
from textual._compositor import Compositor
from textual.app import App
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Input, TextArea

from chatapp.tui import textual_internals
from chatapp.tui.textual_internals import PRIVATE_NAMES, RICH_MARKDOWN_FIELDS, FastMarkdown

ROOT = Path(__file__).resolve().parent.parent


def _instance(cls: type) -> object:
    """An object of ``cls``, for names that exist only once ``__init__`` has set them."""
    if cls is Compositor:
        return Compositor()
    return {App: App, Screen: Screen, Widget: Widget, Input: Input, TextArea: TextArea}[cls]()


@pytest.mark.parametrize(
    "where,name", PRIVATE_NAMES, ids=[f"{w.__name__}.{n}" for w, n in PRIVATE_NAMES]
)
def test_each_private_textual_name_the_seam_uses_still_exists(where, name):
    assert hasattr(where, name) or hasattr(_instance(where), name), (
        f"Textual no longer has {where.__module__}.{where.__name__}.{name}: "
        "chatapp/tui/textual_internals.py needs updating"
    )


def test_fast_markdown_sets_exactly_what_rich_markdown_sets():
    assert set(vars(Markdown("x"))) == set(RICH_MARKDOWN_FIELDS), (
        "rich.markdown.Markdown.__init__ sets other attributes now: update FastMarkdown"
    )
    assert set(vars(FastMarkdown("x"))) == set(vars(Markdown("x")))


def test_version_warning_names_a_textual_outside_the_range(monkeypatch):
    textual_internals.version_warning.cache_clear()
    monkeypatch.setattr(textual_internals.textual, "__version__", "9.1.0")
    try:
        warning = textual_internals.version_warning()
        assert warning is not None and "Textual 9.1.0" in warning and "\n" not in warning
        textual_internals.version_warning.cache_clear()
        monkeypatch.setattr(textual_internals.textual, "__version__", "8.2.8")
        assert textual_internals.version_warning() is None
    finally:
        textual_internals.version_warning.cache_clear()


def test_no_module_outside_the_seams_names_a_private_framework_attribute():
    """Private Textual, Rich, transformers and torch names live in the two seam modules
    only: elsewhere, ``._name`` on anything but the module's own objects is suspect."""
    seams = {"chatapp/tui/textual_internals.py", "chatapp/engine/framework_internals.py"}
    textual_private = re.compile(
        r"textual\._|\.(_compositor|_dirty_widgets|_dirty_regions|_layout_required|"
        r"_repaint_required|_scroll_required|_size_updated|_bindings|_on_key|_batch_count|"
        r"_replace_via_keyboard|_full_map|_visible_map|_get_renders)\b"
    )
    found = []
    for path in sorted((ROOT / "chatapp").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative in seams:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if textual_private.search(line):
                found.append(f"{relative}:{number}: {line.strip()}")
    assert not found, "\n".join(found)
