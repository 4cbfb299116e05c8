"""Docker HEALTHCHECK of the sglang-fl images: does SGLang's ``/health`` answer 200?

The address comes from the server's own command line (PID 1: the entry point execs into it), so
``docker run IMAGE --port 8000`` is checked on port 8000. Exit status 0 means healthy and 1 means
not, as Docker expects; the line printed ends up in ``docker inspect``. Standard library only,
so the same file works in every image.
"""

from __future__ import annotations

import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = "30000"
TIMEOUT_S = 5.0
# Addresses that mean "every interface": the check connects over loopback instead.
WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def last_option(argv: Sequence[str], name: str, default: str) -> str:
    """The value of the last ``name VALUE`` / ``name=VALUE`` in ``argv`` (argparse: last wins)."""
    value = default
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(name + "="):
            value = arg.partition("=")[2]
    return value


def health_url(argv: Sequence[str]) -> str:
    host = last_option(argv, "--host", DEFAULT_HOST)
    host = WILDCARDS.get(host, host)
    port = last_option(argv, "--port", DEFAULT_PORT)
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/health"


def server_argv(cmdline: Path = Path("/proc/1/cmdline")) -> list[str]:
    return [arg.decode(errors="replace") for arg in cmdline.read_bytes().split(b"\0") if arg]


def check(url: str) -> tuple[bool, str]:
    # No proxy: an HTTP(S)_PROXY set for the container must not route loopback traffic.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=TIMEOUT_S) as response:
            return response.status == 200, f"{url}: HTTP {response.status}"
    except OSError as exc:  # connection refused, timeout, HTTP errors (URLError is an OSError)
        return False, f"{url}: {exc}"


def main(argv: Sequence[str] | None = None) -> int:
    healthy, detail = check(health_url(server_argv() if argv is None else argv))
    print(("healthy: " if healthy else "unhealthy: ") + detail)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
