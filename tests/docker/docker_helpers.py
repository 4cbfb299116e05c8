"""Drive the Docker CLI from tests: run an image, wait for its HEALTHCHECK, talk to it, stop it.

The client is ``$DOCKER`` (default ``docker``; ci/docker-lib.sh sets Debian's BuildKit client).
Ports are published on 127.0.0.1 only, on a port Docker picks, so runs never collide with other
servers on the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pytest

DOCKER = os.environ.get("DOCKER", "docker")
HEALTH_INTERVAL = "2s"  # the image's own interval is 10 s; the command checked is the image's


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [DOCKER, *args], capture_output=True, text=True, check=check, timeout=timeout
    )


def require_image(image: str) -> dict:
    """The image's ``docker image inspect`` record; skips as a missing dependency without it."""
    try:
        info = docker("info", check=False, timeout=30)
    except FileNotFoundError:
        pytest.skip(f"missing dependency: the Docker client {DOCKER!r}")
    if info.returncode != 0:
        pytest.skip(f"missing dependency: a running Docker engine ({info.stderr.strip()})")
    found = docker("image", "inspect", image, check=False)
    if found.returncode != 0:
        pytest.skip(f"missing dependency: image {image} (build it: docker/build.sh cpu)")
    return json.loads(found.stdout)[0]


@dataclass
class Container:
    """A detached container of the image, started by :meth:`start`."""

    id: str
    port: int

    @classmethod
    def start(
        cls,
        image: str,
        *,
        env: Mapping[str, str] | None = None,
        volumes: Sequence[str] = (),
        args: Sequence[str] = (),
        port: int = 30000,
    ) -> Container:
        options = ["--health-interval", HEALTH_INTERVAL, "-p", f"127.0.0.1::{port}"]
        for name, value in (env or {}).items():
            options += ["-e", f"{name}={value}"]
        for volume in volumes:
            options += ["-v", volume]
        cid = docker("run", "-d", *options, image, *args).stdout.strip()
        return cls(cid, port)

    def inspect(self) -> dict:
        return json.loads(docker("inspect", self.id).stdout)[0]

    def wait_healthy(self, timeout: float = 600) -> None:
        """Until Docker's HEALTHCHECK says healthy; fails with the logs if it exits or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.inspect()["State"]
            if not state["Running"]:
                pytest.fail(f"container exited with {state['ExitCode']}:\n{self.logs()[-4000:]}")
            if state["Health"]["Status"] == "healthy":
                return
            time.sleep(1)
        pytest.fail(f"container not healthy after {timeout} s:\n{self.logs()[-4000:]}")

    def health_output(self) -> str:
        return self.inspect()["State"]["Health"]["Log"][-1]["Output"].strip()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<host port>`` of the published server port."""
        mapping = docker("port", self.id, f"{self.port}/tcp").stdout.split()[0]
        return f"http://{mapping}"

    def exec(self, *command: str) -> subprocess.CompletedProcess:
        return docker("exec", self.id, *command, check=False)

    def logs(self) -> str:
        result = docker("logs", self.id, check=False)
        return result.stdout + result.stderr

    def host_pids(self) -> list[int]:
        """The container's processes as host PIDs (they share the host's process table)."""
        rows = docker("top", self.id, "-eo", "pid").stdout.split()[1:]
        return [int(pid) for pid in rows]

    def stop(self, grace_s: int = 30) -> float:
        """``docker stop`` (SIGTERM, SIGKILL after ``grace_s``); returns how long it took."""
        start = time.monotonic()
        docker("stop", "-t", str(grace_s), self.id, timeout=grace_s + 30)
        return time.monotonic() - start

    def remove(self) -> None:
        docker("rm", "-f", self.id, check=False)


def one_shot(
    image: str,
    *args: str,
    env: Mapping[str, str] | None = None,
    volumes: Sequence[str] = (),
    timeout: float = 120,
) -> subprocess.CompletedProcess:
    """``docker run --rm`` in the foreground: exit code, stdout and stderr of the container."""
    options = [opt for name, value in (env or {}).items() for opt in ("-e", f"{name}={value}")]
    options += [opt for volume in volumes for opt in ("-v", volume)]
    return docker("run", "--rm", *options, image, *args, check=False, timeout=timeout)


def sse_contents(lines) -> list[str]:
    """The content deltas of an OpenAI-style server-sent event stream."""
    parts = []
    for raw in lines:
        line = raw.decode() if isinstance(raw, bytes) else raw
        if line.startswith("data: ") and line != "data: [DONE]":
            parts.append(json.loads(line[6:])["choices"][0]["delta"].get("content") or "")
    return parts
