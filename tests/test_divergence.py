"""Where two compare columns part and which stage parted them: hand-built traces, and the
real model."""

from __future__ import annotations

import pytest

from chatapp.engine.divergence import explain, first_step_apart, removal
from chatapp.params import SamplingParams

BASE = SamplingParams()


def test_first_step_apart():
    assert first_step_apart([1, 2, 3], [1, 2, 4]) == 2
    assert first_step_apart([1, 2], [1, 2]) is None
    assert first_step_apart([1, 2], [1, 2, 7]) == 2  # one ended first
    assert first_step_apart([5], [6]) == 0


def test_the_stage_that_removed_the_other_columns_token_is_named():
    # Column 1 drew "blue" (index 0), column 2 drew "red" (index 1). Column 2's top-p
    # removed "blue" after temperature left it at 0.031; column 1's stages kept "red".
    column1 = [("raw", [0.2, 0.3]), ("temperature", [0.25, 0.3]), ("top_p", [0.4, 0.45])]
    column2 = [("raw", [0.2, 0.3]), ("temperature", [0.031, 0.6]), ("top_p", [0.0, 0.9])]
    assert removal(column2, 0) == ("top_p", 0.031)
    assert removal(column1, 1) is None
    found = explain(
        4,
        ("␣blue", "␣red"),
        (1, 2),
        (BASE, BASE.replace(top_p=0.5)),
        (column1, column2),
    )
    assert found.column == 2 and found.stage == "top_p" and found.prob == 0.031
    assert (
        found.text == "step 5: column 2's top-p 0.5 removed '␣blue' (p 0.031), which column 1 drew"
    )


def test_column_1s_stage_is_named_when_it_removed_column_2s_token():
    column1 = [("raw", [0.5, 0.01]), ("top_k", [0.9, 0.0])]
    column2 = [("raw", [0.5, 0.01]), ("top_k", [0.5, 0.01])]
    found = explain(
        0, ("a", "b"), (1, 3), (BASE.replace(top_k=1), BASE.replace(top_k=0)), (column1, column2)
    )
    assert found.column == 1 and found.text.startswith("step 1: column 1's top-k 1 removed 'b'")


def test_when_both_could_draw_either_the_draw_parted_them():
    column1 = [("raw", [0.5, 0.4]), ("temperature", [0.55, 0.35])]
    column2 = [("raw", [0.5, 0.4]), ("temperature", [0.45, 0.42])]
    found = explain(
        2, ("a", "b"), (1, 2), (BASE, BASE.replace(temperature=1.3)), (column1, column2)
    )
    assert found.column == 0
    assert (
        found.text
        == "step 3: both could draw either; column 1 drew 'a' (p 0.550), column 2 drew 'b' (p 0.420)"
    )


@pytest.mark.model
def test_a_top_k_of_one_parts_two_columns_at_the_first_sampled_token(engine32):
    """Column 1 greedy-like (top-k 1 while sampling), column 2 hot: where they part, the
    real model's trace names column 1's top-k, unless column 2 drew the top token too."""
    from chatapp.engine.types import Message

    messages = [Message("user", "Name a colour.")]
    cold = SamplingParams().replace(do_sample=True, top_k=1, max_new_tokens=8, seed=11)
    hot = cold.replace(top_k=0, top_p=1.0, temperature=2.5)
    rows = engine32.stream_columns(messages, [cold, hot], wait=True)
    found = engine32.divergence(messages, (rows[0].token_ids, rows[1].token_ids), (cold, hot))
    assert found is not None
    step = first_step_apart(rows[0].token_ids, rows[1].token_ids)
    assert found.step == step
    assert found.column == 1 and found.stage == "top_k", found.text
    assert "column 1's top-k 1 removed" in found.text and 0 < found.prob < 1


def test_when_each_columns_stages_removed_the_others_token_both_are_said():
    column1 = [("raw", [0.5, 0.3]), ("top_k", [1.0, 0.0])]  # top-k 1 removed "b"
    column2 = [("raw", [0.5, 0.3]), ("min_p", [0.0, 1.0])]  # (a made-up stage order)
    found = explain(
        1, ("a", "b"), (1, 2), (BASE.replace(top_k=1), BASE.replace(min_p=0.9)), (column1, column2)
    )
    assert found.column == 2 and found.stage == "min_p"
    assert found.text == (
        "step 2: column 2's min-p 0.9 removed 'a' (p 0.500), which column 1 drew; "
        "and column 1's top-k 1 removed 'b' (p 0.300), which column 2 drew"
    )
