"""The one-shot command line: streaming, exit codes and messages."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from chatapp.chats_cli import COMMANDS
from chatapp.cli import main
from chatapp.params import PARAMS
from chatapp.sweep_cli import HELP as SWEEP_HELP
from tests.test_params import BAD_VALUES


def run_cli(*args, stdin=None, env=None):
    return subprocess.run(
        [sys.executable, "-m", "chatapp", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


@pytest.mark.parametrize("spec", PARAMS, ids=lambda s: s.name)
def test_bad_value_for_each_flag_exits_2_with_its_message(spec, capsys):
    raw = BAD_VALUES[spec.name][0]
    code = main(["--prompt", "hi", "--model", "bundled", spec.flag, raw])
    err = capsys.readouterr().err
    assert code == 2
    assert f"chatapp: error: {spec.name} must be" in err
    assert repr(raw) in err


def test_unknown_preset_exits_2(capsys):
    assert main(["--prompt", "hi", "--preset", "Nope"]) == 2
    assert "no preset named 'Nope'" in capsys.readouterr().err


def test_empty_prompt_exits_2(capsys):
    assert main(["--prompt", "   "]) == 2
    assert "the prompt is empty" in capsys.readouterr().err


def test_help_lists_each_command_with_its_one_line_description(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    section = out[out.index("\ncommands (") :]
    listed = [line.split()[0] for line in section.splitlines() if re.match(r" {4}\S", line)]
    assert listed == [*COMMANDS, "sweep"]
    flat = " ".join(section.split())
    for name, description in {**COMMANDS, "sweep": SWEEP_HELP}.items():
        assert f"{name} {description}" in flat


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_explains_its_own_options(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: chatapp {command} ")
    assert " ".join(COMMANDS[command].split()) in " ".join(out.split())


def test_an_unknown_command_exits_2_naming_the_known_ones(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["chat"])
    assert exit_.value.code == 2
    assert "'chats', 'export', 'import'" in capsys.readouterr().err


def test_help_imports_no_torch_transformers_or_textual():
    code = (
        "import sys\nfrom chatapp.cli import main\ntry:\n    main(['--help'])\n"
        "except SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'transformers', 'textual') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stderr


def test_chats_with_words_lists_only_the_chats_that_hold_them(capsys):
    from chatapp.conversation import ChatSession
    from chatapp.store import ChatStore

    ids = {}
    for text in ("What does temperature do?", "Explain nucleus sampling to me"):
        session = ChatSession(ChatStore())
        session.add_user(text)
        ids[text] = session.chat.id
    assert main(["chats"]) == 0
    listed = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert sorted(int(row[0]) for row in listed) == sorted(ids.values())
    assert main(["chats", "nucleus", "sampling"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [int(row[0]) for row in rows] == [ids["Explain nucleus sampling to me"]]
    assert rows[0][3] == "Explain nucleus sampling to me" and "nucleus" in rows[0][4]
    assert main(["chats", "nothing-like-it"]) == 0
    assert capsys.readouterr().out == ""


def test_help_params_prints_the_tutorial_table_in_chinese(capsys):
    assert main(["--help-params", "zh"]) == 0
    out = capsys.readouterr().out
    assert "使用 Greedy Decode 時（False），建議不要設定其他取樣參數" in out


@pytest.mark.model
def test_one_shot_loads_with_the_collector_paused_then_freezes_the_loaded_heap(bundled_folder):
    """No garbage collection while torch, transformers and the model load, then the loaded
    heap frozen out of later collections, which resume before the reply (chatapp/heap.py
    says why)."""
    import json

    result = run_cli(
        "--model", "bundled", "--prompt", "Hello", "--max-new-tokens", "4", "--do-sample", "off",
        env={"CHATAPP_TIMINGS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stderr.splitlines() if x.startswith("TIMINGS-GC "))
    collector = json.loads(line.removeprefix("TIMINGS-GC "))
    assert collector["collections_while_paused"] == 0
    assert collector["enabled"] is True
    assert collector["frozen"] > 100_000
    assert result.stdout.strip()


def test_unknown_model_path_exits_1_with_one_line(tmp_path):
    result = run_cli("--prompt", "hi", "--model", str(tmp_path / "missing-model"))
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("chatapp: error: No model at ")
    assert result.stdout == ""


def test_offline_uncached_model_suggests_bundled(tmp_path):
    result = run_cli(
        "--prompt",
        "hi",
        "--model",
        "google/gemma-2b-it",
        env={"HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 1
    assert "not in the local cache" in result.stderr and "--model bundled" in result.stderr


@pytest.mark.model
def test_prompt_streams_a_reply_offline(bundled_folder):
    result = run_cli(
        "--model",
        "bundled",
        "--prompt",
        "使用繁體中文回答，請問什麼是大型語言模型？",
        "--max-new-tokens",
        "8",
        "--seed",
        "1",
        "--stats",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert "\ufffd" not in result.stdout
    assert "tok/s" in result.stderr and "first token" in result.stderr


@pytest.mark.model
def test_prompt_from_stdin_and_greedy_advice(bundled_folder):
    result = run_cli(
        "--model",
        "bundled",
        "--prompt",
        "-",
        "--do-sample",
        "off",
        "--max-new-tokens",
        "4",
        stdin="Say hello.",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert "do_sample is off" in result.stderr
    assert "tutorial advises setting no other sampling" in result.stderr


@pytest.mark.model
def test_ctrl_c_mid_reply_exits_130(bundled_folder):
    import select
    import signal
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "chatapp", "--model", "bundled", "--raw"]
        + ["--prompt", "Once upon a time", "--max-new-tokens", "2000", "--seed", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell that starts a job in the background (as a CI runner may) ignores SIGINT
        # for it, and Python then keeps it ignored: give the child a terminal's default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        # The reply has started streaming once a visible character is out: its first
        # token may be a space alone.
        first = b""
        deadline = time.monotonic() + 120
        while not first.strip() and proc.poll() is None and time.monotonic() < deadline:
            if select.select([proc.stdout], [], [], 0.5)[0]:
                first += os.read(proc.stdout.fileno(), 4096)
        first = first.decode("utf-8", errors="replace")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert first  # the reply had started (its first piece may be a space)
    assert proc.returncode == 130, err
    assert "chatapp: stopped" in err


@pytest.mark.model
@pytest.mark.parametrize(
    "flags,asked,loaded,session_engine",
    [
        (["--dtype", "float32", "--quant", "none"], ("none", "float32"), "(none, float32, cpu)",
         "engine32"),
        (["--quant", "8bit"], ("8bit", "auto"), "(8bit, ", "engine_8bit"),
    ],
    ids=["float32", "8bit"],
)  # fmt: skip
def test_dtype_and_quant_flags_load_the_model_that_way(
    request, capsys, monkeypatch, flags, asked, loaded, session_engine
):
    """In this process: the session's engine, loaded with the arguments the flags must
    give, stands in for a load of its own."""
    from chatapp.engine import LocalEngine

    engine = request.getfixturevalue(session_engine)
    loads = []

    def load(name, quant="auto", dtype="auto", **options):
        loads.append((name, quant, dtype))
        return engine

    monkeypatch.setattr(LocalEngine, "load", load)
    code = main(
        ["--model", "bundled", "--prompt", "Hi", "--max-new-tokens", "2", "--stats", *flags]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert loads == [("bundled", *asked)]
    assert f"model bundled {loaded}" in err
