"""The engine on the real bundled Gemma 3 270M (CPU, short generations)."""

from __future__ import annotations

import pytest

from chatapp.engine import EngineBusy, Message
from chatapp.engine.chat_format import END, render_prompt
from chatapp.engine.decoding import IncrementalDecoder
from chatapp.params import TUTORIAL_VALUES, SamplingParams

pytestmark = pytest.mark.model

HELLO = [Message("user", "Write one sentence about the sea.")]
SEED_PROMPT = "使用繁體中文回答，請問什麼是大型語言模型？"
GREEDY = SamplingParams(
    do_sample=False, temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0, max_new_tokens=12
)


def test_greedy_reply_is_deterministic(engine):
    first = engine.stream_reply(HELLO, GREEDY)
    second = engine.stream_reply(HELLO, GREEDY)
    assert first.token_ids == second.token_ids
    assert first.new_tokens > 0 and first.text


def test_top_k_one_with_sampling_equals_greedy(engine):
    greedy = engine.stream_reply(HELLO, GREEDY)
    sampled = engine.stream_reply(
        HELLO, GREEDY.replace(do_sample=True, top_k=1, temperature=0.7, seed=7)
    )
    assert sampled.token_ids == greedy.token_ids


def test_same_seed_gives_same_reply_and_other_seed_differs(engine):
    params = SamplingParams(temperature=1.2, top_k=0, top_p=1.0, max_new_tokens=16, seed=1234)
    a = engine.stream_reply(HELLO, params)
    b = engine.stream_reply(HELLO, params)
    c = engine.stream_reply(HELLO, params.replace(seed=99))
    assert a.token_ids == b.token_ids
    assert a.token_ids != c.token_ids


def test_max_new_tokens_is_respected(engine):
    stats = engine.stream_reply(
        HELLO, SamplingParams(**TUTORIAL_VALUES).replace(max_new_tokens=5, seed=3)
    )
    assert stats.new_tokens <= 5
    if stats.finish_reason == "length":
        assert stats.new_tokens == 5


def test_stop_request_ends_reply_within_one_token(engine):
    seen = []

    def on_token(token_id, _):
        seen.append(token_id)
        if len(seen) == 3:
            engine.stop()

    stats = engine.stream_reply(HELLO, GREEDY.replace(max_new_tokens=40), on_token=on_token)
    assert stats.finish_reason == "stopped"
    assert 3 <= stats.new_tokens <= 4
    # The next reply is not affected by the earlier stop.
    again = engine.stream_reply(HELLO, GREEDY.replace(max_new_tokens=6))
    assert again.finish_reason != "stopped"


def test_seed_chinese_prompt_streams_cleanly(engine):
    pieces = []
    stats = engine.stream_reply(
        [Message("user", SEED_PROMPT)],
        SamplingParams(**TUTORIAL_VALUES).replace(max_new_tokens=40, seed=0),
        pieces.append,
    )
    joined = "".join(pieces)
    assert pieces and all("\ufffd" not in p for p in pieces)
    full = engine.tokenizer.decode(stats.token_ids, skip_special_tokens=True).rstrip("\ufffd")
    # The pieces are the decode of the generated ids, up to a stop string if one ended it.
    assert full.startswith(joined)
    rest = full[len(joined) :]
    assert rest == "" or any(rest.startswith(s) for s in engine.stop_strings), rest


