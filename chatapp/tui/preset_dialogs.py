"""Preset dialogs (load, save, rename, delete), mixed into the app."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chatapp.params import SamplingParams
from chatapp.presets import PresetError
from chatapp.tui.panel import ParamPanel
from chatapp.tui.widgets import Confirm, TextPrompt

if TYPE_CHECKING:  # pragma: no cover
    from chatapp.tui.app import ChatApp

    _Base = ChatApp
else:
    _Base = object


class PresetDialogs(_Base):
    """Preset actions; the app supplies ``store`` (the PresetStore) and the panel."""

    def on_param_panel_preset_chosen(self, event: ParamPanel.PresetChosen) -> None:
        self.load_preset(event.name)

    def load_preset(self, name: str) -> None:
        preset = self.store.get(name)
        if preset is None:
            self.notify(f"No preset named {name!r}", severity="error")
            return
        self.query_one(ParamPanel).apply(preset.params)
        self.notify(f"Preset {preset.name}: {preset.params.summary()}")

    def _preset_names_changed(self, selected: str | None = None) -> None:
        # Showing a name in the list is not choosing it: no PresetChosen echo.
        with self.prevent(ParamPanel.PresetChosen):
            self.query_one(ParamPanel).set_preset_names(self.store.names(), selected)

    def action_save_preset(self) -> None:
        panel = self.query_one(ParamPanel)
        if panel.errors:
            self.notify(
                "Invalid fields are not saved; their last valid values are: "
                + ", ".join(panel.errors),
                severity="warning",
            )

        def named(name: str | None) -> None:
            if name:
                self._save_preset(name.strip(), self.params)

        self.push_screen(
            TextPrompt("Save the current parameters as preset:", placeholder="name"), named
        )

    def _save_preset(self, name: str, params: SamplingParams, overwrite: bool = False) -> None:
        try:
            preset = self.store.save(name, params, overwrite=overwrite)
        except PresetError as exc:
            if "overwrite it?" in str(exc):

                def answer(yes: bool | None) -> None:
                    if yes:
                        self._save_preset(name, params, overwrite=True)

                self.push_screen(Confirm(str(exc)), answer)
            else:
                self.notify(str(exc), severity="error")
            return
        self._preset_names_changed()
        self.notify(f"Saved preset {preset.name} to {self.store.path}")

    def rename_preset(self, old: str) -> None:
        def named(new: str | None) -> None:
            if not new:
                return
            try:
                self.store.rename(old, new.strip())
            except PresetError as exc:
                self.notify(str(exc), severity="error")
                return
            self._preset_names_changed()
            self.notify(f"Renamed preset {old} to {new.strip()}")

        self.push_screen(TextPrompt(f"Rename preset {old} to:", value=old), named)

    def delete_preset(self, name: str) -> None:
        def answer(yes: bool | None) -> None:
            if not yes:
                return
            try:
                self.store.delete(name)
            except PresetError as exc:
                self.notify(str(exc), severity="error")
                return
            self._preset_names_changed()
            self.notify(f"Deleted preset {name}")

        self.push_screen(Confirm(f"Delete preset {name}?"), answer)
