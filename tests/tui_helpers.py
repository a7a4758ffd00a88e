"""Helpers for driving the app with Pilot."""

from __future__ import annotations

import time

from chatapp.engine.fake import FakeTokenSource
from chatapp.tui.app import ChatApp


async def wait_for(pilot, condition, timeout: float = 30.0, step: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the app")
        await pilot.pause(step)


def fake_app(pieces=None, rate: float = 400.0, **kwargs) -> tuple[ChatApp, FakeTokenSource]:
    source = FakeTokenSource(pieces, tokens_per_second=rate)
    return ChatApp(lambda progress: source, **kwargs), source


async def ready(pilot) -> None:
    await wait_for(pilot, lambda: pilot.app.source is not None)


async def submit(pilot, text: str) -> None:
    """Type ``text`` in the prompt box and press Enter."""
    box = pilot.app.query_one("#prompt")
    box.focus()
    box.insert(text)
    await pilot.press("enter")


async def send(pilot, text: str) -> None:
    """Submit ``text`` and wait for the reply to finish."""
    app = pilot.app
    done = app.replies_done
    await submit(pilot, text)
    await wait_for(pilot, lambda: app.replies_done > done, timeout=120)
    await pilot.pause(0.05)


async def start_reply(pilot, text: str, timeout: float = 60) -> None:
    """Submit ``text`` and wait until the reply's first text is on screen."""
    from chatapp.tui.chat import AssistantMessage

    app = pilot.app
    await submit(pilot, text)
    await wait_for(
        pilot,
        lambda: app.generating and app.query(AssistantMessage).last().markdown.source,
        timeout=timeout,
    )


async def set_field(pilot, name: str, value: str) -> None:
    field = pilot.app.query_one(f"#param-{name}")
    field.value = value
    await pilot.pause(0.05)
