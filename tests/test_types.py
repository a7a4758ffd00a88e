"""The typed core passes mypy --strict (the files and settings are in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_typed_modules_pass_mypy_strict():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mypy"]
    assert config["strict"] is True
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(ROOT / ".test-cache" / "mypy")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # Every configured file was checked: a ``files`` entry that matches nothing is no check.
    count = sum(
        len(list((ROOT / entry).rglob("*.py"))) if (ROOT / entry).is_dir() else 1
        for entry in config["files"]
    )
    assert f"no issues found in {count} source files" in output, output
