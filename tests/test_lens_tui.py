"""The lens panel and heat map in the app, with the real bundled model."""

from __future__ import annotations

import pytest

from chatapp.engine.lens import Candidate, StepRecord
from chatapp.params import SEED_VALUES, SamplingParams
from chatapp.tui.app import ChatApp
from chatapp.tui.chat import AssistantMessage
from chatapp.tui.lens import LensView
from tests.tui_helpers import fake_app, ready, send, set_field, start_reply, wait_for

PARAMS = SamplingParams(**SEED_VALUES).replace(max_new_tokens=10, seed=2)


def real_app(engine, params=PARAMS) -> ChatApp:
    return ChatApp(lambda progress: engine, params)


@pytest.mark.model
async def test_f3_opens_the_lens_during_a_reply_and_it_follows(engine):
    app = real_app(engine, PARAMS.replace(max_new_tokens=60))
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await start_reply(pilot, "Tell me about the sea.")
        await pilot.press("f3")
        lens = app.query_one(LensView)
        await wait_for(pilot, lambda: lens.step is not None, timeout=60)
        first = lens.step.index
        await wait_for(pilot, lambda: lens.step.index > first + 2 or app.replies_done, timeout=60)
        await wait_for(pilot, lambda: app.replies_done == 1, timeout=60)
        await pilot.pause(0.05)
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
        rendered = lens.render()
        assert rendered is not None
        await set_field(pilot, "top_k", "2")
        await wait_for(pilot, lambda: lens.step.what_if is not None, timeout=30)
        assert lens.step.index == steps[-3].index
        assert lens.step.survivors[lens.step.stages.index("top_k")] == 2
        assert lens.step.sampled_id == steps[-3].sampled_id


@pytest.mark.model
async def test_heat_map_toggle_and_click_a_token(engine):
    app = real_app(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.press("f6")
        await send(pilot, "Name three colours.")
        reply = app.query_one(AssistantMessage)
        heat = reply.query_one(".heat")
        assert heat.display and not reply.markdown.display
        markup = str(heat.content) if hasattr(heat, "content") else ""
        assert "@click=app.lens_select(0," in markup
        await pilot.click(heat, offset=(0, 0))
        await pilot.pause(0.1)
        assert app.query_one(LensView).display
        assert app.lens_target == (reply, 0)
        await pilot.press("f6")
        assert not heat.display and reply.markdown.display


async def test_lens_off_means_no_recording_with_fake_source():
    app, source = fake_app(["a ", "b"])
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        assert not app.recording
        await send(pilot, "hi")
        assert app.query_one(AssistantMessage).versions[0].lens_steps == []


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


def test_lens_snapshot_120x40(snap_compare):
    async def open_lens(pilot):
        await ready(pilot)
        await pilot.press("f3")
        pilot.app.query_one(LensView).show(_synthetic_step(), "4/10")
        await pilot.pause(0.1)

    app, _ = fake_app()
    assert snap_compare(app, terminal_size=(120, 40), run_before=open_lens)
