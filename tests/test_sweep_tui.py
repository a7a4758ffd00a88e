"""The sweep in the app (fake engine): the dialog checks what it is given, the screen
runs the sweep, plots the figure the cell cursor is on, shows the chosen point's texts,
keeps the sweep in the history, and Esc stops it."""

from __future__ import annotations

from textual.widgets import DataTable, Input, Static
from textual_plotext import PlotextPlot

from chatapp.conversation import ChatSession
from chatapp.store import ChatStore
from chatapp.tui.sweep_screen import SweepDialog, SweepScreen
from tests.tui_helpers import fake_app, ready, send, wait_for

# Each value with three seeds from 5, in the order the sweep draws them.
DRAWN = [(t, seed) for t in (0.3, 0.9) for seed in (5, 6, 7)]
PIECES = ["The ", "sea ", "is ", "wide ", "and ", "the ", "sea ", "is ", "deep."]


def _fill(dialog, **fields) -> None:
    for name, value in fields.items():
        dialog.query_one(f"#sweep-{name}", Input).value = value


def _dialog_open(app) -> bool:
    return isinstance(app.screen, SweepDialog) and bool(app.screen.query("#sweep-prompt"))


def _status(screen) -> str:
    return str(screen.query_one("#sweep-status", Static).render())


async def test_sweep_runs_plots_shows_texts_and_is_kept_in_the_history():
    app, source = fake_app(PIECES)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await send(pilot, "Describe the sea.")
        app.action_sweep()
        await wait_for(pilot, lambda: _dialog_open(app))
        dialog = app.screen
        # With the message box empty, the prompt is the chat's last message.
        assert dialog.query_one("#sweep-prompt", Input).value == "Describe the sea."
        assert dialog.query_one("#sweep-values", Input).value == "0.2, 0.6, 1.0, 1.4"
        _fill(dialog, values="0.3, 0.9", samples="3", seed="5")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, SweepScreen))
        screen = app.screen
        await wait_for(pilot, lambda: not screen.running, timeout=60)
        assert _status(screen).startswith("Done · saved in the history")

        # What the engine was asked: each value, three seeds each, after the chat so far
        # (without the swept message's earlier reply).
        asked = source.calls[1:]
        assert sorted((p.temperature, p.seed) for _, p in asked) == DRAWN
        assert all([m.content for m in messages] == ["Describe the sea."] for messages, _ in asked)

        table = screen.query_one("#sweep-table", DataTable)
        assert table.row_count == 2
        assert str(table.get_cell_at((0, 0))) == "0.3"
        plot = screen.query_one("#sweep-plot", PlotextPlot)
        assert "distinct-2" in plot.plt.build()  # the figure the cursor starts on
        texts = screen.query_one("#sweep-texts", Static)
        assert "temperature 0.3" in str(texts.render())
        assert str(texts.render()).count("The sea is wide and the sea is deep.") == 3

        await pilot.press("right")  # the next figure's column: its plot
        assert screen.figure == "mean_logprob"
        assert "log-probability" in plot.plt.build()
        await pilot.press("down")  # the next point: its texts
        assert screen.point == 1 and "temperature 0.9" in str(texts.render())

        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, SweepScreen))
        assert app.query_one("#prompt") is app.focused or app.screen.is_current

    saved = ChatSession(ChatStore())
    assert screen.saved is not None and saved.open(screen.saved)
    assert saved.chat.title == "Sweep: temperature 0.3, 0.9 × 3"
    versions = saved.chat.turns[0].versions
    assert [(v.params.temperature, v.stats.seed) for v in versions] == DRAWN
    assert "Sweep: temperature" in saved.chat.to_markdown()


async def test_the_dialog_says_what_is_wrong_and_runs_nothing():
    app, source = fake_app(PIECES)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        app.query_one("#prompt").insert("A new prompt")
        app.action_sweep()
        await wait_for(pilot, lambda: _dialog_open(app))
        dialog = app.screen
        assert dialog.query_one("#sweep-prompt", Input).value == "A new prompt"
        error = dialog.query_one("#dialog-error", Static)
        for fields, said in (
            ({"values": "0.5, hot"}, "hot"),
            ({"values": "0.5", "samples": "0"}, "samples: 0 is not between 1 and 64"),
            ({"samples": "2", "seed": "x"}, "seed: x is not a whole number"),
            ({"seed": "0", "prompt": "  "}, "Write the prompt"),
        ):
            _fill(dialog, **fields)
            dialog.query_one("#sweep-prompt", Input).focus()
            await pilot.press("enter")
            await pilot.pause(0.05)
            assert app.screen is dialog
            assert said in str(error.render()), fields
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, SweepDialog))
        assert source.calls == []
        assert app.query_one("#prompt").text == "A new prompt"  # the box keeps its text


async def test_escape_stops_a_sweep_and_keeps_only_whole_points():
    app, source = fake_app(PIECES, rate=20)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        app.query_one("#prompt").insert("Describe the sea.")
        app.action_sweep()
        await wait_for(pilot, lambda: _dialog_open(app))
        _fill(app.screen, values="0.2, 0.6, 1.0, 1.4", samples="8")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, SweepScreen))
        screen = app.screen
        await wait_for(pilot, lambda: len(source.calls) > 0)
        await pilot.press("escape")  # mid-sweep: stops it, stays on the screen
        await wait_for(pilot, lambda: not screen.running, timeout=30)
        assert isinstance(app.screen, SweepScreen)
        assert "Stopped" in _status(screen)
        assert not screen.sweep.complete
        assert all(len(p.samples) == 8 for p in screen.sweep.points)
        assert len(screen.sweep.points) < 4
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, SweepScreen))
        # The engine is free again: a message gets its reply.
        await send(pilot, "And now?")
        assert app.pane.session.chat.turns[-1].reply.status == "done"
