"""Small remembered choices (last theme, help language), kept in settings.toml."""

from __future__ import annotations

import tomllib
from typing import Any

import tomlkit

from chatapp import paths


def load_settings() -> dict[str, Any]:
    """The saved settings; an unreadable file gives an empty dict (and is left alone)."""
    try:
        return dict(tomllib.loads(paths.settings_file().read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


def save_setting(key: str, value: Any) -> None:
    """Remember one value (atomic write; other keys are kept)."""
    settings = load_settings()
    settings[key] = value
    paths.atomic_write_text(paths.settings_file(), tomlkit.dumps(settings))
