"""Shared by the benches: make every run the same length."""

from __future__ import annotations

import re
from typing import Any

# The tutorial's Chinese prompt, the short prompt every bench sends.
TUTORIAL_PROMPT = "使用繁體中文回答，請問什麼是大型語言模型？"
# Repeated to make a long prompt (cut to --prompt tokens: ~790 by default).
LONG_TEXT = (
    "The sea is wide and deep, and the light on it changes every hour of the day. "
    "Fishermen read its colour the way others read a clock. "
)

# Terminal escape sequences (CSI, OSC, charset and keypad modes): stripped from a pty's
# output to read the text it shows.
ANSI = re.compile(
    rb"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[()][0-9A-B]|\x1b[=>78]"
)


def tutorial_params(**changes: Any) -> Any:
    """The tutorial's sampling values (its GenerationConfig cell) as ``SamplingParams``,
    with ``changes``."""
    from chatapp import params

    return params.SamplingParams(**params.TUTORIAL_VALUES).replace(**changes)


def rss_bytes() -> int:
    """This process's resident memory now (/proc/self/statm: pages)."""
    import os

    with open("/proc/self/statm", encoding="ascii") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


MARKERS = "QZXJVK"  # keys typed while a reply streams: never in a reply or the chrome


def disable_eos(engine: Any) -> None:
    """Every reply of ``engine`` runs to max_new_tokens: its generation configs (for the
    values asked, the lens's neutral one included) carry no EOS."""
    with_eos = engine.generation_config

    def without_eos(params: Any) -> Any:
        config = with_eos(params)
        config.eos_token_id = None
        return config

    engine.generation_config = without_eos
    # generate() fills a value left unset from the model's own generation config, so the
    # EOS has to go from there too (else the reply still ends at the first EOS).
    engine.model.generation_config.eos_token_id = None


def gemma_2b_config(vocab_size: int = 256_000) -> Any:
    """gemma-2b's shape (hidden 2048, 18 layers, intermediate 16384, 8 heads, 1 KV head,
    head_dim 256), for random weights where no checkpoint can be fetched."""
    from transformers import GemmaConfig

    return GemmaConfig(
        vocab_size=vocab_size,
        hidden_size=2048,
        num_hidden_layers=18,
        intermediate_size=16384,
        num_attention_heads=8,
        num_key_value_heads=1,
        head_dim=256,
    )


def _timed(model: Any, ids: Any, sync: Any, **generate: Any) -> tuple[Any, float]:
    """Raw ``model.generate`` from ``ids``: its output and seconds (``sync``: called
    before and after, e.g. ``torch.cuda.synchronize``)."""
    import time

    import torch

    if sync is not None:
        sync()
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **generate)
    if sync is not None:
        sync()
    return out, time.perf_counter() - start


def timed_generate(
    model: Any, input_ids: Any, config: Any, seed: int = 0, sync: Any = None, **generate: Any
) -> tuple[int, float]:
    """Raw ``generate`` under ``config`` from ``seed`` (``generate``: more of its
    arguments, e.g. a ``past_key_values`` cache): new tokens and seconds."""
    import torch

    torch.manual_seed(seed)
    out, seconds = _timed(model, input_ids, sync, generation_config=config, **generate)
    return out.shape[1] - input_ids.shape[1], seconds


def greedy_seconds(model: Any, ids: Any, new: int, sync: Any = None) -> float:
    """Seconds for raw ``generate`` to add exactly ``new`` greedy tokens to ``ids``."""
    out, seconds = _timed(
        model,
        ids,
        sync,
        max_new_tokens=new,
        min_new_tokens=new,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=0,
    )
    assert out.shape[1] - ids.shape[1] == new
    return seconds


def next_token_logprobs(model: Any, ids: Any) -> Any:
    """Log-probabilities of the next token at every position of ``ids`` (one pass)."""
    from chatapp.engine.closeness import next_token_logprobs as logprobs

    return logprobs(model, ids)


def closeness(reference: Any, logprobs: Any) -> tuple[float, float]:
    """Mean KL(reference || logprobs) in bits over positions, and top-1 agreement (the
    app's own closeness measure, ``chatapp.engine.closeness``)."""
    from chatapp.engine.closeness import compare

    result = compare(reference, logprobs)
    return result.kl_bits, result.top1


