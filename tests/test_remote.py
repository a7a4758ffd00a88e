"""The remote engine: against a real ``transformers serve`` on loopback with the bundled
model, and against a recording stub for the dialects of servers that cannot run here."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from chatapp.cli import main as cli_main
from chatapp.engine.remote import RemoteEngine
from chatapp.engine.servers import KINDS, http_warning, request_fields, safe_url
from chatapp.engine.types import EngineError, Message, ReplyInterrupted
from chatapp.params import SamplingParams
from tests.openai_stub import StubServer
from tests.serve_helper import free_port, start_transformers_serve, stop_server
from tests.test_lens_tui import lens_text

ROOT = Path(__file__).resolve().parent.parent
HELLO = [Message("user", "Tell me about the sea.")]


class Server:
    """The session's ``transformers serve``: its process and its URL."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.proc, self.url = start_transformers_serve(folder)


@pytest.fixture(scope="session")
def server(bundled_folder):
    """One real server for the whole run (it takes seconds to start)."""
    running = Server(bundled_folder)
    try:
        yield running
    finally:
        stop_server(running.proc)


@pytest.fixture
def served(server):
    """The session server's URL, started again should a test before have killed it (the
    test that kills it runs last, so a whole run starts it once)."""
    if server.proc.poll() is not None:
        server.proc, server.url = start_transformers_serve(server.folder)
    return server.url


# -- against transformers serve --------------------------------------------------------
@pytest.mark.model
def test_a_reply_streams_from_transformers_serve(served):
    remote = RemoteEngine(served)
    assert remote.kind.name == "transformers" and remote.capabilities.lens == "none"
    pieces: list[str] = []
    stats = remote.stream_reply(HELLO, SamplingParams(max_new_tokens=12, seed=1), pieces.append)
    assert len(pieces) >= 2 and "".join(pieces) == stats.text and stats.text.strip()
    assert stats.new_tokens == 12 and stats.finish_reason == "length"
    assert 0 < stats.time_to_first_token < stats.elapsed
    assert stats.seed == 1 and stats.prompt_tokens > 0


@pytest.mark.model
def test_greedy_replies_equal_the_local_engines_on_the_same_weights(served, engine32):
    greedy = SamplingParams(do_sample=False, max_new_tokens=24)
    remote = RemoteEngine(served)
    local = {}
    for fmt in ("dialogue", "raw"):
        engine32.chat_format = remote.chat_format = fmt
        try:
            local[fmt] = engine32.stream_reply(HELLO, greedy).text
        finally:
            engine32.chat_format = "dialogue"
        assert remote.stream_reply(HELLO, greedy).text == local[fmt], fmt
    # Chat turns: the server applies the model folder's template (the same dialogue), but
    # knows no stop strings, so its reply goes on past where the local one stopped.
    remote.chat_format = "turns"
    assert remote.stream_reply(HELLO, greedy).text.startswith(local["dialogue"])


@pytest.mark.model
def test_the_same_seed_gives_the_same_reply(served):
    remote = RemoteEngine(served)
    params = SamplingParams(temperature=1.2, max_new_tokens=16, seed=42)
    first = remote.stream_reply(HELLO, params).text
    assert remote.stream_reply(HELLO, params).text == first
    others = {remote.stream_reply(HELLO, params.replace(seed=s)).text for s in (1, 2, 3)}
    assert others != {first}


@pytest.mark.model
def test_stop_ends_the_reply_at_once_and_the_server_serves_the_next(served):
    remote = RemoteEngine(served)
    pieces: list[str] = []
    result = {}

    def run() -> None:
        result["stats"] = remote.stream_reply(
            HELLO, SamplingParams(max_new_tokens=64), pieces.append
        )

    thread = threading.Thread(target=run)
    thread.start()
    while len(pieces) < 3:
        time.sleep(0.01)
    stopped_at = time.perf_counter()
    remote.stop()
    thread.join(timeout=5)
    assert time.perf_counter() - stopped_at < 0.1
    assert result["stats"].finish_reason == "stopped" and result["stats"].text
    nxt = remote.stream_reply(HELLO, SamplingParams(do_sample=False, max_new_tokens=4))
    assert nxt.finish_reason == "length"


