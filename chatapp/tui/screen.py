"""The app's main screen."""

from __future__ import annotations

from typing import Any

from textual.screen import Screen

from chatapp.tui.textual_internals import use_update_compositor


class ChatScreen(Screen[None]):
    """The app's main screen: Textual's default screen, drawing partial updates with
    ``textual_internals.UpdateCompositor``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        use_update_compositor(self)
