"""Snapshots of the main screen (80x24, 120x40) and of a validation error."""

from __future__ import annotations

from tests.tui_helpers import fake_app, ready, set_field


async def _ready(pilot):
    await ready(pilot)
    await pilot.pause(0.1)


def test_main_screen_80x24(snap_compare):
    app, _ = fake_app()
    assert snap_compare(app, terminal_size=(80, 24), run_before=_ready)


def test_main_screen_120x40(snap_compare):
    app, _ = fake_app()
    assert snap_compare(app, terminal_size=(120, 40), run_before=_ready)


def test_panel_shows_validation_error(snap_compare):
    async def type_bad_value(pilot):
        await _ready(pilot)
        pilot.app.query_one("#param-temperature").focus()
        await set_field(pilot, "temperature", "abc")
        await pilot.pause(0.1)

    app, _ = fake_app()
    assert snap_compare(app, terminal_size=(120, 40), run_before=type_bad_value)