@pytest.mark.model
def test_a_parameter_the_server_refuses_is_named(served):
    # As if the server were vLLM: top_k and friends go at the top level, which
    # transformers serve refuses (422, unexpected fields).
    remote = RemoteEngine(served, kind="vllm")
    with pytest.raises(EngineError) as caught:
        remote.stream_reply(HELLO, SamplingParams(max_new_tokens=4))
    message = str(caught.value)
    assert "The server rejected the request (parameter: top_k" in message


@pytest.mark.model
def test_a_wrong_model_name_lists_the_servers_models(served):
    with pytest.raises(EngineError) as caught:
        RemoteEngine(served, model="no-such-model")
    assert "has no model 'no-such-model'; it has: " in str(caught.value)
    assert "gemma3-270m" in str(caught.value)
    remote = RemoteEngine(served)
    remote.model = "renamed-meanwhile"  # the server's answer to a request names it too
    with pytest.raises(EngineError) as caught:
        remote.stream_reply(HELLO, SamplingParams(max_new_tokens=4))
    assert "has no model 'renamed-meanwhile'" in str(caught.value)


# -- errors, one line each ---------------------------------------------------------------
def test_connection_refused_is_one_clear_line(capsys):
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(EngineError) as caught:
        RemoteEngine(url)
    assert (
        str(caught.value)
        == f"Cannot reach {url}: connection refused (is the server running, on that port?)."
    )
    assert cli_main(["--server", url, "--prompt", "hi"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        err[-1]
        == f"chatapp: error: Cannot reach {url}: connection refused (is the server running, on that port?)."
    )


def test_a_refused_key_names_its_environment_variable(monkeypatch):
    monkeypatch.setenv("GPU_BOX_KEY", "sk-secret-value-123")
    with StubServer(status=401) as stub, pytest.raises(EngineError) as caught:
        RemoteEngine(stub.url, api_key_env="GPU_BOX_KEY")
    assert "refused the API key from $GPU_BOX_KEY (401)" in str(caught.value)
    assert "sk-secret" not in str(caught.value)
    headers = {k.lower(): v for k, v in stub.requests[0][2].items()}
    assert headers["authorization"] == "Bearer sk-secret-value-123"


def test_a_server_that_never_answers_times_out():
    with StubServer(hang=True) as stub, pytest.raises(EngineError) as caught:
        RemoteEngine(stub.url, timeout=0.5)
    assert "did not answer in time" in str(caught.value)


def test_name_and_tls_failures_read_clearly():
    import openai

    remote = object.__new__(RemoteEngine)
    remote.base_url, remote.api_key_env, remote.model, remote.models = (
        "https://gpu-box:8000/v1",
        None,
        "m",
        [],
    )
    for cause, expected in (
        (OSError("[Errno -2] Name or service not known"), "the host name 'gpu-box' is not known"),
        (
            OSError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"),
            "TLS handshake failed",
        ),
    ):
        # As the SDK raises it, from the socket's error (made without a request: openai 3
        # copies the request's headers in __init__, and its HTTP library changed name).
        exc = openai.APIConnectionError.__new__(openai.APIConnectionError)
        exc.__cause__ = cause
        assert expected in remote.explain(exc)


def test_plain_http_to_another_machine_is_warned_and_credentials_never_shown():
    assert http_warning("http://127.0.0.1:8000/v1") is None
    assert http_warning("https://gpu-box/v1") is None
    warning = http_warning("http://gpu-box:8000/v1")
    assert "unencrypted" in warning and "ssh -N -L 8000:localhost:8000 gpu-box" in warning
    assert safe_url("http://user:pw@gpu-box:8000/v1") == "http://gpu-box:8000/v1"


# -- each server's dialect, as sent ------------------------------------------------------
PARAMS = SamplingParams(
    temperature=0.6,
    top_k=30,
    top_p=0.9,
    min_p=0.05,
    typical_p=0.95,
    repetition_penalty=1.2,
    no_repeat_ngram_size=3,
    max_new_tokens=40,
    seed=5,
)
EXPECTED = {
    "vllm": {
        "temperature": 0.6,
        "top_p": 0.9,
        "max_tokens": 40,
        "seed": 5,
        "top_k": 30,
        "min_p": 0.05,
        "repetition_penalty": 1.2,
    },
    "llamacpp": {
        "temperature": 0.6,
        "top_p": 0.9,
        "max_tokens": 40,
        "seed": 5,
        "top_k": 30,
        "min_p": 0.05,
        "typical_p": 0.95,
        "repeat_penalty": 1.2,
    },
    "tgi": {"temperature": 0.6, "top_p": 0.9, "max_tokens": 40, "seed": 5},
    "ollama": {"temperature": 0.6, "top_p": 0.9, "max_tokens": 40, "seed": 5},
    "openai": {"temperature": 0.6, "top_p": 0.9, "max_tokens": 40, "seed": 5},
}
UNSUPPORTED = {
    "vllm": ["typical_p", "no_repeat_ngram_size"],
    "llamacpp": ["no_repeat_ngram_size"],
    "tgi": ["top_k", "repetition_penalty", "min_p", "typical_p", "no_repeat_ngram_size"],
    "ollama": ["top_k", "repetition_penalty", "min_p", "typical_p", "no_repeat_ngram_size"],
    "openai": ["top_k", "repetition_penalty", "min_p", "typical_p", "no_repeat_ngram_size"],
}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_each_kind_is_sent_its_own_names_for_every_honoured_value(kind):
    with StubServer() as stub:
        remote = RemoteEngine(stub.url, kind=kind)
        stats = remote.stream_reply(HELLO, PARAMS)
        body = stub.bodies("/v1/chat/completions")[0]
    assert stats.text == "Hello there." and stats.finish_reason == "eos"
    sent = {
        k: v for k, v in body.items() if k not in ("model", "messages", "stream", "stream_options")
    }
    assert sent == EXPECTED[kind]
    assert body["messages"] == [{"role": "user", "content": "Tell me about the sea."}]
    assert (
        remote.capabilities.unsupported(
            [s.name for s in __import__("chatapp.params").params.PARAMS]
        )
        == UNSUPPORTED[kind]
    )


def test_transformers_serve_gets_the_whole_set_as_a_generation_config():
    fields, extra = request_fields(KINDS["transformers"], PARAMS, 5)
    assert fields == {"seed": 5}
    config = json.loads(extra["generation_config"])
    assert config == {
        "do_sample": True,
        "temperature": 0.6,
        "top_k": 30,
        "top_p": 0.9,
        "min_p": 0.05,
        "typical_p": 0.95,
        "repetition_penalty": 1.2,
        "no_repeat_ngram_size": 3,
        "max_new_tokens": 40,
    }


def test_greedy_is_sent_as_temperature_zero_and_a_seed_is_always_chosen_for_sampling():
    fields, _ = request_fields(KINDS["vllm"], PARAMS.replace(do_sample=False), None)
    assert fields["temperature"] == 0.0 and "seed" not in fields
    with StubServer() as stub:
        stats = RemoteEngine(stub.url, kind="vllm").stream_reply(HELLO, PARAMS.replace(seed=None))
        assert stub.bodies("/v1/chat/completions")[0]["seed"] == stats.seed is not None


def test_dialogue_and_raw_go_to_completions_with_the_prompt_rendered_here():
    with StubServer(["a", "b\nUser:", " more"]) as stub:
        remote = RemoteEngine(stub.url, kind="vllm", chat_format="dialogue")
        stats = remote.stream_reply(HELLO, PARAMS)
        body = stub.bodies("/v1/completions")[0]
    assert body["prompt"].endswith("User: Tell me about the sea.\nAssistant:")
    assert body["stop"] == ["\nUser:", "\nuser:", "\nAssistant:", "\n\n"]
    assert stats.text == "ab" and stats.finish_reason == "eos"  # the stop string is not shown


def test_the_kind_is_detected_from_what_each_server_exposes():
    cases = {
        "vllm": {"models": [{"id": "m", "owned_by": "vllm", "max_model_len": 4096}]},
        "llamacpp": {"extra": {"/props": {"default_generation_settings": {"n_ctx": 2048}}}},
        "ollama": {"extra": {"/api/version": {"version": "0.12.0"}}},
        "tgi": {"extra": {"/info": {"model_id": "m", "max_total_tokens": 4096}}},
        "transformers": {"extra": {"/openapi.json": {"paths": {"/load_model": {}}}}},
        "openai": {},
        # llama-cpp-python's server: its schema's /extras/tokenize, and models "owned_by":
        # "me" (either is enough), mirroring its /openapi.json and /v1/models.
        "llama_cpp_python": {
            "extra": {
                "/openapi.json": {"paths": {"/v1/chat/completions": {}, "/extras/tokenize": {}}}
            }
        },
    }
    for kind, setup in cases.items():
        with StubServer(models=setup.get("models"), extra_paths=setup.get("extra")) as stub:
            remote = RemoteEngine(stub.url)
        assert remote.kind.name == kind
    with StubServer(models=cases["vllm"]["models"]) as stub:
        assert RemoteEngine(stub.url).context_window == 4096


def test_the_lens_shows_the_servers_final_distribution_from_logprobs():
    from chatapp.engine.lens import LensRecorder

    with StubServer() as stub:
        remote = RemoteEngine(stub.url, kind="vllm")
        recorder = LensRecorder()
        stats = remote.stream_reply(HELLO, PARAMS, lens=recorder)
        body = stub.bodies("/v1/chat/completions")[0]
    assert body["logprobs"] is True and body["top_logprobs"] == 10
    assert recorder.complete and len(recorder.steps) == 3
    step = recorder.steps[1]
    assert step.stages == ["server"] and step.piece == " there"
    assert abs(step.sampled_prob - 0.6) < 1e-9
    assert [c.label for c in step.candidates] == ["␣there", "alt1"]
    assert "vLLM's final distribution" in step.source
    assert "".join(s.piece for s in recorder.steps) == stats.text


def test_a_server_run_never_imports_torch():
    with StubServer() as stub:
        code = (
            "import sys; from chatapp.cli import main; "
            f"rc = main(['--server', '{stub.url}', '--prompt', 'hi']); "
            "print('TORCH', 'torch' in sys.modules, 'transformers' in sys.modules, rc)"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
        )
    assert out.stdout.strip().endswith("TORCH False False 0"), out.stdout + out.stderr
    assert out.stdout.startswith("Hello there.")
    assert "not supported by openai, so not sent: top_k, repetition_penalty" in out.stderr


def stats_text_ok(session) -> bool:
    return session.chat.turns[0].reply.text == "Hello there."


def test_the_key_never_reaches_the_history_or_an_export(monkeypatch):
    from chatapp.conversation import ChatSession
    from chatapp.store import ChatStore

    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret")
    with StubServer() as stub:
        remote = RemoteEngine(stub.url.replace("127.0.0.1", "u:pw@127.0.0.1"), kind="vllm")
        session = ChatSession(ChatStore())
        turn = session.add_user("hi")
        version = session.start_reply(turn, PARAMS, remote.model_name, remote.engine_label())
        session.finish_reply(version, remote.stream_reply(HELLO, PARAMS))
        assert stats_text_ok(session)
    exported = json.dumps(session.chat.to_json())
    database = ChatStore().path.read_bytes()
    for secret in ("sk-very-secret", "pw@"):
        assert secret not in exported and secret.encode() not in database
        assert secret not in remote.describe()


# -- the app over a server -----------------------------------------------------------------
async def test_the_panel_marks_what_the_server_does_not_honour_and_the_lens_shows_its_table():
    from chatapp.tui.app import ChatApp
    from chatapp.tui.chat_log import AssistantMessage
    from chatapp.tui.lens import LensView
    from tests.tui_helpers import ready, send

    with StubServer(delay=0.02) as stub:
        remote = RemoteEngine(stub.url, kind="ollama")
        app = ChatApp(lambda progress: remote)
        async with app.run_test(size=(120, 40)) as pilot:
            await ready(pilot)
            await pilot.pause(0.1)
            for name in ("top_k", "repetition_penalty"):
                assert app.query_one(f"#row-{name}").has_class("-unsupported")
                note = app.query_one(f"#note-{name}")
                assert note.display and "not supported by ollama" in str(note.render())
            assert not app.query_one("#row-temperature").has_class("-unsupported")
            assert not app.query_one("#note-temperature").display
            await pilot.press("f3")
            await send(pilot, "hi")
            reply = app.query_one(AssistantMessage)
            assert reply.text == "Hello there."
            assert reply.version.engine.startswith("remote ollama http://127.0.0.1")
            step = app.query_one(LensView).step
            assert step is reply.lens_steps[-1] and step.stages == ["server"]
            await pilot.pause(0.1)
            drawn = lens_text(app.query_one(LensView))
            assert "Ollama's final distribution" in drawn and "server" in drawn


async def test_the_lens_says_why_when_the_server_gives_no_logprobs():
    from chatapp.tui.app import ChatApp
    from chatapp.tui.lens import LensView
    from tests.tui_helpers import ready

    with StubServer() as stub:
        remote = RemoteEngine(stub.url, kind="transformers")
        app = ChatApp(lambda progress: remote)
        async with app.run_test(size=(120, 40)) as pilot:
            await ready(pilot)
            await pilot.press("f3")
            await pilot.pause(0.1)
            assert "returns no log-probabilities" in lens_text(app.query_one(LensView))


@pytest.mark.model
async def test_chatting_through_transformers_serve_in_the_app(served):
    from chatapp.store import ChatStore
    from chatapp.tui.app import ChatApp
    from chatapp.tui.chat_log import AssistantMessage
    from tests.tui_helpers import ready, send, wait_for

    remote = RemoteEngine(served, chat_format="dialogue")
    app = ChatApp(lambda progress: remote, SamplingParams(max_new_tokens=12, seed=3))
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await send(pilot, "Name a colour.")
        reply = app.query_one(AssistantMessage)
        assert reply.text.strip() and reply.version.status == "done"
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: app.replies_done == 2, timeout=120)
        assert len(reply.versions) == 2
    chats = ChatStore().list_chats()
    assert [c.title for c in chats] == ["Name a colour."]


