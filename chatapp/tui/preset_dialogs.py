"""Preset dialogs (load, save, rename, delete) over the preset store and the panel."""

from __future__ import annotations

from textual.app import App

from chatapp.params import SamplingParams
from chatapp.presets import PresetError, PresetStore
from chatapp.tui.panel import ParamPanel
from chatapp.tui.widgets import Confirm, TextPrompt


class PresetDialogs:
    """Preset actions: ``presets`` is the store, ``host`` the app that shows the panel
    and the dialogs."""

    def __init__(self, host: App[int], presets: PresetStore) -> None:
        self.host = host
        self.presets = presets

    def _panel(self) -> ParamPanel:
        return self.host.query_one(ParamPanel)

    def load(self, name: str) -> None:
        preset = self.presets.get(name)
        if preset is None:
            self.host.notify(f"No preset named {name!r}", severity="error")
            return
        self._panel().apply(preset.params)
        self.host.notify(f"Preset {preset.name}: {preset.params.summary()}")

    def names_changed(self, selected: str | None = None) -> None:
        """Show the store's names in the panel's list (``selected`` shown as chosen)."""
        # Showing a name in the list is not choosing it: no PresetChosen echo.
        with self.host.prevent(ParamPanel.PresetChosen):
            self._panel().set_preset_names(self.presets.names(), selected)

    def save(self) -> None:
        """Ask for a name, and save the panel's values under it."""
        panel = self._panel()
        if panel.errors:
            self.host.notify(
                "Invalid fields are not saved; their last valid values are: "
                + ", ".join(panel.errors),
                severity="warning",
            )

        def named(name: str | None) -> None:
            if name:
                self.save_as(name.strip(), panel.params)

        self.host.push_screen(
            TextPrompt("Save the current parameters as preset:", placeholder="name"), named
        )

    def save_as(self, name: str, params: SamplingParams, overwrite: bool = False) -> None:
        """Save ``params`` as preset ``name`` (asks before overwriting one)."""
        try:
            preset = self.presets.save(name, params, overwrite=overwrite)
        except PresetError as exc:
            if "overwrite it?" in str(exc):

                def answer(yes: bool | None) -> None:
                    if yes:
                        self.save_as(name, params, overwrite=True)

                self.host.push_screen(Confirm(str(exc)), answer)
            else:
                self.host.notify(str(exc), severity="error")
            return
        self.names_changed()
        self.host.notify(f"Saved preset {preset.name} to {self.presets.path}")

    def rename(self, old: str) -> None:
        def named(new: str | None) -> None:
            if not new:
                return
            try:
                self.presets.rename(old, new.strip())
            except PresetError as exc:
                self.host.notify(str(exc), severity="error")
                return
            self.names_changed()
            self.host.notify(f"Renamed preset {old} to {new.strip()}")

        self.host.push_screen(TextPrompt(f"Rename preset {old} to:", value=old), named)

    def delete(self, name: str) -> None:
        def answer(yes: bool | None) -> None:
            if not yes:
                return
            try:
                self.presets.delete(name)
            except PresetError as exc:
                self.host.notify(str(exc), severity="error")
                return
            self.names_changed()
            self.host.notify(f"Deleted preset {name}")

        self.host.push_screen(Confirm(f"Delete preset {name}?"), answer)
