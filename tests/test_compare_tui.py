"""Compare in the app (fake engine): columns with their own values, replies side by side,
each column a saved version of the turn, and the chat continuing from the one kept."""

from __future__ import annotations

from chatapp.conversation import ChatSession
from chatapp.store import ChatStore
from chatapp.tui.compare import ColumnReply, CompareRow
from tests.tui_helpers import fake_app, ready, set_field, submit, wait_for

PIECES = ["The ", "sea ", "is ", "wide."]


async def test_compare_two_columns_keep_one_and_go_on():
    app, source = fake_app(PIECES)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        pane = app.pane
        await pilot.press("f5")
        assert len(pane.compare.columns) == 2 and pane.compare.focus == 1
        bar = pane.query_one(".compare-bar")
        assert bar.display
        await set_field(pilot, "temperature", "1.2")  # the panel edits column 2
        assert pane.compare.columns[1].temperature == 1.2
        assert pane.compare.columns[0].temperature == app.initial_params.temperature
        assert "▶ 2 · T 1.2" in str(bar.render())

        done = app.replies_done
        await submit(pilot, "Describe the sea.")
        await wait_for(pilot, lambda: app.replies_done > done)
        row = app.query_one(CompareRow)
        columns = list(row.query(ColumnReply))
        assert [c.version.params.temperature for c in columns] == [
            pane.compare.columns[0].temperature,
            1.2,
        ]
        assert all(c.version.text == "".join(PIECES) for c in columns)
        assert columns[1].query_one(".column-header").render().plain == "2 · T 1.2"
        # What the engine was asked: one request per column, each with its values and
        # the same seed.
        sent = [params for _, params in source.calls]
        assert [p.temperature for p in sent] == [pane.compare.columns[0].temperature, 1.2]
        assert sent[0].seed == sent[1].seed is not None

        # Column 1 focused (the panel shows its values), then the next message: the row
        # folds into a reply showing column 1's version; both stay as versions.
        await pilot.press("f12")
        assert pane.compare.focus == 0
        assert app.params.temperature == pane.compare.columns[0].temperature
        done = app.replies_done
        await submit(pilot, "And the sky?")
        await wait_for(pilot, lambda: app.replies_done > done)
        turn = pane.session.chat.turns[0]
        assert turn.shown == 0 and len(turn.versions) == 2
        assert "v1/2" in str(app.query(".assistant-message").first().query_one(".meta").render())
        chat_id = pane.session.chat.id

        # Esc mid-compare stops every column, each kept as stopped.
        source.tokens_per_second = 5
        await submit(pilot, "Once more.")
        await wait_for(pilot, lambda: pane.compare.stream is not None)
        await pilot.pause(0.3)
        await pilot.press("escape")
        await wait_for(pilot, lambda: pane.compare.stream is None)
        last = pane.session.chat.turns[-1]
        assert [v.status for v in last.versions] == ["stopped", "stopped"]

    saved = ChatSession(ChatStore())
    assert saved.open(chat_id)
    first = saved.chat.turns[0]
    assert [v.params.temperature for v in first.versions] == [
        app.initial_params.temperature,
        1.2,
    ]
    assert first.shown == 0
    exported = saved.chat.to_json()
    assert len(exported["turns"][0]["versions"]) == 2


async def test_compare_columns_close_back_to_one():
    app, _ = fake_app(PIECES)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        pane = app.pane
        for _ in range(4):
            await pilot.press("f5")
        assert len(pane.compare.columns) == 4  # at most four: the fourth F5 says so
        await pilot.press("shift+f5", "shift+f5", "shift+f5")
        assert len(pane.compare.columns) == 1
        assert not pane.query_one(".compare-bar").display
