"""Sampling among the stages' survivors (``chatapp.engine.sampling``): the same filter and
the same distribution as transformers' whole-vocabulary code, and, on the real model, a
reply that a seed draws again, with the lens on or off."""

from __future__ import annotations

import pytest

from chatapp.engine import Message
from chatapp.engine.sampling import SURVIVOR_LIMIT, DrawAmongSurvivors, SurvivorTopP
from chatapp.params import TUTORIAL_VALUES, SamplingParams


def _after_top_k(scores, k):
    from transformers import TopKLogitsWarper

    return TopKLogitsWarper(k)(None, scores)


@pytest.mark.parametrize("top_p,keep", [(0.95, 1), (0.5, 1), (0.05, 1), (0.3, 7), (1.0, 1)])
def test_survivor_top_p_filters_exactly_as_transformers_does(top_p, keep):
    import torch
    from transformers import TopPLogitsWarper

    generator = torch.Generator().manual_seed(5)
    for trial in range(20):
        scores = torch.randn(1, 262_144, generator=generator) * (1 + trial % 4)
        scores = _after_top_k(scores, 50 if trial % 2 else 400)
        theirs = TopPLogitsWarper(top_p, min_tokens_to_keep=keep)
        expected = theirs(None, scores.clone())
        got = SurvivorTopP(theirs)(None, scores.clone())
        assert torch.equal(torch.isfinite(got), torch.isfinite(expected)), (top_p, keep, trial)
        assert torch.equal(got[torch.isfinite(got)], expected[torch.isfinite(expected)])


def test_survivor_top_p_keeps_every_survivor_with_a_tie_and_hands_big_sets_on():
    """bf16 logits tie often: tied tokens are ordered by id, and the kept probability is
    what transformers keeps. With more survivors than the limit it is transformers' code."""
    import torch
    from transformers import TopPLogitsWarper

    scores = torch.full((1, 1000), float("-inf"))
    scores[0, [3, 10, 500, 900]] = torch.tensor([2.0, 1.0, 1.0, 0.5])
    theirs = TopPLogitsWarper(0.8)
    got = SurvivorTopP(theirs)(None, scores.clone())
    expected = theirs(None, scores.clone())
    probs = scores.softmax(-1)[0]
    assert float(probs[torch.isfinite(got[0])].sum()) == pytest.approx(
        float(probs[torch.isfinite(expected[0])].sum())
    )
    assert torch.isfinite(got[0, 3]) and not torch.isfinite(got[0, 900])

    calls = []

    class Counting(TopPLogitsWarper):
        def __call__(self, input_ids, scores):
            calls.append(scores.shape)
            return super().__call__(input_ids, scores)

    many = torch.randn(1, SURVIVOR_LIMIT + 10)
    SurvivorTopP(Counting(0.9))(None, many)
    assert calls == [many.shape]


@pytest.mark.parametrize("finite", [5, SURVIVOR_LIMIT + 100])
def test_the_draw_follows_the_softmax_of_the_scores(finite):
    """20,000 draws from a few survivors (and from more than the limit, the whole-row
    path): each token's share is its probability."""
    import torch

    torch.manual_seed(11)
    scores = torch.full((1, 8192), float("-inf"))
    ids = torch.arange(finite) * (8192 // finite)
    scores[0, ids] = -8.0
    scores[0, ids[:5]] = torch.tensor([3.0, 2.0, 1.5, 0.0, -1.0])
    probs = torch.softmax(scores[0], dim=-1)
    draw = DrawAmongSurvivors()
    counts = torch.zeros(8192)
    for _ in range(20_000):
        out = draw(None, scores)
        token = int(out[0].argmax())
        assert out[0, token] == 0 and int(torch.isfinite(out[0]).sum()) == 1
        counts[token] += 1
    shares = counts / counts.sum()
    assert torch.allclose(shares[ids[:5]], probs[ids[:5]], atol=0.012), (shares[ids[:5]], probs)
    assert float(shares[torch.isinf(scores[0])].sum()) == 0


HELLO = [Message("user", "Tell me about the sea.")]


@pytest.mark.model
def test_auto_draws_a_seeded_reply_again_with_the_lens_on_or_off(engine_int8):
    """The CPU's auto mode samples among the survivors: a seed gives the same reply every
    time, with or without the lens recording, and another seed another reply."""
    from chatapp.engine.lens import LensRecorder

    assert engine_int8.survivor_sampling
    params = SamplingParams(**TUTORIAL_VALUES).replace(max_new_tokens=24, seed=21)
    engine_int8.reset()
    first = engine_int8.stream_reply(HELLO, params)
    engine_int8.reset()
    recorder = LensRecorder()
    lensed = engine_int8.stream_reply(HELLO, params, lens=recorder)
    engine_int8.reset()
    other = engine_int8.stream_reply(HELLO, params.replace(seed=22))
    # (24 tokens, or an end of text before them: where fbgemm has no VNNI, int8-dynamic's
    # distribution differs a little and this seed's reply ends after 21.)
    assert first.new_tokens >= 16 and first.token_ids == lensed.token_ids
    assert first.new_tokens == 24 or first.finish_reason == "eos"
    assert [step.sampled_id for step in recorder.steps] == first.token_ids
    assert all(step.sampled_prob and step.sampled_prob > 0 for step in recorder.steps)
    assert other.token_ids != first.token_ids
