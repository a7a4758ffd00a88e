"""``python -m chatapp``."""

from chatapp.cli import entry

entry()
