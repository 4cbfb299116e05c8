"""The HTTP server as an operator runs it: ``sglang-fl serve`` (embedded model), then the OpenAI
API from a client: completions, chat, streaming, concurrency, and a clean SIGTERM shutdown."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
import requests
from integration_helpers import clean_env, dispatch_lines

pytestmark = [pytest.mark.sglang, pytest.mark.slow]

MODEL = "sglang-fl-tiny-qwen2"
STARTUP_TIMEOUT = 600


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, tmp: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / "server.log"
        self.dispatch_log = tmp / "dispatch.log"
        cli = Path(sys.executable).with_name("sglang-fl")
        self.proc = subprocess.Popen(
            [str(cli), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=clean_env(SGLANG_FL_DISPATCH_LOG=str(self.dispatch_log)),
            stdout=self.log_path.open("w"), stderr=subprocess.STDOUT,
        )  # fmt: skip

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(1)
        pytest.fail(f"server not healthy after {STARTUP_TIMEOUT}s:\n{self.log()[-4000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def post(self, path: str, body: dict, **kwargs) -> requests.Response:
        return requests.post(f"{self.url}{path}", json=body, timeout=120, **kwargs)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("server"))
    try:
        srv.wait_ready()
        yield srv
    finally:
        if srv.proc.poll() is None:
            os.kill(srv.proc.pid, signal.SIGKILL)
            srv.proc.wait()


def test_models_endpoint_lists_embedded_model(server):
    data = requests.get(f"{server.url}/v1/models", timeout=10).json()
    assert [m["id"] for m in data["data"]] == [MODEL]


def test_completion_is_greedy_and_deterministic(server):
    body = {"model": MODEL, "prompt": "The quick brown fox", "max_tokens": 16, "temperature": 0}
    first, second = (server.post("/v1/completions", body).json() for _ in range(2))
    assert first["usage"]["completion_tokens"] == 16
    assert (
        first["choices"][0]["text"] and first["choices"][0]["text"] == second["choices"][0]["text"]
    )


def test_chat_and_streaming_chat_agree(server):
    body = {
        "model": MODEL, "max_tokens": 12, "temperature": 0,
        "messages": [{"role": "user", "content": "Tell me about the sea."}],
    }  # fmt: skip
    plain = server.post("/v1/chat/completions", body).json()
    content = plain["choices"][0]["message"]["content"]
    assert plain["choices"][0]["finish_reason"] == "length" and content
    streamed = []
    with server.post("/v1/chat/completions", {**body, "stream": True}, stream=True) as resp:
        assert resp.status_code == 200
        for raw in resp.iter_lines():
            line = raw.decode()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            delta = json.loads(line[6:])["choices"][0]["delta"]
            streamed.append(delta.get("content") or "")
    assert len([s for s in streamed if s]) > 1  # really streamed, chunk by chunk
    assert "".join(streamed) == content


def test_sixteen_concurrent_requests_all_succeed(server):
    def one(i: int) -> requests.Response:
        body = {"model": MODEL, "prompt": f"Request number {i}:", "max_tokens": 8, "temperature": 0}
        return server.post("/v1/completions", body)

    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(one, range(16)))
    assert [r.status_code for r in responses] == [200] * 16
    assert all(r.json()["usage"]["completion_tokens"] == 8 for r in responses)


def test_dispatch_log_lists_every_op_once(server):
    lines = dispatch_lines(server.dispatch_log)
    assert lines == {
        f"[OOT-DISPATCH] {cls} \u2192 reference(reference)"
        for cls in ("SiluAndMul", "RMSNorm", "RotaryEmbedding")
    }
    raw = server.dispatch_log.read_text().splitlines()
    assert len(raw) == len(lines)  # one line per op class and process (one scheduler here)


def test_sigterm_stops_server_and_children(server):
    # runs last in this module (pytest keeps file order)
    tree = [
        psutil.Process(server.proc.pid),
        *psutil.Process(server.proc.pid).children(recursive=True),
    ]
    assert len(tree) >= 3  # launcher, scheduler, detokenizer
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(timeout=60)
    _, alive = psutil.wait_procs(tree, timeout=60)
    assert alive == [], f"left running: {[p.pid for p in alive]}"
