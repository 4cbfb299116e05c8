"""The e2e benchmark's per-configuration process entry point (``python -m sglang_fl.bench.e2e
--worker SPEC``): without it every configuration "succeeds" in 0.1 s with no figures."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _module(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sglang_fl.bench.e2e", *args],
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_without_worker_flag_it_refuses():
    proc = _module()
    assert proc.returncode != 0
    assert "use `sglang-fl bench e2e`" in proc.stderr


@pytest.mark.sglang
def test_worker_flag_runs_the_worker(tmp_path):
    # a spec naming a model directory without config.json: the worker gets as far as starting
    # SGLang's engine, which rejects it, so the process fails instead of printing nothing
    spec = {"model": str(tmp_path), "batch_sizes": [1], "repeats": 1, "output_tokens": 1}
    proc = _module("--worker", json.dumps(spec))
    assert proc.returncode != 0
    assert "RESULT " not in proc.stdout
    assert str(tmp_path) in proc.stdout + proc.stderr
