"""Helpers for driving the app with Pilot."""

from __future__ import annotations

import time

from chatapp.engine.fake import FakeTokenSource
from chatapp.tui.app import ChatApp
from chatapp.tui.textual_internals import screen_update_pending


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
    await wait_for(pilot, lambda: pilot.app.engine is not None)


async def ready_for_picture(pilot) -> None:
    """Ready, with the message box's cursor held still for a snapshot.

    A blinking cursor is drawn or not depending on when the picture is taken
    (it blinks every 0.5 s: a snapshot taken 0.7 s in lost it on a busy CI).
    """
    await ready(pilot)
    pilot.app.query_one("#prompt").cursor_blink = False
    await pilot.pause(0.1)


async def submit(pilot, text: str) -> None:
    """Type ``text`` in the prompt box and press Enter."""
    box = pilot.app.query_one("#prompt")
    box.focus()
    box.insert(text)
    await pilot.press("enter")


def update_pending(app) -> bool:
    """Whether the screen, or a widget on it, has a change still to draw."""
    return screen_update_pending(app)


async def send(pilot, text: str) -> None:
    """Submit ``text`` and wait for the reply to finish and the screen to show it whole
    (the finished reply is laid out and scrolled to over the next frames)."""
    app = pilot.app
    done = app.replies_done
    await submit(pilot, text)
    await wait_for(pilot, lambda: app.replies_done > done, timeout=120)
    await pilot.pause(0.05)
    await wait_for(pilot, lambda: not update_pending(app) and scrollbar_settled(app))


def scrollbar_settled(app) -> bool:
    """Whether the chat shows its scrollbar exactly when its content overflows (the
    scrollbar goes a layout after a finished reply shrinks to its exact height)."""
    from chatapp.tui.chat_log import ChatLog

    panes = app.screen.query(ChatLog)
    if not panes:
        return True
    chat = panes.first()
    overflows = chat.virtual_size.height > chat.scrollable_content_region.height
    return chat.show_vertical_scrollbar == overflows


async def start_reply(pilot, text: str, timeout: float = 60) -> None:
    """Submit ``text`` and wait until the reply's first text is on screen."""
    from chatapp.tui.chat_log import AssistantMessage

    app = pilot.app
    await submit(pilot, text)
    await wait_for(
        pilot,
        lambda: app.generating and app.query(AssistantMessage).last().shown_text,
        timeout=timeout,
    )


async def set_field(pilot, name: str, value: str) -> None:
    field = pilot.app.query_one(f"#param-{name}")
    field.value = value
    await pilot.pause(0.05)


def shown_text(reply) -> str:
    """A reply's text as drawn: the plain text of the lines its ReplyText renders (so
    Markdown's marks are gone), its lines joined by one space (undoing the wrapping)."""
    return " ".join(s for line in reply.body.lines if (s := line.text.strip()))


async def send_watching(pilot, text: str, source, timeout: float = 120) -> list[str]:
    """Submit ``text``; returns each distinct text drawn for the reply while ``source`` was
    still generating it (read before the engine returned, so the final update is not in it).

    Polls with plain sleeps: Pilot's press and pause wait for the CPU to go idle, which it
    never does while a real model generates, and so would miss the stream."""
    import asyncio

    from textual import events

    from chatapp.tui.chat_log import AssistantMessage

    app = pilot.app
    done = app.replies_done
    box = app.query_one("#prompt")
    box.focus()
    box.insert(text)
    await asyncio.sleep(0.05)
    app.post_message(events.Key("enter", "\r"))  # as the terminal driver delivers it
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while app.replies_done == done:
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the reply")
        if source.busy and app.query(AssistantMessage):
            drawn = shown_text(app.query(AssistantMessage).last())
            if drawn and (not seen or drawn != seen[-1]) and source.busy:
                seen.append(drawn)
        await asyncio.sleep(0.01)
    await pilot.pause(0.05)
    return seen


def assert_streamed(seen: list[str], final: str) -> None:
    """The reply was drawn in at least two growing parts before it ended."""
    assert len(seen) >= 2, f"the reply was not drawn while it streamed: {seen!r}"
    lengths = [len(s) for s in seen]
    assert lengths == sorted(lengths) and lengths[0] < lengths[-1], seen
    assert len(seen[0]) < len(final), "the first drawn text was already the whole reply"
