"""``sglang-fl bench comm`` end to end on CPU: two processes, gloo, real SGLang groups (the CI
smoke run of the GPU benchmark; tiny sizes, the figures themselves mean little here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.sglang, pytest.mark.slow]


def test_cpu_smoke_run_reports_both_paths() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SGLANG_FL_", "FLAGCX"))}
    cli = Path(sys.executable).with_name("sglang-fl")
    argv = [str(cli), "bench", "comm", "--sizes", "4KiB,64KiB", "--iters", "3", "--json"]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout)
    assert {k: report[k] for k in ("device", "nprocs", "dtype", "platform", "dist_backend",
                                   "torch_backend", "baseline_backend")} == {
        "device": "cpu", "nprocs": 2, "dtype": "float32", "platform": "CpuPlatform",
        "dist_backend": "gloo", "torch_backend": "gloo", "baseline_backend": "gloo",
    }  # fmt: skip
    assert [r["bytes"] for r in report["results"]] == [4096, 65536]
    for row in report["results"]:
        assert row["torch_us"] > 0 and row["sglang_fl_us"] > 0
        assert row["ratio"] == pytest.approx(row["sglang_fl_busbw_gbps"] / row["torch_busbw_gbps"])
