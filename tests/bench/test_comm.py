"""``sglang-fl bench comm`` without processes: bus bandwidth, the table, a failing rank."""

from __future__ import annotations

import argparse

import pytest

from sglang_fl.bench import cli as bench_cli
from sglang_fl.bench import comm
from sglang_fl.errors import BenchmarkError


def test_bus_bandwidth_follows_nccl_tests() -> None:
    # 1 GB in 0.1 s over 4 ranks: algbw 10 GB/s, busbw 10 * 2 * 3 / 4 = 15 GB/s
    result = comm._result(10**9, 4, 0.1, 0.2)
    assert result.torch_busbw_gbps == pytest.approx(15.0)
    assert result.sglang_fl_busbw_gbps == pytest.approx(7.5)
    assert result.ratio == pytest.approx(0.5)
    assert result.as_dict()["ratio"] == pytest.approx(0.5)


def test_table(monkeypatch, capsys) -> None:
    report = {
        "device": "cuda", "nprocs": 2, "dtype": "bfloat16", "platform": "NvidiaPlatform",
        "dist_backend": "nccl", "torch_backend": "nccl", "baseline_backend": "nccl",
        "results": [comm._result(2**20, 2, 1e-5, 2e-5).as_dict()],
    }  # fmt: skip
    monkeypatch.setattr(comm, "run", lambda *args: report)
    monkeypatch.setattr(bench_cli, "require_device", lambda *args: None)
    args = argparse.Namespace(device="cuda", nprocs=2, sizes=[2**20], iters=1, json=False,
                              json_file=None)  # fmt: skip
    assert bench_cli.cmd_comm(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("all_reduce, 2 x cuda, bfloat16, platform NvidiaPlatform:")
    assert lines[1].split() == ["size", "torch", "us", "torch", "GB/s", "sglang-fl", "us",
                                "sglang-fl", "GB/s", "ratio"]  # fmt: skip
    assert lines[3].split() == ["1", "MiB", "10.0", "104.86", "20.0", "52.43", "0.500"]


def test_fewer_than_two_ranks_is_a_benchmark_error() -> None:
    with pytest.raises(BenchmarkError, match=r"needs two or more ranks; 1 cpu device"):
        comm.run("cpu", 1, [4096], 1)


def test_a_failing_rank_is_one_line() -> None:
    raised = (
        "\n\n-- Process 1 terminated with the following error:\nTraceback (most recent call "
        'last):\n  File "x.py", line 3, in _worker\nRuntimeError: gloo: connection refused\n'
    )
    assert comm._one_line(raised) == (
        "Process 1 terminated with the following error: RuntimeError: gloo: connection refused"
    )
    assert comm._one_line("process 0 terminated with exit code 1") == (
        "process 0 terminated with exit code 1"
    )
