"""Small remembered choices (last theme, help language), kept in settings.toml.

The file is the user's: one that cannot be read is reported and left as it is until a
setting changes, and then it is kept as a backup before a new one is written. Saving
re-reads the file under a lock and changes only its own key, so comments, unknown keys
and another app instance's changes survive.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import tomlkit

from chatapp import paths


class SettingsFile:
    """The settings, read once; ``load_error`` says why the file could not be read."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or paths.settings_file()
        self.load_error: str | None = None
        self.values: dict[str, Any] = {}
        try:
            self.values = dict(tomllib.loads(self.path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            self.load_error = (
                f"Settings file {self.path} could not be read ({exc}); it was left untouched"
            )

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any) -> str | None:
        """Remember one value; returns the backup's path when an unreadable file had to
        be set aside first."""
        self.values[key] = value
        with paths.file_lock(self.path):
            doc, backup = paths.read_toml_for_update(self.path)
            doc[key] = value
            paths.atomic_write_text(self.path, tomlkit.dumps(doc))
        if backup is not None:
            self.load_error = None
        return str(backup) if backup is not None else None
