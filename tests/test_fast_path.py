"""The fast path (--compile): one static KV cache and generate's torch.compile of the
decode step. It is made for the GPU's gemma-2b; here it runs on the CPU (inductor's C++
backend) on a tiny random model of gemma-2b's architecture (no sliding-window layers),
because compiling the bundled Gemma 3 270M takes minutes on 2 cores and its sliding
layers recompile the step (measured: 1 token/s). The bundled tokenizer is used."""

from __future__ import annotations

import gc
import sys
import threading
from pathlib import Path

import pytest

from chatapp import heap
from chatapp.engine import Message
from chatapp.engine.lens import LensRecorder
from chatapp.params import SamplingParams

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from bench_common import random_model_folder  # noqa: E402

pytestmark = pytest.mark.model

GREEDY = SamplingParams(do_sample=False, max_new_tokens=10)
FIRST = [Message("user", "使用繁體中文回答，請問什麼是大型語言模型？")]


@pytest.fixture(scope="module")
def tiny_gemma(bundled_folder, tmp_path_factory):
    return random_model_folder(tmp_path_factory.mktemp("tiny") / "gemma", tiny=True)


def test_fast_path_compiles_streams_stops_reuses_the_cache_and_keeps_the_lens(tiny_gemma):
    from chatapp.engine import LocalEngine
    from chatapp.engine.loading import load_model

    loaded = load_model(str(tiny_gemma), quant="none", dtype="float32")
    eager = LocalEngine(loaded, chat_format="dialogue")
    eager.reuse_cache = False
    fast = LocalEngine(loaded, chat_format="dialogue", compile=True)
    messages: list[str] = []
    heap.pause()  # as the chatapp command does while the model loads
    try:
        fast.warm_up(lambda message, fraction: messages.append(message))
        # Compiling makes garbage by the graph: the model is frozen and collecting resumes
        # before it (with the collector paused, all of it would be frozen at Ready).
        assert gc.isenabled() and gc.get_freeze_count() > 0
    finally:
        gc.enable()
        gc.unfreeze()
    assert messages[0].startswith("Compiling") and messages[-1].startswith("Compiled in")
    assert getattr(loaded.model, "_compiled_call", None) is not None, "generate compiled"
    assert "compiled" in fast.engine_label() and "torch.compile" in fast.describe()

    # Streams the same tokens as the eager path, piece by piece.
    pieces: list[str] = []
    plain = eager.stream_reply(FIRST, GREEDY)
    quick = fast.stream_reply(FIRST, GREEDY, pieces.append)
    assert quick.token_ids == plain.token_ids and quick.new_tokens == 10
    assert "".join(pieces) == quick.text

    # The next turn evaluates only what is new in the one static cache.
    second = [*FIRST, Message("assistant", quick.text), Message("user", "再說一次。")]
    again = fast.stream_reply(second, GREEDY)
    assert again.reused_tokens >= quick.prompt_tokens
    assert again.token_ids == eager.stream_reply(second, GREEDY).token_ids
    # A regenerate of that turn crops the static cache back to the prompt.
    regenerated = fast.stream_reply(second, GREEDY)
    assert regenerated.token_ids == again.token_ids and regenerated.reused_tokens > 0

    # The lens records every step of a sampled reply, the drawn token included.
    recorder = LensRecorder(check_mass=True)
    sampled = SamplingParams(max_new_tokens=6, temperature=0.9, top_k=40, seed=3)
    drawn = fast.stream_reply(FIRST, sampled, lens=recorder)
    assert [s.sampled_id for s in recorder.steps] == drawn.token_ids
    assert drawn.token_ids == eager.stream_reply(FIRST, sampled).token_ids

    # Stop ends the reply after the first piece.
    cancel = threading.Event()
    stopped = fast.stream_reply(
        FIRST, GREEDY.replace(max_new_tokens=40), lambda piece: cancel.set(), cancel=cancel
    )
    assert stopped.finish_reason == "stopped" and stopped.new_tokens <= 3

    # Every reply runs on the engine's one generating thread, whichever thread asks (the
    # app asks from a new worker thread per reply; CUDA graphs are kept per thread).
    threads: list[str] = []

    def reply_from_new_thread() -> None:
        fast.stream_reply(
            FIRST,
            GREEDY.replace(max_new_tokens=2),
            lambda piece: threads.append(threading.current_thread().name),
        )

    for _ in range(2):
        caller = threading.Thread(target=reply_from_new_thread)
        caller.start()
        caller.join()
    assert len(set(threads)) == 1 and threads[0].startswith("chatapp-generate"), threads

    # On CUDA the fast path asks generate to read each step's token a step late, with the
    # lens too (the app always passes a recorder): the flag is up on the generating
    # thread during such a reply only.
    from chatapp.engine import framework_internals as internals

    fast.defer_stop_check = True  # as on CUDA (here generate keeps its own check: a CPU)
    seen: dict[str, list[bool]] = {"plain": [], "lens": []}
    for kind, lens in (("plain", None), ("lens", LensRecorder())):
        fast.stream_reply(
            FIRST,
            GREEDY.replace(max_new_tokens=3),
            lambda p, kind=kind: seen[kind].append(internals.stop_check_deferred()),
            lens=lens,
        )
    assert seen["plain"] and all(seen["plain"]) and seen["lens"] and all(seen["lens"])
    assert internals.stop_check_deferred() is False


def test_deferred_stop_check_widens_to_cuda_only_when_asked():
    import torch
    from transformers.generation.utils import DeferredStopCheck

    from chatapp.engine import framework_internals as internals

    assert internals.allow_deferred_stop_check()
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert not DeferredStopCheck.is_supported(cuda, None, False, False)
    with internals.deferred_stop_check(True):
        assert DeferredStopCheck.is_supported(cuda, None, False, False)
        assert not DeferredStopCheck.is_supported(cuda, None, False, True)  # an assistant
        assert not DeferredStopCheck.is_supported(cpu, None, False, False)
    assert not internals.stop_check_deferred()
