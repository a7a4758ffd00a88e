"""The probability lens on real bundled-model replies: the same processors generate used."""

from __future__ import annotations

import pytest

from chatapp.engine import Message
from chatapp.engine.lens import LensRecorder
from chatapp.params import TUTORIAL_VALUES, SamplingParams

pytestmark = pytest.mark.model

PROMPT = [Message("user", "使用繁體中文回答，請問什麼是大型語言模型？")]
BASE = SamplingParams(**TUTORIAL_VALUES).replace(max_new_tokens=12, seed=11)

CASES = {
    "seed": (BASE, ["raw", "repetition_penalty", "temperature", "top_k", "top_p"]),
    "top_k_1": (
        BASE.replace(top_k=1),
        ["raw", "repetition_penalty", "temperature", "top_k", "top_p"],
    ),
    "small_top_p": (
        BASE.replace(top_p=0.2, top_k=0),
        ["raw", "repetition_penalty", "temperature", "top_p"],
    ),
    "min_p": (
        BASE.replace(min_p=0.1, top_p=1.0, top_k=0, repetition_penalty=1.0),
        ["raw", "temperature", "min_p"],
    ),
    "strong_repetition_penalty": (
        BASE.replace(repetition_penalty=1.8),
        ["raw", "repetition_penalty", "temperature", "top_k", "top_p"],
    ),
    "typical_and_ngram": (
        BASE.replace(typical_p=0.9, no_repeat_ngram_size=2),
        [
            "raw",
            "repetition_penalty",
            "no_repeat_ngram",
            "temperature",
            "top_k",
            "top_p",
            "typical_p",
        ],
    ),
    "greedy": (BASE.replace(do_sample=False), ["raw", "repetition_penalty"]),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_lens_records_every_stage_faithfully(engine, case):
    params, stages = CASES[case]
    plain = engine.stream_reply(PROMPT, params)
    recorder = LensRecorder(check_mass=True)
    recorded = engine.stream_reply(PROMPT, params, lens=recorder)
    # Recording does not change what is generated: the pipeline is generate's own.
    assert recorded.token_ids == plain.token_ids
    assert len(recorder.steps) == recorded.new_tokens
    assert "".join(s.piece for s in recorder.steps) == recorded.text
    for step, token_id in zip(recorder.steps, recorded.token_ids, strict=False):
        assert step.stages == stages
        assert step.sampled_id == token_id
        assert step.sampled_prob is not None and step.sampled_prob > 0, "drawn token survived"
        assert step.mass and all(abs(m - 1) < 1e-3 for m in step.mass), step.mass
        assert step.survivors[0] == step.survivors[1] or step.stages[1] != "repetition_penalty"
        assert all(a >= b for a, b in zip(step.survivors[1:], step.survivors[2:], strict=False))
        final = [c.probs[-1] for c in step.candidates]
        if not params.do_sample:
            assert step.sampled.probs[-1] == max(final), "greedy picks the argmax"
        if case == "top_k_1":
            assert step.survivors[step.stages.index("top_k")] == 1
            assert step.sampled_prob == pytest.approx(1.0)
        if case == "small_top_p":
            assert step.survivors[-1] < 50


FAST_MODE_CASES = ["seed", "min_p", "greedy"]


@pytest.mark.parametrize(
    "case,which",
    [(case, "engine") for case in CASES] + [(case, "engine_int8") for case in FAST_MODE_CASES],
    ids=[*CASES, *(f"{case}-int8-dynamic" for case in FAST_MODE_CASES)],
)
def test_lens_shows_the_distribution_generate_samples_from(request, case, which, monkeypatch):
    """Each step's last column equals softmax of the scores the token was drawn from:
    generate's own draw, or, where auto samples among the survivors (the CPU's fast
    quantized mode), that draw's."""
    import torch

    from chatapp.engine import generation, sampling

    engine = request.getfixturevalue(which)
    params, _ = CASES[case]
    recorder = LensRecorder()
    engine.reset()  # a fresh prefill, as the plain generate call below makes
    if engine.survivor_sampling and params.do_sample:
        draws: list[tuple[object, int]] = []

        class Recorded(sampling.DrawAmongSurvivors):
            def __call__(self, input_ids, scores):
                out = super().__call__(input_ids, scores)
                draws.append((scores.clone(), int(out[0].argmax())))
                return out

        monkeypatch.setattr(generation, "DrawAmongSurvivors", Recorded)
        recorded = engine.stream_reply(PROMPT, params, lens=recorder)
        assert [token for _, token in draws] == recorded.token_ids
        _assert_lens_matches(recorder, [scores for scores, _ in draws])
        return
    recorded = engine.stream_reply(PROMPT, params, lens=recorder)
    input_ids = engine.prompt_ids(PROMPT)
    if params.do_sample and params.seed is not None:
        torch.manual_seed(params.seed)
    with torch.inference_mode():
        out = engine.model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            generation_config=engine.generation_config(params),
            output_scores=True,
            return_dict_in_generate=True,
        )
    generated = out.sequences[0, input_ids.shape[1] :].tolist()
    assert generated == recorded.token_ids
    _assert_lens_matches(recorder, out.scores)


