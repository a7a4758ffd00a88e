"""Small remembered choices (last theme, help language), kept in settings.toml.

The file is the user's: one that cannot be read is reported and left as it is until a
setting changes, and then it is kept as a backup before a new one is written. Saving
re-reads the file under a lock and changes only its own key, so comments, unknown keys
and another app instance's changes survive.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomlkit

from chatapp import paths


@dataclass(frozen=True)
class Settings:
    """Every setting, one field each; a field's default applies while the file lacks it."""

    theme: str | None = None
    """The theme chosen last, by name; None means chatapp's default theme."""

    help_lang: str = "en"
    """The language of the parameter help: ``en`` (English) or ``zh`` (Traditional Chinese)."""

    recent_models: list[str] = dataclasses.field(default_factory=list)
    """The models and servers picked last with "Model…", newest first (paths, hub ids,
    server URLs)."""

    servers: list[str] = dataclasses.field(default_factory=list)
    """OpenAI-compatible servers "Model…" offers (URLs such as http://host:8000/v1)."""


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(Settings)


def _is(value: Any, kind: Any) -> bool:
    """``isinstance`` that also checks a ``list[str]``'s items."""
    if typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind)
        return isinstance(value, list) and all(isinstance(v, item) for v in value)
    return isinstance(value, kind)


class SettingsFile:
    """The settings, read once; ``load_error`` says why the file (or a value in it) could
    not be used."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or paths.settings_file()
        self.load_error: str | None = None
        self.values = Settings()
        try:
            data = tomllib.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            self.load_error = (
                f"Settings file {self.path} could not be read ({exc}); it was left untouched"
            )
            return
        good: dict[str, Any] = {}
        bad: list[str] = []
        for name, kind in _field_types().items():
            if name not in data:
                continue
            if _is(data[name], kind):
                good[name] = list(data[name]) if isinstance(data[name], list) else data[name]
            else:
                bad.append(f"{name} = {data[name]!r}")
        self.values = Settings(**good)
        if bad:
            self.load_error = f"Settings file {self.path}: the default is used for " + ", ".join(
                bad
            )

    def set(self, name: str, value: Any) -> str | None:
        """Remember one setting (a ``Settings`` field); returns the backup's path when an
        unreadable file had to be set aside first. Raises TypeError for a value of the
        wrong type and KeyError for a name that is not a setting."""
        kind = _field_types()[name]
        if not _is(value, kind):
            raise TypeError(f"setting {name} cannot be {value!r}")
        self.values = dataclasses.replace(self.values, **{name: value})
        with paths.file_lock(self.path):
            doc, backup = paths.read_toml_for_update(self.path)
            if value is None:
                doc.pop(name, None)  # TOML has no null: the default applies
            else:
                doc[name] = value
            paths.atomic_write_text(self.path, tomlkit.dumps(doc))
        if backup is not None:
            self.load_error = None
        return str(backup) if backup is not None else None
