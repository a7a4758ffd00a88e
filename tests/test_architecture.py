"""Layering: the engine, the parameter spec and the preset store never import the UI."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_linter_contract_holds():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    result = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    import tomllib

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert f"{len(contracts['contracts'])} kept, 0 broken" in result.stdout


def test_params_and_paths_import_no_torch():
    code = "import sys, chatapp.params, chatapp.paths, chatapp.presets; print('torch' in sys.modules, 'textual' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "False"]


def test_themes_ship_inside_the_package():
    from chatapp.tui.themes import bundled_themes_dir, load_themes

    names = {p.stem for p in bundled_themes_dir().glob("*.toml")}
    assert len(names) >= 3
    loaded = load_themes()
    assert not loaded.errors
    assert any(not t.dark for t in loaded.themes), "at least one light theme"


def test_ruff_lint_and_format_are_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    for args in (
        ["check", "chatapp", "tests", "bench"],
        ["format", "--check", "chatapp", "tests", "bench"],
    ):
        result = subprocess.run([ruff, *args], cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