def _assert_lens_matches(recorder, drawn_from) -> None:
    import torch

    assert len(drawn_from) == len(recorder.steps)
    for step, scores in zip(recorder.steps, drawn_from, strict=True):
        probs = torch.softmax(scores[0].float(), dim=-1)
        for candidate in step.candidates:
            assert candidate.probs[-1] == pytest.approx(
                float(probs[candidate.token_id]), abs=1e-4
            ), (step.index, candidate.label)
        assert step.sampled_prob == pytest.approx(float(probs[step.sampled_id]), abs=1e-4)


def test_what_if_recomputes_a_step_from_the_reply(engine):
    recorder = LensRecorder()
    stats = engine.stream_reply(PROMPT, BASE, lens=recorder)
    step = 4
    same = engine.what_if(PROMPT, stats.token_ids, step, BASE)
    original = recorder.steps[step]
    # One fresh forward pass over prompt + reply gives the table generation saw (bf16
    # without the KV cache differs in the last bits, hence the tolerance: two candidates
    # within it of each other may swap places, so they are matched by token).
    assert same.candidates[0].token_id == original.candidates[0].token_id
    assert {c.token_id for c in same.candidates[:5]} == {
        c.token_id for c in original.candidates[:5]
    }
    before = {c.token_id: c for c in original.candidates}
    for new in same.candidates[:5]:
        assert new.probs == pytest.approx(before[new.token_id].probs, abs=0.02)
    assert same.sampled_prob == pytest.approx(original.sampled_prob, abs=0.02)
    narrower = engine.what_if(PROMPT, stats.token_ids, step, BASE.replace(top_k=2))
    top_k = narrower.stages.index("top_k")
    assert narrower.survivors[top_k] == 2
    kept = [c for c in narrower.candidates if c.probs[-1] > 0]
    assert [c.token_id for c in kept] == [c.token_id for c in same.candidates[:2]]
    assert sum(c.probs[-1] for c in kept) == pytest.approx(1.0, abs=1e-4)
    drawn_kept = stats.token_ids[step] in {c.token_id for c in kept}
    assert (narrower.sampled_prob > 0) == drawn_kept
    assert "top-k 2" in narrower.what_if


def test_inactive_recorder_changes_nothing_and_can_start_midway(engine):
    plain = engine.stream_reply(PROMPT, BASE)
    recorder = LensRecorder(active=False)

    def on_token(token_id, _):
        if recorder._step == 5:
            recorder.active = True

    stats = engine.stream_reply(PROMPT, BASE, lens=recorder, on_token=on_token)
    assert stats.token_ids == plain.token_ids
    assert [s.index for s in recorder.steps] == list(range(5, stats.new_tokens))
    assert not recorder.complete
    assert all(s.sampled_id == stats.token_ids[s.index] for s in recorder.steps)


