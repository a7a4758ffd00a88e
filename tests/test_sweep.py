"""The sweep's figures against hand computations on fixed texts, and its formats."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest

from chatapp.engine.types import ReplyStats
from chatapp.params import ParamError, SamplingParams
from chatapp.sweep import (
    Sweep,
    SweepPoint,
    distinct_n,
    parse_values,
    render,
    repeat_rate,
    sweep_rows,
)

A = "the sea is the sea".split()
B = "the sky is blue".split()


def test_distinct_by_hand():
    # unigrams: 5 + 4 = 9; distinct {the, sea, is, sky, blue} = 5
    assert distinct_n([A, B], 1) == pytest.approx(5 / 9)
    # bigrams: (the sea)(sea is)(is the)(the sea) + (the sky)(sky is)(is blue) = 7;
    # distinct: the sea, sea is, is the, the sky, sky is, is blue = 6
    assert distinct_n([A, B], 2) == pytest.approx(6 / 7)
    assert distinct_n([[], ["x"]], 2) == 0.0


def test_repeat_rate_by_hand():
    # A's bigrams repeat "the sea" once among 4; B none among 3 → 1/7
    assert repeat_rate([A, B], 2) == pytest.approx(1 / 7)
    # trigrams: A: (the sea is)(sea is the)(is the sea): none repeat; a loop does
    loop = "a b c a b c a".split()  # abc bca cab abc bca → 2 repeats of 5
    assert repeat_rate([A, loop], 3) == pytest.approx(2 / 8)
    # Repeats count within a sample, not across samples
    assert repeat_rate([B, B], 2) == 0.0


def stats(ids, reason="eos", logprobs=None, text=""):
    return ReplyStats(
        prompt_tokens=3,
        new_tokens=len(ids) + (reason == "eos"),
        time_to_first_token=0.1,
        elapsed=1.0,
        finish_reason=reason,
        text=text,
        token_ids=[*ids, 1] if reason == "eos" else list(ids),
        reply_ids=list(ids),
        seed=5,
        logprobs=logprobs,
    )


def test_point_figures_by_hand():
    point = SweepPoint(
        {"temperature": 0.7},
        [
            stats([4, 5, 4, 5], "eos", [-1.0, -2.0, -0.5, -0.5, -1.0]),
            stats([4, 6], "length", [-3.0, -1.0]),
        ],
    )
    figures = point.figures()
    assert figures["mean_length"] == 3.0  # (4 + 2) / 2, the stop token not counted
    assert figures["distinct_1"] == pytest.approx(3 / 6)  # {4,5,6} of 6
    assert figures["distinct_2"] == pytest.approx(3 / 4)  # 45 54 45 | 46 → 3 of 4
    assert figures["mean_logprob"] == pytest.approx(-9.0 / 7)
    assert figures["repeat_rate"] == pytest.approx(0.0)  # trigrams 454, 545: none repeat
    assert figures["ended_share"] == 0.5
    assert math.isnan(SweepPoint({}, [stats([4])]).figures()["mean_logprob"])


def test_values_are_checked_as_the_panel_checks_them():
    assert parse_values("temperature", "0.2, 0.6,1.0") == [0.2, 0.6, 1.0]
    assert parse_values("top_k", "0,5") == [0, 5]
    with pytest.raises(ParamError):
        parse_values("temperature", "0.2,hot")
    with pytest.raises(ValueError, match="unknown parameter"):
        parse_values("warmth", "1")


def test_rows_are_values_times_samples_with_consecutive_seeds():
    base = SamplingParams().replace(do_sample=True)
    sweep = Sweep("p", base, {"temperature": [0.5, 1.0], "top_p": [0.5, 0.9]}, 3, 10)
    points, rows, seeds = sweep_rows(sweep)
    assert [p.values for p in points][:2] == [
        {"temperature": 0.5, "top_p": 0.5},
        {"temperature": 0.5, "top_p": 0.9},
    ]
    assert len(rows) == 12 and seeds[:4] == [10, 11, 12, 10]
    assert rows[3].top_p == 0.9 and rows[3].temperature == 0.5


def test_formats():
    base = SamplingParams().replace(do_sample=True)
    sweep = Sweep("p", base, {"temperature": [0.5]}, 2, 0)
    sweep.points = [
        SweepPoint({"temperature": 0.5}, [stats([4, 5], text="海 is"), stats([6], text="b")])
    ]
    data = json.loads(render(sweep, "json"))
    assert data["points"][0]["texts"] == ["海 is", "b"]
    assert data["points"][0]["figures"]["mean_length"] == 1.5
    assert data["grid"] == {"temperature": [0.5]}
    rows = list(csv.reader(io.StringIO(render(sweep, "csv"))))
    assert rows[0][:2] == ["temperature", "mean_length"] and rows[1][:2] == ["0.5", "1.5"]
    table = render(sweep, "table")
    assert "mean len" in table.splitlines()[0] and "[seed 5] 海 is" in table
