"""The options that more than one command takes: which engine, and the sampling values
(the app and ``--prompt`` on the ``chatapp`` command itself, and ``chatapp sweep``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from chatapp.engine.quantization import AUTO_RULE, QUANT_CHOICES, QUANT_MODES
from chatapp.params import PARAMS


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """Which model, where, and how it is loaded (the app, ``--prompt`` and ``sweep``)."""
    parser.add_argument(
        "--model",
        metavar="ID_OR_PATH",
        help="hub id, local folder, or 'bundled' (default: google/gemma-2b-it on a CUDA GPU, "
        "else the bundled offline Gemma 3 270M)",
    )
    remote = parser.add_argument_group("a model on another machine (an OpenAI-compatible server)")
    remote.add_argument(
        "--server",
        metavar="URL",
        help="chat with a model served by vLLM, TGI, transformers serve, llama.cpp or Ollama, "
        "e.g. http://127.0.0.1:8000/v1 (--model then names the server's model; default: its "
        "first)",
    )
    remote.add_argument(
        "--server-kind",
        choices=("vllm", "tgi", "transformers", "llamacpp", "llama_cpp_python", "ollama", "openai"),
        help="the server's kind, when detection guesses wrong (it decides which sampling "
        "values are sent, and under which names)",
    )
    remote.add_argument(
        "--api-key-env",
        metavar="NAME",
        help="the environment variable holding the API key (default: OPENAI_API_KEY when "
        "set); the key itself is never saved or shown",
    )
    parser.add_argument(
        "--quant",
        default="auto",
        choices=QUANT_CHOICES,
        help="how the weights are stored and multiplied: "
        + "; ".join(f"{k}: {v}" for k, v in QUANT_MODES.items())
        + f". {AUTO_RULE}",
    )
    parser.add_argument(
        "--dtype", default="auto", choices=("auto", "bfloat16", "float16", "float32")
    )
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the fast path for a GPU: a static KV cache and torch.compile of the decode "
        "step (it compiles at the first start, shown in the loading view). Default auto: "
        "on for CUDA with none or ao-int8 weights, where it is several times faster; off "
        "on the CPU, for bitsandbytes, and for models with sliding-window layers (Gemma 2 "
        "and 3, the bundled one: they recompile the step)",
    )
    parser.add_argument(
        "--context",
        type=_positive_int,
        metavar="N",
        help="cap the context window at N tokens (default: the model's own)",
    )
    parser.add_argument(
        "--chat-format",
        choices=("turns", "dialogue", "raw"),
        help="how messages become the prompt: the model's chat turns, a plain User:/Assistant: "
        "dialogue (default for base models such as the bundled one), or raw text",
    )
    parser.add_argument(
        "--raw",
        action="store_const",
        const="raw",
        dest="chat_format",
        help="same as --chat-format raw: the text goes to the tokenizer as it is",
    )


def add_sampling_options(parser: argparse.ArgumentParser, skip: Sequence[str] = ()) -> None:
    """A flag per sampling parameter (``skip``: names a command uses otherwise)."""
    group = parser.add_argument_group("sampling parameters (applied to each reply)")
    for spec in PARAMS:
        if spec.name in skip:
            continue
        group.add_argument(
            spec.flag,
            dest=f"param_{spec.name}",
            metavar="VALUE",
            default=None,
            help=f"{spec.help_en} [{spec.range_text()}; default {spec.format(spec.default) or 'none'}]",
        )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 16:
        raise argparse.ArgumentTypeError(f"must be a whole number of tokens >= 16, got {text!r}")
    return value