def test_lens_recomputed_from_a_finished_replys_tokens_matches_what_was_recorded(engine32):
    """replay_lens (one forward pass over prompt + reply, stages applied per step) gives
    the tables the live recorder saw: same drawn tokens, same final probabilities."""
    from chatapp.engine.lens import LensRecorder

    params = SamplingParams(max_new_tokens=12, temperature=0.8, top_k=20, seed=4)
    recorder = LensRecorder()
    stats = engine32.stream_reply(PROMPT, params, lens=recorder)
    steps = engine32.replay_lens(PROMPT, stats.token_ids, params, text=stats.text)
    assert len(steps) == len(recorder.steps) == stats.new_tokens
    for live, again in zip(recorder.steps, steps, strict=True):
        assert again.sampled_id == live.sampled_id
        assert again.stages == live.stages
        assert abs(again.sampled_prob - live.sampled_prob) < 2e-3
        assert [c.token_id for c in again.candidates[:3]] == [
            c.token_id for c in live.candidates[:3]
        ]
    assert "".join(s.piece for s in steps) == stats.text


def test_lens_pairs_each_step_with_its_token_when_generate_hands_tokens_over_late(
    engine, monkeypatch
):
    """CUDA's fast path defers generate's stop check (``DeferredStopCheck``): each token is
    handed over one step late, after the next step's stages have run, and one last step
    is computed that is never handed over. The app always passes a recorder, so the lens
    must pair tables and tokens under it. Emulated here on the CPU: the same class, with
    an event that has nothing to wait for (a CPU copy is done when it returns)."""
    import torch
    from transformers.generation.utils import DeferredStopCheck

    from chatapp.engine import framework_internals as internals

    class HostEvent:
        def __init__(self, device=None, blocking=False) -> None:
            pass

        def record(self, stream=None) -> None:
            pass

        def synchronize(self) -> None:
            pass

    def on_cpu_too(device, cache, cache_is_returned, is_assistant):
        deferred = internals.stop_check_deferred() and not is_assistant
        return deferred and (cache is None or cache.is_croppable or not cache_is_returned)

    monkeypatch.setattr(torch, "Event", HostEvent)
    monkeypatch.setattr(DeferredStopCheck, "is_supported", staticmethod(on_cpu_too))
    params = BASE.replace(max_new_tokens=10)

    def reply(deferred: bool, recorder: LensRecorder, switch_on_at: int | None = None):
        behind: list[int] = []  # steps computed but not handed over, at each token

        def on_token(token_id, _):
            behind.append(recorder._computed - recorder._step)
            if recorder._step == switch_on_at:
                recorder.active = True

        monkeypatch.setattr(engine, "defer_stop_check", deferred)
        engine.reset()
        return engine.stream_reply(PROMPT, params, lens=recorder, on_token=on_token), behind

    plain, on_time = reply(False, LensRecorder())
    recorder = LensRecorder()
    late, behind = reply(True, recorder)
    # Each token came after the next step's stages, but the last (generate hands it over
    # at its end: a reply that reaches max_new_tokens needs no step beyond it).
    assert set(on_time) == {0} and behind == [1] * 9 + [0], behind
    assert late.token_ids == plain.token_ids and late.new_tokens == 10
    assert recorder.complete and len(recorder.steps) == late.new_tokens
    for step, (index, token) in zip(recorder.steps, enumerate(late.token_ids), strict=True):
        assert (step.index, step.sampled_id) == (index, token)
        assert step.sampled_prob > 0
    assert "".join(step.piece for step in recorder.steps) == late.text

    # Switched on mid-reply (F3 while it streams) as token 3 arrives, when step 4 is
    # already computed: recorded from step 5 on.
    midway = LensRecorder(active=False)
    again, _ = reply(True, midway, switch_on_at=4)
    assert again.token_ids == plain.token_ids
    assert [s.index for s in midway.steps] == list(range(5, again.new_tokens))
    assert all(s.sampled_id == again.token_ids[s.index] for s in midway.steps)
