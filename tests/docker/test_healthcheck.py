"""docker/healthcheck.py, the images' HEALTHCHECK, against real HTTP servers on loopback."""

from __future__ import annotations

import importlib.util
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "docker" / "healthcheck.py"
_spec = importlib.util.spec_from_file_location("sglang_fl_healthcheck", SCRIPT)
healthcheck = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(healthcheck)


def _server(status: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(status if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


@pytest.fixture
def serving(request) -> Iterator[int]:
    """A loopback server answering /health with the parametrized status; yields its port."""
    server = _server(request.param)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("argv", "url"),
    [
        ([], "http://127.0.0.1:30000/health"),
        (["sglang-fl", "serve", "--host", "0.0.0.0", "--port", "30000"],
         "http://127.0.0.1:30000/health"),
        # the entry point's defaults come first; what the user adds after the image name wins
        (["python3", "-m", "sglang.launch_server", "--host", "0.0.0.0", "--port", "30000",
          "--model-path", "/models/m", "--port", "8000"], "http://127.0.0.1:8000/health"),
        (["x", "--port=8001", "--host=10.1.2.3"], "http://10.1.2.3:8001/health"),
        (["x", "--host", "::"], "http://[::1]:30000/health"),
        (["x", "--host", "fd00::5", "--port", "9"], "http://[fd00::5]:9/health"),
        (["x", "--port"], "http://127.0.0.1:30000/health"),  # a dangling flag is not a value
    ],
)  # fmt: skip
def test_health_url_follows_the_server_command_line(argv, url):
    assert healthcheck.health_url(argv) == url


def test_server_argv_reads_a_nul_separated_cmdline(tmp_path):
    cmdline = tmp_path / "cmdline"
    cmdline.write_bytes(b"python3\x00-m\x00sglang.launch_server\x00--port\x0031000\x00")
    assert healthcheck.server_argv(cmdline) == [
        "python3", "-m", "sglang.launch_server", "--port", "31000",
    ]  # fmt: skip


@pytest.mark.parametrize("serving", [200], indirect=True)
def test_healthy_server_exits_0(serving, capsys, monkeypatch):
    # a proxy configured for the container must not carry the loopback check
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{_closed_port()}")
    assert healthcheck.main(["x", "--port", str(serving)]) == 0
    assert capsys.readouterr().out == (f"healthy: http://127.0.0.1:{serving}/health: HTTP 200\n")


@pytest.mark.parametrize("serving", [503], indirect=True)
def test_unhealthy_server_exits_1(serving, capsys):
    assert healthcheck.main(["x", "--port", str(serving)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"unhealthy: http://127.0.0.1:{serving}/health: HTTP Error 503")


def test_no_server_exits_1(capsys):
    port = _closed_port()
    assert healthcheck.main(["x", "--port", str(port)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"unhealthy: http://127.0.0.1:{port}/health: <urlopen error")
    assert "refused" in out