async def test_a_failing_server_is_said_at_the_reply_and_ctrl_r_retries():
    from chatapp.tui.app import ChatApp
    from chatapp.tui.chat_log import AssistantMessage
    from tests.tui_helpers import ready, send, wait_for

    with StubServer() as stub:
        remote = RemoteEngine(stub.url, kind="vllm")
        app = ChatApp(lambda progress: remote)
        async with app.run_test(size=(120, 40)) as pilot:
            await ready(pilot)
            stub.post_status = 500
            await send(pilot, "hi")
            reply = app.query_one(AssistantMessage)
            failed = reply.version
            assert failed.status == "error" and "failed (500): CUDA out of memory" in failed.error
            assert "error: The server at http://127.0.0.1" in str(reply.query_one(".meta").render())
            stub.post_status = 200
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: app.replies_done == 2)
            assert [v.status for v in reply.versions] == ["error", "done"]
            assert reply.text == "Hello there."


# -- last: it kills the session's server ---------------------------------------------------
@pytest.mark.model
def test_a_server_killed_mid_reply_keeps_the_partial_reply(server, served):
    """Runs last of the tests that use the session's server: it kills it."""
    try:
        remote = RemoteEngine(served)
        pieces: list[str] = []
        result: dict = {}

        def run() -> None:
            try:
                remote.stream_reply(HELLO, SamplingParams(max_new_tokens=400), pieces.append)
            except Exception as exc:  # noqa: BLE001
                result["error"] = exc

        thread = threading.Thread(target=run)
        thread.start()
        while len(pieces) < 3:
            time.sleep(0.01)
        os.killpg(server.proc.pid, signal.SIGKILL)
        thread.join(timeout=30)
    finally:
        stop_server(server.proc)
    error = result["error"]
    assert isinstance(error, ReplyInterrupted), error
    assert "The reply so far is kept" in str(error)
    assert error.stats.text and error.stats.text == "".join(pieces)


