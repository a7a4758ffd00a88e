"""Every filesystem location chatapp uses, over platformdirs.

Each can be moved by an environment variable, so tests never touch a real home
directory:

- ``CHATAPP_CONFIG_DIR``: settings, presets and user themes
- ``CHATAPP_CACHE_DIR``: the converted bundled model
- ``CHATAPP_DATA_DIR``: exported chats
- ``CHATAPP_PRESETS_FILE``: the presets file itself
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import platformdirs

APP_NAME = "chatapp"


def _dir(env: str, default: str) -> Path:
    value = os.environ.get(env)
    return Path(value).expanduser() if value else Path(default)


def config_dir() -> Path:
    """User config folder (presets, settings, themes)."""
    return _dir("CHATAPP_CONFIG_DIR", platformdirs.user_config_dir(APP_NAME, appauthor=False))


def cache_dir() -> Path:
    """User cache folder (the converted bundled model)."""
    return _dir("CHATAPP_CACHE_DIR", platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def data_dir() -> Path:
    """User data folder (exported chats)."""
    return _dir("CHATAPP_DATA_DIR", platformdirs.user_data_dir(APP_NAME, appauthor=False))


def presets_file() -> Path:
    """The TOML file of the user's presets."""
    value = os.environ.get("CHATAPP_PRESETS_FILE")
    return Path(value).expanduser() if value else config_dir() / "presets.toml"


def settings_file() -> Path:
    """Small remembered choices (last theme, help language)."""
    return config_dir() / "settings.toml"


def user_themes_dir() -> Path:
    """Folder of the user's own theme files."""
    return config_dir() / "themes"


def bundled_model_dir() -> Path:
    """Where the bundled Gemma 3 270M is converted to safetensors + tokenizer.json."""
    return cache_dir() / "models" / "gemma3-270m"


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a crash leaves the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
