"""Themes: TOML files in the top-level themes/ folder (shipped in the package) and the
user's config ``themes`` folder, turned into Textual ``Theme`` objects."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from textual.app import App
from textual.color import Color, ColorParseError
from textual.theme import Theme

from chatapp import paths
from chatapp.settings import SettingsFile

_COLOR_FIELDS = (
    "primary",
    "secondary",
    "warning",
    "error",
    "success",
    "accent",
    "foreground",
    "background",
    "surface",
    "panel",
    "boost",
)


@dataclass
class ThemeLoad:
    themes: list[Theme] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def bundled_themes_dir() -> Path:
    """The themes shipped with chatapp (``chatapp/themes`` links to the top-level folder)."""
    return Path(str(resources.files("chatapp").joinpath("themes")))


def parse_theme(path: Path) -> Theme:
    """One theme file; raises ValueError with a readable reason."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    name = data.get("name") or path.stem
    if not isinstance(name, str):
        raise ValueError("'name' must be text")
    if "primary" not in data:
        raise ValueError("'primary' colour is missing")
    kwargs: dict = {"name": name, "dark": bool(data.get("dark", True))}
    for key in _COLOR_FIELDS:
        if key in data:
            try:
                Color.parse(data[key])
            except (ColorParseError, TypeError):
                raise ValueError(f"{key} = {data[key]!r} is not a colour") from None
            kwargs[key] = data[key]
    variables = data.get("variables", {})
    if not isinstance(variables, dict):
        raise ValueError("'variables' must be a table")
    kwargs["variables"] = {str(k): str(v) for k, v in variables.items()}
    return Theme(**kwargs)


def load_themes() -> ThemeLoad:
    """Bundled themes, then user themes (a user theme may replace a bundled one)."""
    result = ThemeLoad()
    folders = [bundled_themes_dir(), paths.user_themes_dir()]
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.toml")):
            try:
                result.themes.append(parse_theme(path))
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                result.errors.append(f"Theme file {path} skipped: {exc}")
    return result


DEFAULT_THEME = "chatapp-dark"


def use_themes(app: App[Any], requested: str | None, settings: SettingsFile) -> None:
    """Register the bundled and user themes with ``app``, switch to the one asked for
    (else the saved one, else the default), and save each later choice in ``settings``.
    A theme that cannot be used is named in a notification, never fatal."""
    loaded = load_themes()
    for theme in loaded.themes:
        app.register_theme(theme)
    for error in loaded.errors:
        app.notify(error, title="Theme skipped", severity="warning", timeout=8)
    wanted = requested or settings.values.theme or DEFAULT_THEME
    if wanted not in app.available_themes:
        app.notify(f"No theme named {wanted!r}; using {DEFAULT_THEME}", severity="warning")
        wanted = DEFAULT_THEME
    app.theme = wanted

    def remember(theme: Theme) -> None:
        if theme.name != settings.values.theme:
            settings.set("theme", theme.name)

    app.theme_changed_signal.subscribe(app, remember)
