"""Write the message in ``$VISUAL`` or ``$EDITOR`` (Ctrl+G): the message box's text goes to
a temporary file, the app steps aside for the editor (``App.suspend``: the terminal is
the editor's until it exits, over SSH too), and the file's text comes back to the box."""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from pathlib import Path

from textual.app import App, SuspendNotSupported
from textual.widgets import TextArea


def editor_command() -> list[str] | None:
    """``$VISUAL``, else ``$EDITOR``, split as a shell would (``code --wait``); None when
    neither is set."""
    for name in ("VISUAL", "EDITOR"):
        value = os.environ.get(name, "").strip()
        if value:
            return shlex.split(value)
    return None


def edit_text(app: App[object], text: str) -> str | None:
    """``text`` as the user left it in their editor, or None (and why, in a notification)
    when there is no editor, it cannot start, or it exits with an error."""
    command = editor_command()
    if command is None:
        app.notify(
            "Set $VISUAL or $EDITOR (for example: export EDITOR=nano) to write messages "
            "in your editor.",
            title="No editor",
            severity="warning",
        )
        return None
    with tempfile.NamedTemporaryFile(
        "w", suffix=".md", prefix="chatapp-message-", delete=False, encoding="utf-8"
    ) as handle:
        handle.write(text)
        path = Path(handle.name)
    try:
        try:
            with app.suspend():
                code = subprocess.call([*command, str(path)])
        except SuspendNotSupported:  # no terminal to hand over (headless): run it as is
            code = subprocess.call([*command, str(path)], stdin=subprocess.DEVNULL)
        if code != 0:
            app.notify(
                f"{command[0]} exited with status {code}; the message is unchanged.",
                severity="warning",
            )
            return None
        return path.read_text(encoding="utf-8").removesuffix("\n")
    except OSError as exc:
        app.notify(f"Could not run {command[0]}: {exc}", title="No editor", severity="error")
        return None
    finally:
        path.unlink(missing_ok=True)


def edit_message(app: App[object], box: TextArea) -> None:
    """Ctrl+G: the message box's text in the user's editor, and back into the box."""
    text = edit_text(app, box.text)
    if text is not None:
        box.load_text(text)
        box.move_cursor(box.document.end)
    box.focus()