class PtyChild:
    """A child process on a pseudo-terminal (the real terminal driver: Textual draws on
    stderr, so all three streams go to the pty), and what it has written so far."""

    def __init__(self, args: list[str], env: dict[str, str], rows: int = 40, cols: int = 120):
        import fcntl
        import os
        import struct
        import subprocess
        import termios

        self.primary, secondary = os.openpty()
        fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.proc = subprocess.Popen(
            args,
            stdin=secondary,
            stdout=secondary,
            stderr=secondary,
            env={"TERM": "xterm-256color", **env},
            start_new_session=True,
        )
        os.close(secondary)
        self.buffer = bytearray()

    def read(self, timeout: float) -> bytes:
        """What arrives within ``timeout`` seconds (also appended to ``buffer``)."""
        import os
        import select

        ready, _, _ = select.select([self.primary], [], [], timeout)
        if not ready:
            return b""
        try:
            data = os.read(self.primary, 1 << 16)
        except OSError:
            return b""
        self.buffer.extend(data)
        return data

    def write(self, data: bytes) -> None:
        import os

        os.write(self.primary, data)


def random_model_folder(folder: Any, tiny: bool = False, dtype: str = "bfloat16") -> Any:
    """A model folder as ``--model`` takes it, with random weights in gemma-2b's shape (or
    a tiny one, to check a script on a CPU) and the bundled model's tokenizer, whose
    vocabulary (262,144) sets the embedding size. Built once; returns the folder.

    ``$CHATAPP_BENCH_TOKENIZER``: a folder holding that tokenizer, for a machine without
    the bundled GGUF (``bench/gpu_carry.sh`` packs one for the GPU machine)."""
    import os
    import shutil
    from pathlib import Path

    import torch
    from transformers import AutoModelForCausalLM, GemmaConfig

    from chatapp.engine.bundled import ensure_bundled_model
    from chatapp.engine.loading import load_tokenizer

    folder = Path(folder)
    if (folder / "config.json").exists():
        return folder
    carried = os.environ.get("CHATAPP_BENCH_TOKENIZER")
    bundled = Path(carried) if carried else ensure_bundled_model()
    tokenizer = load_tokenizer(str(bundled))
    if tiny:
        config = GemmaConfig(
            vocab_size=len(tokenizer),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=32,
            max_position_embeddings=512,
        )
    else:
        config = gemma_2b_config(vocab_size=len(tokenizer))
    config.bos_token_id = tokenizer.bos_token_id
    config.eos_token_id = tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(0)
    # Made on the GPU where there is one: initialising 2.5B weights on the CPU takes a while.
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (bundled / name).exists():
            shutil.copy(bundled / name, folder / name)
    return folder


QUIT_EXIT_CODES = {"ctrl+q": 0, "sigint": 130, "sigterm": 143}
LEAVE_ALT_SCREEN = b"\x1b[?1049l"  # the terminal's own screen back


def wait_for_output(child: PtyChild, needle: bytes, timeout: float) -> None:
    """Read until ``needle`` is in what the child wrote (AssertionError if not in time)."""
    import time

    deadline = time.monotonic() + timeout
    while needle not in child.buffer:
        if time.monotonic() > deadline or child.proc.poll() is not None:
            raise AssertionError(f"never saw {needle!r}: {bytes(child.buffer[-600:])!r}")
        child.read(0.2)


def quit_the_app(
    how: str, when: str, env: dict[str, str], command: list[str] | None = None
) -> dict[str, Any]:
    """Start the real app (the bundled model, 80x24, a pseudo-terminal), send a message,
    and quit it by ``how`` (ctrl+q, sigint or sigterm) ``when`` idle (after the reply) or
    mid-reply (3 s into a 400-token one). Returns the seconds from the key or signal to
    the process's end (read every 10 ms), its exit code, and whether the terminal's own
    screen was restored after it. ``env`` holds its config and data folders; ``command``
    starts another app that takes chatapp's arguments (the tests' fake engine)."""
    import signal
    import subprocess
    import sys
    import time

    args = command or [sys.executable, "-m", "chatapp"]
    args = [*args, "--model", "bundled", "--quant", "none"]
    tokens = "8" if when == "idle" else "400"
    args += ["--raw", "--max-new-tokens", tokens, "--seed", "5"]
    child = PtyChild(args, env, rows=24, cols=80)
    try:
        wait_for_output(child, b"Ready", 120)
        child.write(b"Once upon a time")
        child.read(0.3)
        child.write(b"\r")
        wait_for_output(child, b"Generating", 30)
        if when == "idle":
            wait_for_output(child, b"Done", 120)
        else:
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                child.read(0.1)  # a few seconds of streaming
        drawn = len(child.buffer)
        began = time.monotonic()
        if how == "ctrl+q":
            child.write(b"\x11")
        else:
            child.proc.send_signal(signal.SIGINT if how == "sigint" else signal.SIGTERM)
        while child.proc.poll() is None and time.monotonic() - began < 30:
            child.read(0.01)
        took = time.monotonic() - began
        try:
            code = child.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        while child.read(0.1):
            pass
    finally:
        if child.proc.poll() is None:
            child.proc.kill()
    return {
        "seconds": took,
        "code": code,
        "restored": LEAVE_ALT_SCREEN in child.buffer[drawn:],
        "tail": bytes(child.buffer[-800:]),
    }
