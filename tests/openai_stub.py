"""A small OpenAI-compatible HTTP server on loopback that records each request body and
streams a fixed reply (with log-probabilities when asked), for the tests of what the
remote engine sends to servers that cannot run here (vLLM, TGI, llama.cpp, Ollama).
It can also answer 401, or never answer (a timeout)."""

from __future__ import annotations

import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class StubServer:
    """``with StubServer(...) as stub:`` serves on 127.0.0.1:``stub.port``."""

    def __init__(
        self,
        pieces: list[str] | None = None,
        *,
        models: list[dict[str, Any]] | None = None,
        status: int = 200,
        hang: bool = False,
        extra_paths: dict[str, Any] | None = None,
        delay: float = 0.0,
    ) -> None:
        self.pieces = pieces if pieces is not None else ["Hello", " there", "."]
        self.models = models or [{"id": "stub-model", "object": "model", "owned_by": "stub"}]
        self.status = status
        self.post_status = 200  # answer replies with this (500: a failing server)
        self.hang = hang
        self.delay = delay
        self.extra_paths = extra_paths or {}
        self.requests: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> StubServer:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [body for p, body, _ in self.requests if p == path]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _json(self, code: int, data: Any) -> None:
                body = json.dumps(data).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                stub.requests.append((self.path, {}, dict(self.headers)))
                if stub.hang:
                    time.sleep(30)
                    return
                if stub.status != 200:
                    self._json(stub.status, {"error": {"message": "Unauthorized"}})
                elif self.path == "/v1/models":
                    self._json(200, {"object": "list", "data": stub.models})
                elif self.path in stub.extra_paths:
                    self._json(200, stub.extra_paths[self.path])
                else:
                    self._json(404, {"detail": "Not Found"})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                stub.requests.append((self.path, body, dict(self.headers)))
                if stub.hang:
                    time.sleep(30)
                    return
                if stub.status != 200:
                    self._json(stub.status, {"error": {"message": "Unauthorized"}})
                    return
                if stub.post_status != 200:
                    self._json(stub.post_status, {"error": {"message": "CUDA out of memory"}})
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                chat = self.path.endswith("/chat/completions")
                for i, piece in enumerate(stub.pieces):
                    time.sleep(stub.delay)
                    choice: dict[str, Any] = {"index": 0, "finish_reason": None}
                    if chat:  # a dict: the delta itself (reasoning_content, say)
                        choice["delta"] = piece if isinstance(piece, dict) else {"content": piece}
                    else:
                        choice["text"] = piece
                    if body.get("logprobs"):
                        top = [
                            {"token": piece, "logprob": math.log(0.6), "bytes": None},
                            {"token": f"alt{i}", "logprob": math.log(0.3), "bytes": None},
                        ]
                        choice["logprobs"] = {
                            "content": [
                                {
                                    "token": piece,
                                    "logprob": math.log(0.6),
                                    "bytes": None,
                                    "top_logprobs": top,
                                }
                            ]
                        }
                    self._event(
                        {
                            "id": "x",
                            "object": "chunk",
                            "created": 0,
                            "model": body.get("model"),
                            "choices": [choice],
                        }
                    )
                last: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
                if chat:
                    last["delta"] = {}
                else:
                    last["text"] = ""
                self._event(
                    {
                        "id": "x",
                        "object": "chunk",
                        "created": 0,
                        "model": body.get("model"),
                        "choices": [last],
                    }
                )
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

            def _event(self, data: dict[str, Any]) -> None:
                self.wfile.write(f"data: {json.dumps(data)}\n\n".encode())
                self.wfile.flush()

        return Handler
