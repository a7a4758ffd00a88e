"""The lens of many steps at once (``analyze_steps``, as a reopened reply's lens is
recomputed) gives each step the table one step alone gives (``analyze_step``, as the
live lens records it): on synthetic logits and contexts, for every kind of stage."""

from __future__ import annotations

import pytest

from chatapp.engine.lens import add_sampled, analyze_step, analyze_steps
from chatapp.engine.sampling import SurvivorTopP, survivor_stages

VOCAB = 5000


class Tokens:
    def convert_ids_to_tokens(self, token_id):
        return f"t{token_id}"


def _stages(kind):
    import torch
    from transformers import (
        LogitsProcessorList,
        MinPLogitsWarper,
        NoRepeatNGramLogitsProcessor,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
        TypicalLogitsWarper,
    )

    # As generate builds it: the prompt's left padding, one row's worth.
    penalty = RepetitionPenaltyLogitsProcessor(1.8, prompt_ignore_length=torch.tensor([0]))
    return {
        "tutorial": [
            penalty,
            TemperatureLogitsWarper(0.75),
            TopKLogitsWarper(50),
            TopPLogitsWarper(0.95),
        ],
        "top_p_alone": [TemperatureLogitsWarper(1.3), TopPLogitsWarper(0.5)],
        "small_top_p_after_top_k": [TopKLogitsWarper(400), TopPLogitsWarper(0.2)],
        "min_p": [TemperatureLogitsWarper(0.7), MinPLogitsWarper(0.1)],
        "typical_and_ngram": [
            penalty,
            NoRepeatNGramLogitsProcessor(2),
            TemperatureLogitsWarper(0.9),
            TypicalLogitsWarper(0.9),
        ],
        "greedy": [],
    }[kind], LogitsProcessorList


@pytest.mark.parametrize(
    "kind",
    ["tutorial", "top_p_alone", "small_top_p_after_top_k", "min_p", "typical_and_ngram", "greedy"],
)
@pytest.mark.parametrize("survivors", [False, True], ids=["transformers_top_p", "survivor_top_p"])
def test_many_steps_at_once_give_each_step_its_own_table(kind, survivors):
    import torch

    stages, listed = _stages(kind)
    processors = listed(stages)
    if survivors:
        processors = survivor_stages(processors)
    generator = torch.Generator().manual_seed(3)
    prompt, steps = 30, 11  # 11 rows: not a multiple of the chunk used below
    context = torch.randint(0, 60, (1, prompt + steps), generator=generator)
    logits = torch.randn(steps, VOCAB, generator=generator) * 2
    # The context's tokens are likely ones: the repetition penalty and the n-gram ban
    # change the tables, and a row given another row's context would be caught.
    logits[:, :60] += 4
    drawn = context[0, prompt:].tolist()
    alone = []
    for row in range(steps):
        ids = context[:, : prompt + row]
        _, record, kept = analyze_step(
            row, ids, logits[row : row + 1], processors, Tokens(), top_n=8, check_mass=True
        )
        add_sampled(record, drawn[row], kept, Tokens())
        alone.append(record)
    together = []
    for start in range(0, steps, 4):
        end = min(start + 4, steps)
        _, records = analyze_steps(
            start,
            context,
            [prompt + r for r in range(start, end)],
            logits[start:end],
            processors,
            Tokens(),
            top_n=8,
            drawn=drawn[start:end],
            check_mass=True,
        )
        together += records
    assert len(together) == steps
    for one, many in zip(alone, together, strict=True):
        assert many.index == one.index
        assert many.stages == one.stages
        assert many.survivors == one.survivors, one.index
        assert [c.token_id for c in many.candidates] == [c.token_id for c in one.candidates]
        for a, b in zip(one.candidates, many.candidates, strict=True):
            assert b.probs == pytest.approx(a.probs, abs=1e-6), (one.index, a.token_id)
        assert many.entropy_before == pytest.approx(one.entropy_before, abs=1e-4)
        assert many.entropy_after == pytest.approx(one.entropy_after, abs=1e-4)
        assert many.mass == pytest.approx(one.mass, abs=1e-4)
        assert many.sampled_id == one.sampled_id
        assert many.sampled_prob == pytest.approx(one.sampled_prob, abs=1e-6)


def test_the_steps_differ_where_their_contexts_do():
    """The check above would pass if every row were given the same context; here the
    repetition penalty must make a row's table depend on its own context."""
    import torch

    stages, listed = _stages("tutorial")
    context = torch.tensor([[7, 8, 9, 1, 2]])
    logits = torch.zeros(2, VOCAB)
    logits[:, 1] = 3.0  # token 1 is in row 1's context (ends at 4), not in row 0's (ends at 3)
    _, records = analyze_steps(0, context, [3, 4], logits, listed(stages), Tokens(), top_n=3)
    assert records[0].candidates[0].probs[1] > records[1].candidates[0].probs[1]


def test_batched_top_p_filters_each_row_as_transformers_does():
    """Rows with different numbers of survivors, ties included: each row kept exactly as
    transformers' top-p keeps it alone."""
    import torch
    from transformers import TopKLogitsWarper, TopPLogitsWarper

    generator = torch.Generator().manual_seed(9)
    rows = []
    for k in (1, 3, 50, 400, 50):
        row = torch.randn(1, VOCAB, generator=generator) * 3
        rows.append(TopKLogitsWarper(k)(None, row))
    rows[-1][0, :20] = 1.0  # a tie among survivors
    scores = torch.cat(rows)
    for top_p in (0.05, 0.5, 0.95):
        theirs = TopPLogitsWarper(top_p)
        got = SurvivorTopP(theirs)(None, scores.clone())
        for r in range(scores.shape[0]):
            expected = theirs(None, scores[r : r + 1].clone())
            assert torch.equal(torch.isfinite(got[r : r + 1]), torch.isfinite(expected)), (top_p, r)
            assert torch.equal(
                got[r : r + 1][torch.isfinite(expected)], expected[torch.isfinite(expected)]
            )
