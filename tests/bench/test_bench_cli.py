"""``sglang-fl bench``'s command line: options are validated by the parser before anything is
measured, ``--json`` / ``--json-file`` mean what they mean everywhere, and a benchmark that
cannot run ends with one line and exit status 1. The measurements are replaced by stand-ins."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from sglang_fl.bench import cli as bench_cli
from sglang_fl.bench import comm, dispatch_overhead
from sglang_fl.cli import main
from sglang_fl.errors import BenchmarkError


@pytest.fixture
def nothing_runs(monkeypatch):
    """Every benchmark's measurement fails the test if reached: parse errors come first."""

    def reached(*args, **kwargs):
        raise AssertionError("the benchmark ran despite a bad option")

    monkeypatch.setattr(comm, "run", reached)
    monkeypatch.setattr(dispatch_overhead, "run", reached)
    monkeypatch.setattr(bench_cli, "require_device", reached)


def usage_error(capsys, *argv: str) -> str:
    """The one error line argparse prints for ``argv`` (exit status 2)."""
    with pytest.raises(SystemExit) as stopped:
        main(list(argv))
    assert stopped.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1MiB,16MiB,256MiB", [2**20, 16 * 2**20, 256 * 2**20]),
        ("4KiB, 1GB ,512", [4096, 10**9, 512]),
        ("2kib", [2048]),
    ],
)
def test_sizes_parse(text: str, expected: list[int]) -> None:
    assert bench_cli.message_sizes(text) == expected


@pytest.mark.parametrize("text", ["", "1TB", "MiB", "1.5MiB", "0MiB"])
def test_bad_sizes_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"message size|no message sizes"):
        bench_cli.message_sizes(text)


def test_default_sizes_are_parsed_like_given_ones() -> None:
    parser = argparse.ArgumentParser()
    bench_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "comm"])
    assert args.sizes == [2**20, 16 * 2**20, 256 * 2**20]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("comm", "--sizes", "1MiB,1TB"),
         "argument --sizes: bad message size '1TB'; accepted: comma-separated sizes > 0 such as "
         "4KiB,16MiB,1GB (units B, KiB, MiB, GiB, KB, MB, GB)"),
        (("comm", "--nprocs", "1"), "argument --nprocs: expected an integer >= 2, got '1'"),
        (("comm", "--iters", "many"), "argument --iters: expected an integer >= 1, got 'many'"),
        (("ops", "--tokens", "1,x"),
         "argument --tokens: expected comma-separated positive integers such as 1,64,256, "
         "got '1,x'"),
        (("e2e", "--batch-sizes", "0,64"),
         "argument --batch-sizes: expected comma-separated positive integers such as 1,64,256, "
         "got '0,64'"),
        (("e2e", "--repeats", "0"), "argument --repeats: expected an integer >= 1, got '0'"),
        (("e2e", "--timeout", "-5"),
         "argument --timeout: expected a number of seconds > 0, got '-5'"),
        (("aten", "--trace", "/no/such/trace.jsonl"),
         "argument --trace: expected an existing file, got '/no/such/trace.jsonl'"),
    ],
)  # fmt: skip
def test_bad_options_stop_at_parse_time_naming_value_and_accepted(
    nothing_runs, capsys, argv, message
) -> None:
    assert usage_error(capsys, "bench", *argv).endswith(message)


def test_the_earlier_json_file_form_is_refused_with_the_new_one_named(nothing_runs, capsys):
    line = usage_error(capsys, "bench", "comm", "--json", "report.json")
    assert line.endswith(
        "unrecognized arguments: report.json (--json takes no value: it prints JSON on stdout; "
        "--json-file PATH writes it to a file)"
    )


def _fake_dispatch(monkeypatch) -> list[dict]:
    result = dispatch_overhead.OverheadResult("rms_norm", "reference", "cpu", 3.0, 2.0, 1.5, 0.1)
    monkeypatch.setattr(dispatch_overhead, "run", lambda device: [result])
    return [result.as_dict()]


def test_json_goes_to_stdout_alone_and_json_file_to_the_file(monkeypatch, capsys, tmp_path):
    results = _fake_dispatch(monkeypatch)
    expected = {"device": "cpu", "results": results}
    assert main(["bench", "dispatch", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == expected
    path = tmp_path / "out" / "dispatch.json"
    assert main(["bench", "dispatch", "--json-file", str(path)]) == 0
    header, _, row = capsys.readouterr().out.splitlines()
    assert header.split()[:2] == ["op", "impl"] and row.split()[:2] == ["rms_norm", "reference"]
    assert json.loads(path.read_text()) == expected


def test_a_benchmark_that_cannot_run_is_one_line_and_status_1(monkeypatch, capsys):
    def fail(*args):
        raise BenchmarkError("an all-reduce benchmark needs two or more ranks; 1 cuda device(s)")

    monkeypatch.setattr(comm, "run", fail)
    assert main(["bench", "comm"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "sglang-fl: an all-reduce benchmark needs two or more ranks; 1 cuda device(s)"
    ]


def test_an_unknown_device_is_a_benchmark_error():
    with pytest.raises(BenchmarkError, match=r"^bench ops: 'gpu0' is not a torch device \("):
        bench_cli.require_device("gpu0", "bench ops")
    bench_cli.require_device("cpu", "bench ops")  # always there


@pytest.mark.skipif(torch.cuda.is_available(), reason="this host has a CUDA device")
def test_a_missing_gpu_is_named(capsys):
    assert main(["bench", "dispatch", "--device", "cuda"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"sglang-fl: bench dispatch needs a cuda device and torch {torch.__version__} sees none "
        "here"
    ]