def test_compare_columns_go_to_the_server_at_once_each_with_its_values():
    """A compare on a server: one request per column, all in flight together (the first
    column's stream waits, inside its own callback, until every request has arrived: one
    after another, they never would), each with its own values and the shared seed."""
    with StubServer(["a", "b", "c"], delay=0.05) as stub:
        remote = RemoteEngine(stub.url, kind="vllm")
        columns = [SamplingParams(temperature=t, max_new_tokens=8) for t in (0.5, 1.0, 1.5)]
        arrived = threading.Event()

        def on_text(row, piece):
            if row == 0 and not arrived.is_set():
                deadline = time.monotonic() + 5
                while len(stub.bodies("/v1/chat/completions")) < 3:
                    assert time.monotonic() < deadline, "the other columns' requests waited"
                    time.sleep(0.01)
                arrived.set()

        rows = remote.stream_columns([Message("user", "hi")], columns, on_text, seeds=[9, 9, 9])
    assert [r.text for r in rows] == ["abc"] * 3
    bodies = stub.bodies("/v1/chat/completions")
    assert sorted(b["temperature"] for b in bodies) == [0.5, 1.0, 1.5]
    assert {b["seed"] for b in bodies} == {9}
    assert arrived.is_set() and not remote.busy


def test_the_token_estimate_does_not_undercount_chinese():
    """Without the server's tokenizer the planner estimates; it must not let a Chinese
    prompt through as shorter than the bundled tokenizer counts it (the old estimate, 3
    characters a token, counted the tutorial's Chinese at half)."""
    from chatapp.engine.closeness import CLOSENESS_TEXT
    from chatapp.engine.remote import estimate_tokens

    chinese = CLOSENESS_TEXT.splitlines()[1]
    assert estimate_tokens(chinese) >= len(chinese) * 0.9  # Gemma: 1.56 characters a token
    english = CLOSENESS_TEXT.splitlines()[0]
    assert len(english) / 4.5 <= estimate_tokens(english) <= len(english) / 2.5


def test_llama_cpp_pythons_server_gets_its_own_sampling_fields():
    """llama-cpp-python's server honours top_k, min_p, typical_p and repeat_penalty; taken
    for a generic OpenAI server it got none of them (a stub answering as it does)."""
    models = [{"id": "model.gguf", "object": "model", "owned_by": "me", "permissions": []}]
    with StubServer(models=models) as stub:
        remote = RemoteEngine(stub.url)
        assert remote.kind.name == "llama_cpp_python"
        values = PARAMS.replace(top_k=17, min_p=0.05, typical_p=0.9, repetition_penalty=1.2)
        remote.stream_reply(HELLO, values)
        body = stub.bodies("/v1/chat/completions")[0]
    assert (body["top_k"], body["min_p"], body["typical_p"], body["repeat_penalty"]) == (
        17,
        0.05,
        0.9,
        1.2,
    )
    assert "stream_options" not in body
