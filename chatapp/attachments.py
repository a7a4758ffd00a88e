"""Files attached to a message: ``@path`` in the text (or "Attach file…" in the app, which
writes one). Each attached text file goes into the message as a fenced block named after
the file; a binary, unreadable or missing file is refused with the reason.

No UI here: the app completes paths with ``complete_path`` and sends ``expand``'s text.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

# Larger files are refused before reading (the window is the real limit; the app checks
# the message against it before sending).
MAX_BYTES = 1_000_000
# ``@`` at the start or after whitespace, then a path up to whitespace (``@"a b.txt"``
# for a path with spaces).
MENTION = re.compile(r'(?:(?<=\s)|^)@(?:"([^"]+)"|(\S+))')
LANGUAGES = {
    ".py": "python", ".js": "javascript", ".ts": "typescript", ".rs": "rust", ".go": "go",
    ".c": "c", ".h": "c", ".cpp": "cpp", ".java": "java", ".rb": "ruby", ".sh": "sh",
    ".md": "markdown", ".json": "json", ".toml": "toml", ".yaml": "yaml", ".yml": "yaml",
    ".html": "html", ".css": "css", ".sql": "sql", ".txt": "",
}  # fmt: skip


class AttachmentError(ValueError):
    """A file that cannot be attached; ``str()`` says which and why, in one line."""


@dataclass(frozen=True)
class Attachment:
    path: Path
    text: str

    @property
    def block(self) -> str:
        """The file as a fenced block under its name (a fence longer than any run of
        backticks in it)."""
        longest = max((len(m) for m in re.findall(r"`+", self.text)), default=0)
        fence = "`" * max(3, longest + 1)
        language = LANGUAGES.get(self.path.suffix.lower(), "")
        return f"{self.path.name}:\n{fence}{language}\n{self.text.rstrip(chr(10))}\n{fence}"


def read_attachment(path: str | Path, base: Path | None = None) -> Attachment:
    """The text file at ``path`` (relative to ``base``, else the working folder; ``~``
    expanded), or AttachmentError."""
    shown = str(path)
    full = _resolve(str(path), base)
    try:
        if full.is_dir():
            raise AttachmentError(f"{shown} is a folder, not a file")
        size = full.stat().st_size
        if size > MAX_BYTES:
            raise AttachmentError(f"{shown} is {size:,} bytes: too big to attach")
        data = full.read_bytes()
    except FileNotFoundError:
        raise AttachmentError(f"{shown}: no such file") from None
    except OSError as exc:
        raise AttachmentError(f"{shown} cannot be read: {exc.strerror or exc}") from None
    if b"\0" in data:
        raise AttachmentError(f"{shown} is a binary file: only text files can be attached")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise AttachmentError(
            f"{shown} is not UTF-8 text: only text files can be attached"
        ) from None
    return Attachment(full, text)


TRAILING = ".,;:!?)]}'\""


def _resolve(path: str, base: Path | None) -> Path:
    full = Path(os.path.expanduser(path))
    return full if full.is_absolute() else (base or Path.cwd()) / full


def mentions(text: str) -> list[str]:
    """The ``@path`` mentions in ``text``, in order."""
    return [m.group(1) or m.group(2) for m in MENTION.finditer(text)]


def expand(text: str, base: Path | None = None) -> tuple[str, list[Attachment]]:
    """``text`` with each ``@path`` that names an existing file replaced by the file's
    name, and the files' blocks after it. An ``@word`` that names no file stays as it is
    (a handle, a folder); one that names a file that cannot be attached raises
    AttachmentError."""
    attached: list[Attachment] = []

    def replace(match: re.Match[str]) -> str:
        path, trail = match.group(1) or match.group(2), ""
        if match.group(2) and not _resolve(path, base).is_file():
            # "see @notes.md," — the sentence's punctuation is not the file's name
            trimmed = path.rstrip(TRAILING)
            path, trail = trimmed, path[len(trimmed) :]
        if not path or not _resolve(path, base).is_file():
            return match.group(0)  # a handle, a word, a folder: left as written
        attachment = read_attachment(path, base)
        attached.append(attachment)
        return attachment.path.name + trail

    body = MENTION.sub(replace, text)
    if not attached:
        return text, []
    return "\n\n".join([body, *(a.block for a in attached)]), attached


def complete_path(partial: str, base: Path | None = None) -> str | None:
    """``partial`` completed as far as the files it could name agree (a folder gets its
    ``/``), or None when nothing matches or nothing is added."""
    expanded = os.path.expanduser(partial)
    folder, slash, stem = expanded.rpartition("/")
    root = _resolve(folder or slash or ".", base)  # "/x": the root folder's entries
    try:
        names = sorted(
            entry.name + ("/" if entry.is_dir() else "")
            for entry in os.scandir(root)
            if entry.name.startswith(stem)
            and (stem.startswith(".") or not entry.name.startswith("."))
        )
    except OSError:
        return None
    if not names:
        return None
    common = os.path.commonprefix(names)
    if len(common) <= len(stem):
        return None
    prefix = partial[: len(partial) - len(stem)]
    return prefix + common
