"""The lens panel and heat map in the app, with the real bundled model."""

from __future__ import annotations

import asyncio

import pytest

from chatapp.engine.types import Candidate, StepRecord
from chatapp.params import TUTORIAL_VALUES, SamplingParams
from chatapp.tui.app import ChatApp
from chatapp.tui.chat_log import AssistantMessage
from chatapp.tui.lens import LensView
from tests.tui_helpers import (
    fake_app,
    ready,
    ready_for_picture,
    send,
    set_field,
    start_reply,
    wait_for,
)

PARAMS = SamplingParams(**TUTORIAL_VALUES).replace(max_new_tokens=10, seed=2)


def lens_text(lens: LensView) -> str:
    """The lens panel's lines as the terminal draws them."""
    from textual.geometry import Region

    lines = lens.render_lines(Region(0, 0, lens.size.width, lens.size.height))
    return "\n".join(line.text for line in lines)


def real_app(engine, params=PARAMS) -> ChatApp:
    return ChatApp(lambda progress: engine, params)


@pytest.mark.model
async def test_f3_opens_the_lens_during_a_reply_and_it_follows(engine):
    from chatapp.engine import LocalEngine

    story = LocalEngine(engine.loaded, chat_format="raw")  # a base model continues a story
    app = real_app(story, PARAMS.replace(max_new_tokens=60))
    engine = story
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await start_reply(pilot, "Once upon a time, in a village by the sea,")
        await pilot.press("f3")
        lens = app.query_one(LensView)
        shown_while_streaming: list[int] = []
        while engine.busy:  # the reply is still being generated
            step = lens.step
            if step is not None and engine.busy:
                if not shown_while_streaming or step.index != shown_while_streaming[-1]:
                    shown_while_streaming.append(step.index)
            await asyncio.sleep(0.02)  # not pilot.pause: it waits for an idle CPU
        await wait_for(pilot, lambda: app.replies_done == 1, timeout=60)
        await pilot.pause(0.05)
        assert len(shown_while_streaming) >= 3, shown_while_streaming
        assert shown_while_streaming == sorted(shown_while_streaming)
        version = app.query_one(AssistantMessage).versions[0]
        assert version.lens_steps and version.lens_steps[0].index > 0  # opened mid-reply
        assert lens.step is version.lens_steps[-1]


@pytest.mark.model
async def test_step_through_a_finished_reply_and_what_if(engine):
    app = real_app(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.press("f3")
        await send(pilot, "使用繁體中文回答，請問什麼是大型語言模型？")
        lens = app.query_one(LensView)
        steps = app.query_one(AssistantMessage).versions[0].lens_steps
        assert len(steps) == app.query_one(AssistantMessage).versions[0].stats.new_tokens
        assert lens.step is steps[-1]
        await pilot.press("f7", "f7", "f7")
        assert lens.step is steps[-4]
        await pilot.press("f8")
        assert lens.step is steps[-3]
        text = lens_text(lens)
        shown = steps[-3]
        assert f"Step {len(steps) - 2}/{len(steps)}" in text
        for title in ("raw", "rep", "temp", "top-k", "top-p"):
            assert title in text
        assert shown.candidates[0].label in text
        assert f"{shown.candidates[0].probs[0] * 100:.1f}%" in text
        assert f"drawn token at {shown.sampled_prob * 100:.1f}%" in text
        await set_field(pilot, "top_k", "2")
        await wait_for(pilot, lambda: lens.step.what_if is not None, timeout=30)
        what_if = lens.step
        assert what_if.index == shown.index
        top_k = what_if.stages.index("top_k")
        assert what_if.survivors[top_k] == 2
        # Computed afresh: the raw table is the recorded one, and top-k 2 leaves exactly
        # the two most likely tokens, renormalised.
        assert [c.token_id for c in what_if.candidates[:3]] == [
            c.token_id for c in shown.candidates[:3]
        ]
        for new, old in zip(what_if.candidates, shown.candidates, strict=False):
            assert new.probs[0] == pytest.approx(old.probs[0], abs=0.02)
        kept = [c.probs[top_k] for c in what_if.candidates if c.probs[top_k] > 0]
        assert len(kept) == 2 and sum(kept) == pytest.approx(1.0, abs=1e-4)
        assert "what-if" in lens_text(lens) and "top-k 2" in lens_text(lens)


@pytest.mark.model
async def test_heat_map_toggle_and_click_a_token(engine):
    app = real_app(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.press("f6")
        await send(pilot, "Name three colours.")
        reply = app.query_one(AssistantMessage)
        heat = reply.query_one(".heat")
        assert heat.display and not reply.body.display
        markup = str(heat.content) if hasattr(heat, "content") else ""
        assert "@click=app.lens_select(0," in markup
        await pilot.click(heat, offset=(0, 0))
        await pilot.pause(0.1)
        assert app.query_one(LensView).display
        assert app.lens.target == (reply, 0)
        await pilot.press("f6")
        assert not heat.display and reply.body.display


@pytest.mark.model
async def test_lens_off_means_no_recording_and_on_records(engine):
    app = real_app(engine, PARAMS.replace(max_new_tokens=4))
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        assert not app.lens.recording
        await send(pilot, "hi")
        first = app.query(AssistantMessage).last().versions[0]
        assert first.stats.new_tokens > 0 and first.lens_steps == []
        await pilot.press("f3")  # the same engine records once the lens is on
        await send(pilot, "hi again")
        second = app.query(AssistantMessage).last().versions[0]
        assert len(second.lens_steps) == second.stats.new_tokens > 0


def _synthetic_step() -> StepRecord:
    stages = ["raw", "repetition_penalty", "temperature", "top_k", "top_p"]
    rows = [
        Candidate(5938, "使用", [0.35, 0.30, 0.42, 0.45, 0.61]),
        Candidate(107, "⏎", [0.20, 0.21, 0.22, 0.24, 0.33]),
        Candidate(236900, "，", [0.10, 0.11, 0.05, 0.06, 0.06]),
        Candidate(1018, "␣The", [0.05, 0.05, 0.02, 0.02, 0.0]),
    ]
    return StepRecord(
        3,
        stages,
        rows,
        [262144, 262144, 262144, 50, 3],
        4.21,
        1.37,
        sampled_id=107,
        sampled_prob=0.33,
    )


def _synthetic_reply() -> list[StepRecord]:
    """Ten steps whose drawn probability and entropy rise and fall (the strip)."""
    steps = []
    for index in range(10):
        step = _synthetic_step()
        step.index = index
        step.sampled_prob = [0.9, 0.33, 0.05, 0.6, 1.0, 0.2, 0.75, 0.4, 0.12, 0.95][index]
        step.entropy_after = [0.3, 1.37, 3.9, 1.0, 0.0, 2.5, 0.8, 1.6, 3.1, 0.2][index]
        steps.append(step)
    return steps


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_lens_snapshot(snap_compare, size):
    """The lens's bars beside each probability and survivor count, and the reply's strip
    (drawn probability, entropy) with the shown step marked; at 80x24 with the panel
    hidden, as F2 leaves it."""

    async def open_lens(pilot):
        await ready_for_picture(pilot)
        if size[0] < 100:
            await pilot.press("f2")
        await pilot.press("f3")
        steps = _synthetic_reply()
        pilot.app.query_one(LensView).show(steps[3], "4/10", steps)
        await pilot.pause(0.3)  # 0.1 s was sometimes before the lens was drawn on 2 busy cores

    app, _ = fake_app()
    assert snap_compare(app, terminal_size=size, run_before=open_lens)
