"""The parameter spec: validation messages, conversion, and the tutorial's advice."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from chatapp.params import (
    PARAMS,
    SPEC,
    TUTORIAL_VALUES,
    ParamError,
    ParamsError,
    SamplingParams,
    help_text,
)

BAD_VALUES = {
    "do_sample": ["maybe", "2", ""],
    "temperature": ["abc", "0", "-1", "5.5", "nan", "inf", ""],
    "top_k": ["x", "-1", "2.5", "1001", ""],
    "top_p": ["0", "1.5", "half", ""],
    "min_p": ["-0.1", "1.1", "x", ""],
    "typical_p": ["0", "1.01", "y", ""],
    "repetition_penalty": ["0", "-2", "6", "z", ""],
    "no_repeat_ngram_size": ["-1", "1.5", "21", "q"],
    "max_new_tokens": ["0", "-5", "8193", "ten", "3.5", ""],
    "seed": ["-1", "1.5", "abc", str(2**32)],
}


def test_every_parameter_has_bad_value_cases():
    assert set(BAD_VALUES) == {p.name for p in PARAMS}


@pytest.mark.parametrize("name,raw", [(n, v) for n, values in BAD_VALUES.items() for v in values])
def test_bad_value_is_rejected_with_its_message(name, raw):
    with pytest.raises(ParamError) as info:
        SPEC[name].parse(raw)
    message = str(info.value)
    assert message.startswith(f"{name} must be ")
    assert f"got {raw!r}" in message
    assert info.value.name == name


def test_temperature_message_reads_as_specified():
    with pytest.raises(ParamError, match=r"^temperature must be a number > 0 and ≤ 5, got 'abc'$"):
        SPEC["temperature"].parse("abc")


def test_good_values_parse_to_their_types():
    assert SPEC["do_sample"].parse("off") is False
    assert SPEC["do_sample"].parse("True") is True
    assert SPEC["top_k"].parse("40") == 40 and isinstance(SPEC["top_k"].parse("40"), int)
    assert SPEC["temperature"].parse(" 0.7 ") == pytest.approx(0.7)
    assert SPEC["seed"].parse("") is None
    assert SPEC["seed"].parse("42") == 42


def test_tutorial_values_are_expressible_exactly():
    params = SamplingParams(**TUTORIAL_VALUES)
    config = params.to_generation_config()
    for name, value in TUTORIAL_VALUES.items():
        assert getattr(config, name) == value
        assert getattr(params, name) == value


def test_every_parameter_is_a_typed_attribute_in_the_spec_order():
    """Adding a parameter: its PARAMS entry and its typed attribute on SamplingParams."""
    hints = typing.get_type_hints(SamplingParams)
    assert [f.name for f in dataclasses.fields(SamplingParams)] == [p.name for p in PARAMS]
    for spec in PARAMS:
        assert hints[spec.name] == (spec.kind | None if spec.optional else spec.kind)
        assert isinstance(getattr(SamplingParams(), spec.name), hints[spec.name])


def test_several_bad_values_are_all_reported():
    with pytest.raises(ParamsError) as info:
        SamplingParams(top_k="x", temperature="0")
    assert {e.name for e in info.value.errors} == {"top_k", "temperature"}


def test_unknown_parameter_is_an_error():
    with pytest.raises(ParamsError, match="unknown parameter 'temprature'"):
        SamplingParams(temprature=1.0)


def test_greedy_with_sampling_values_is_reported_not_silently_dropped():
    params = SamplingParams(**TUTORIAL_VALUES).replace(do_sample=False)
    advice = params.advice()
    ignored = [a for a in advice if a.ignored]
    assert ignored and set(ignored[0].params) == {"temperature", "top_k", "top_p"}
    assert "tutorial advises" in ignored[0].message
    assert any("repetition_penalty" in a.params for a in advice)
    kwargs = params.generation_kwargs()
    assert "temperature" not in kwargs and "top_k" not in kwargs
    assert kwargs["do_sample"] is False
    assert params.ignored() >= {"temperature", "top_k", "top_p", "min_p", "typical_p"}


def test_clean_greedy_has_no_ignored_advice():
    params = SamplingParams(
        do_sample=False, temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0
    )
    assert params.advice() == []


def test_top_k_one_is_noted_as_greedy_like():
    assert any("top_k" in a.params for a in SamplingParams(top_k=1).advice())


def test_min_p_zero_means_off():
    assert SamplingParams(min_p=0).generation_kwargs()["min_p"] is None
    assert SamplingParams(min_p=0.1).generation_kwargs()["min_p"] == pytest.approx(0.1)


def test_summary_names_the_values_in_effect():
    assert (
        SamplingParams(**TUTORIAL_VALUES)
        .summary()
        .startswith("T 0.75 · top-k 50 · top-p 0.95 · rep 1.1")
    )
    assert SamplingParams(do_sample=False).summary().startswith("greedy")


def test_params_are_immutable():
    params = SamplingParams()
    with pytest.raises(AttributeError):
        params.temperature = 2.0


def test_nudge_moves_by_step_and_stays_in_range():
    assert SPEC["temperature"].nudge(0.75, +1) == pytest.approx(0.8)
    assert SPEC["temperature"].nudge(0.05, -1) == pytest.approx(0.05)
    assert SPEC["top_p"].nudge(1.0, +1) == 1.0
    assert SPEC["top_k"].nudge(0, -1) == 0
    assert SPEC["do_sample"].nudge(True, +1) is False


@pytest.mark.parametrize(
    "lang,needle", [("en", "greedy decoding"), ("zh", "建議不要設定其他取樣參數")]
)
def test_help_has_the_tutorial_advice(lang, needle):
    text = help_text(lang)
    assert needle in text
    for spec in PARAMS:
        assert spec.name in text
