"""``sglang-fl bench comm`` without processes: size parsing, bus bandwidth, the table."""

from __future__ import annotations

import argparse

import pytest

from sglang_fl.bench import comm


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1MiB,16MiB,256MiB", [2**20, 16 * 2**20, 256 * 2**20]),
        ("4KiB, 1GB ,512", [4096, 10**9, 512]),
        ("2kib", [2048]),
    ],
)
def test_sizes_parse(text: str, expected: list[int]) -> None:
    assert comm.parse_sizes(text) == expected


@pytest.mark.parametrize("text", ["", "1TB", "MiB", "1.5MiB"])
def test_bad_sizes_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"message size|no message sizes"):
        comm.parse_sizes(text)


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
    args = argparse.Namespace(device="cuda", nprocs=2, sizes="1MiB", iters=1, json=False)
    assert comm.main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("all_reduce, 2 x cuda, bfloat16, platform NvidiaPlatform:")
    assert lines[1].split() == ["size", "torch", "us", "torch", "GB/s", "sglang-fl", "us",
                                "sglang-fl", "GB/s", "ratio"]  # fmt: skip
    assert lines[3].split() == ["1", "MiB", "10.0", "104.86", "20.0", "52.43", "0.500"]