def test_a_character_split_over_byte_tokens_streams_whole(engine):
    """Forces the reply to contain a character spelled by several byte tokens."""
    import torch
    from transformers import LogitsProcessorList

    rare = "𠜎"
    forced = engine.tokenizer(rare, add_special_tokens=False)["input_ids"]
    alone = [engine.tokenizer.decode([i]) for i in forced]
    assert len(forced) > 1 and all("\ufffd" in a for a in alone), "expected byte tokens"

    class ForceBytes:
        step = 0

        def __call__(self, input_ids, scores):
            i, ForceBytes.step = ForceBytes.step - 2, ForceBytes.step + 1
            if 0 <= i < len(forced):  # after two free tokens, spell the character
                scores = torch.full_like(scores, -float("inf"))
                scores[:, forced[i]] = 0
            return scores

    pieces = []
    stats = engine.stream_reply(
        [Message("user", SEED_PROMPT)],
        GREEDY.replace(max_new_tokens=len(forced) + 4),
        pieces.append,
        logits_processor=LogitsProcessorList([ForceBytes()]),
    )
    assert stats.token_ids[2 : 2 + len(forced)] == forced
    joined = "".join(pieces)
    assert rare in joined and all("\ufffd" not in p for p in pieces)
    assert joined == engine.tokenizer.decode(stats.token_ids, skip_special_tokens=True)


def test_decoder_never_splits_a_multibyte_character(engine):
    text = "大型語言模型 🦜𠜎 ok"
    ids = engine.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) > len(text.split())  # some characters span several (byte) tokens
    decoder = IncrementalDecoder(engine.tokenizer)
    pieces = [decoder.push(i) for i in ids] + [decoder.flush()]
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) == engine.tokenizer.decode(ids)


def test_decoder_drops_a_trailing_incomplete_character(engine):
    ids = engine.tokenizer("𠜎", add_special_tokens=False)["input_ids"]
    assert len(ids) > 1, "expected byte-fallback tokens"
    decoder = IncrementalDecoder(engine.tokenizer)
    pieces = [decoder.push(i) for i in ids[:-1]] + [decoder.flush()]
    assert "".join(pieces) == ""


def test_reply_stops_on_end_of_turn(engine):
    import torch

    end_id = engine.tokenizer.convert_tokens_to_ids(END)

    class ForceEndOfTurn:
        calls = 0

        def __call__(self, input_ids, scores):
            ForceEndOfTurn.calls += 1
            if ForceEndOfTurn.calls == 3:
                scores = torch.full_like(scores, -float("inf"))
                scores[:, end_id] = 0
            return scores

    from transformers import LogitsProcessorList

    stats = engine.stream_reply(
        HELLO,
        GREEDY.replace(max_new_tokens=20),
        logits_processor=LogitsProcessorList([ForceEndOfTurn()]),
    )
    assert stats.finish_reason == "eos"
    assert stats.new_tokens == 3 and stats.token_ids[-1] == end_id
    assert END not in stats.text


def test_stats_are_reported(engine):
    stats = engine.stream_reply(HELLO, GREEDY.replace(max_new_tokens=4))
    assert stats.prompt_tokens > 5
    assert 0 < stats.time_to_first_token <= stats.elapsed
    assert stats.tokens_per_second > 0
    assert stats.finish_reason in ("eos", "length")


def test_second_request_while_busy_is_refused(engine):
    refused = []

    def on_token(token_id, _):
        if not refused:
            with pytest.raises(EngineBusy, match="already being generated"):
                engine.stream_reply(HELLO, GREEDY)
            refused.append(True)

    engine.stream_reply(HELLO, GREEDY.replace(max_new_tokens=3), on_token=on_token)
    assert refused == [True]
    assert not engine.busy


def test_system_prompt_folds_into_first_user_turn(engine):
    text = render_prompt(
        engine.tokenizer,
        [
            Message("system", "Be brief."),
            *HELLO,
            Message("assistant", "Waves."),
            Message("user", "More?"),
        ],
    )
    assert text == (
        "<bos><start_of_turn>user\nBe brief.\n\nWrite one sentence about the sea.<end_of_turn>\n"
        "<start_of_turn>model\nWaves.<end_of_turn>\n<start_of_turn>user\nMore?<end_of_turn>\n"
        "<start_of_turn>model\n"
    )
    ids = engine.prompt_ids([Message("user", "hi")])[0].tolist()
    assert ids[0] == engine.tokenizer.bos_token_id and ids.count(engine.tokenizer.bos_token_id) == 1
