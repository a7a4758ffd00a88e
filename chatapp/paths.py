"""Every filesystem location chatapp uses, over platformdirs.

Each can be moved by an environment variable, so tests never touch a real home
directory:

- ``CHATAPP_CONFIG_DIR``: settings, presets and user themes
- ``CHATAPP_CACHE_DIR``: the converted bundled model
- ``CHATAPP_DATA_DIR``: the chat history database and exported chats
- ``CHATAPP_PRESETS_FILE``: the presets file itself
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

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
    """User data folder (the chat history, exported chats)."""
    return _dir("CHATAPP_DATA_DIR", platformdirs.user_data_dir(APP_NAME, appauthor=False))


def presets_file() -> Path:
    """The TOML file of the user's presets."""
    value = os.environ.get("CHATAPP_PRESETS_FILE")
    return Path(value).expanduser() if value else config_dir() / "presets.toml"


def history_file() -> Path:
    """The SQLite database of every chat."""
    return data_dir() / "chats.db"


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


def file_lock(path: Path) -> Any:
    """A lock held while a user file is re-read and rewritten (other processes too)."""
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path.with_name(f".{path.name}.lock")), timeout=10)


def keep_backup(path: Path) -> Path:
    """Copy ``path`` aside as ``NAME.bak-TIME`` before it is written over; raises
    OSError when it cannot be kept (and then nothing may write over it)."""
    import shutil
    import time

    backup = path.with_name(f"{path.name}.bak-{time.strftime('%Y%m%d-%H%M%S')}")
    shutil.copy2(path, backup)
    return backup


def read_toml_for_update(path: Path) -> tuple[Any, Path | None]:
    """The TOML document at ``path`` for an in-place edit (comments kept), and the backup
    it was copied to when it could not be parsed (then the document is empty)."""
    import tomlkit

    try:
        return tomlkit.parse(path.read_text(encoding="utf-8")), None
    except FileNotFoundError:
        return tomlkit.document(), None
    except (OSError, ValueError) as exc:  # tomlkit's ParseError is a ValueError
        try:
            return tomlkit.document(), keep_backup(path)
        except OSError:
            raise exc from None  # never write over a file that could not be kept
