"""Named sets of sampling values: built-ins plus the user's own, kept in a TOML file."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomlkit

from chatapp import paths
from chatapp.params import TUTORIAL_VALUES, ParamsError, SamplingParams


class PresetError(ValueError):
    """A preset action that cannot be done; ``str()`` is the message for the user."""


@dataclass(frozen=True)
class Preset:
    """A named set of sampling values; ``builtin`` ones cannot be changed."""

    name: str
    params: SamplingParams
    builtin: bool = False


BUILTINS: tuple[Preset, ...] = (
    Preset(
        "Greedy",
        SamplingParams(
            do_sample=False,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            repetition_penalty=1.0,
        ),
        True,
    ),
    Preset("Tutorial", SamplingParams(**TUTORIAL_VALUES), True),
    Preset(
        "Creative",
        SamplingParams(temperature=1.1, top_k=0, top_p=0.98, repetition_penalty=1.05),
        True,
    ),
    Preset(
        "Precise",
        SamplingParams(temperature=0.3, top_k=20, top_p=0.8, repetition_penalty=1.1),
        True,
    ),
    Preset(
        "Min-p",
        SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.05, repetition_penalty=1.0),
        True,
    ),
)
_BUILTIN_NAMES = {p.name.casefold(): p for p in BUILTINS}
# Built-in names used by earlier versions: ``--preset`` still finds them, and they stay
# reserved, so a user preset of that name is still skipped as before.
_BUILTIN_NAMES["seed tutorial"] = _BUILTIN_NAMES["tutorial"]


class PresetStore:
    """Built-in presets plus the user's, saved atomically to ``paths.presets_file()``.

    A file that cannot be read is left untouched and reported in ``load_error``; it is
    not written over until the user saves, and then it is kept as a backup first. An
    entry with a bad value is reported as skipped and stays in the file.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or paths.presets_file()
        self.load_error: str | None = None
        self.skipped: list[str] = []
        self._user: dict[str, Preset] = {}
        self.reload()

    def reload(self) -> None:
        """Read the file again (another app instance may have changed it)."""
        self._user.clear()
        self.load_error = None
        self.skipped = []
        if not self.path.exists():
            return
        try:
            data = tomllib.loads(self.path.read_text(encoding="utf-8"))
            table = data.get("presets", {})
            if not isinstance(table, dict):
                raise ValueError("'presets' is not a table")
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            self.load_error = (
                f"Presets file {self.path} could not be read ({exc}); it was left untouched"
            )
            return
        for name, values in table.items():
            try:
                if not isinstance(values, dict):
                    raise ValueError("not a table of values")
                params = SamplingParams.from_mapping(values)
            except (ParamsError, ValueError) as exc:
                self.skipped.append(f"{name}: {exc}")
                continue
            if name.casefold() in _BUILTIN_NAMES:
                self.skipped.append(f"{name}: the name of a built-in preset")
                continue
            self._user[name] = Preset(name, params)
        if self.skipped:
            self.load_error = f"Presets file {self.path}: skipped " + "; ".join(self.skipped)

    # -- reading --------------------------------------------------------------------------
    def all(self) -> list[Preset]:
        """The built-ins, then the user's presets in file order."""
        return [*BUILTINS, *self._user.values()]

    def names(self) -> list[str]:
        """Every preset's name, built-ins first."""
        return [p.name for p in self.all()]

    def get(self, name: str) -> Preset | None:
        """A preset by name (case-insensitive)."""
        key = name.casefold()
        if key in _BUILTIN_NAMES:
            return _BUILTIN_NAMES[key]
        for preset in self._user.values():
            if preset.name.casefold() == key:
                return preset
        return None

    # -- writing --------------------------------------------------------------------------
    def _check_name(self, name: str) -> str:
        name = name.strip()
        if not name:
            raise PresetError("A preset needs a name")
        if name.casefold() in _BUILTIN_NAMES:
            raise PresetError(f"{name!r} is a built-in preset and cannot be changed")
        return name

    def save(self, name: str, params: SamplingParams, overwrite: bool = False) -> Preset:
        """Save a user preset; an existing one is replaced only with ``overwrite``."""
        name = self._check_name(name)
        self.reload()  # another app instance may have saved presets since
        existing = self.get(name)
        if existing is not None and not overwrite:
            raise PresetError(f"A preset named {existing.name!r} exists; overwrite it?")

        def change(table: Any) -> None:
            if existing is not None and existing.name != name:
                table.pop(existing.name, None)
            table[name] = _values(params)

        self._edit(change)
        return Preset(name, params)

    def rename(self, old: str, new: str) -> Preset:
        """Rename a user preset; built-ins cannot be renamed."""
        self.reload()
        preset = self.get(old)
        if preset is None:
            raise PresetError(f"No preset named {old!r}")
        self._check_name(preset.name)
        new = self._check_name(new)
        if self.get(new) is not None and new.casefold() != preset.name.casefold():
            raise PresetError(f"A preset named {new!r} exists already")

        def change(table: Any) -> None:
            table.pop(preset.name, None)
            table[new] = _values(preset.params)

        self._edit(change)
        return Preset(new, preset.params)

    def delete(self, name: str) -> None:
        """Delete a user preset; built-ins cannot be deleted."""
        self.reload()
        preset = self.get(name)
        if preset is None:
            raise PresetError(f"No preset named {name!r}")
        self._check_name(preset.name)
        self._edit(lambda table: table.pop(preset.name, None))

    def _edit(self, change: Callable[[Any], object]) -> None:
        """Re-read the file under a lock and change only the entries named: every other
        entry (skipped ones too) and the user's comments are kept, and presets another
        app instance saved meanwhile are not lost."""
        with paths.file_lock(self.path):
            doc, backup = paths.read_toml_for_update(self.path)
            table = doc.get("presets")
            if table is None or not isinstance(table, dict):
                if table is not None:  # a 'presets' that is not a table: keep the file
                    doc, backup = tomlkit.document(), paths.keep_backup(self.path)
                if not doc.body:
                    doc.add(
                        tomlkit.comment("chatapp presets: one table per preset under [presets]")
                    )
                table = tomlkit.table(is_super_table=True)
                doc["presets"] = table
            change(table)
            paths.atomic_write_text(self.path, tomlkit.dumps(doc))
        self.reload()
        if backup is not None:
            self.load_error = f"The unreadable presets file was kept as {backup}"


def _values(params: SamplingParams) -> dict[str, Any]:
    return {k: v for k, v in params.to_dict().items() if v is not None}
