"""The ATen trace and its replay (``sglang-fl bench aten``), on CPU tensors.

The timing and the FlagGems side run on the GPU host only; what is checked here is that a trace
records what ran and that a replay rebuilds arguments that the same ops accept.
"""

from __future__ import annotations

import json
import subprocess

import pytest
import torch

from sglang_fl.aten_trace import AtenTrace, describe, op_key
from sglang_fl.bench import aten_set
from sglang_fl.errors import BenchmarkError


def _trace(tmp_path, fn):
    path = tmp_path / "trace.jsonl"
    with AtenTrace(path):
        fn()
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_records_each_distinct_signature_once(tmp_path):
    x = torch.randn(4, 8)

    def run():
        for _ in range(3):
            torch.mul(x, x)
        torch.mul(x[:2], x[:2])

    entries = _trace(tmp_path, run)
    muls = [e for e in entries if e["op"] == "mul.Tensor"]
    assert [e["args"][0]["shape"] for e in muls] == [[4, 8], [2, 8]]


def test_op_keys_match_flaggems_naming():
    assert op_key(torch.ops.aten.add.Tensor) == "add.Tensor"
    assert op_key(torch.ops.aten.abs.default) == "abs"


def test_value_ranges_make_replayed_indices_valid(tmp_path):
    table = torch.randn(100, 16)
    ids = torch.tensor([3, 97, 42])
    entries = _trace(tmp_path, lambda: torch.nn.functional.embedding(ids, table))
    entry = next(e for e in entries if e["op"] == "embedding")
    assert entry["args"][1]["range"] == [3, 97]
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):
        args = [aten_set.build(a, gen) for a in entry["args"]]
        assert int(args[1].min()) >= 3 and int(args[1].max()) <= 97
        torch.ops.aten.embedding(*args)


def test_replay_keeps_strides_of_views():
    base = torch.randn(8, 6)
    view = base[:, :3].t()
    spec = describe(view)
    rebuilt = aten_set.build(spec, torch.Generator().manual_seed(0))
    assert rebuilt.shape == view.shape and rebuilt.stride() == view.stride()
    assert float(rebuilt.min()) >= spec["range"][0] and float(rebuilt.max()) <= spec["range"][1]


def test_unreplayable_arguments_are_marked(tmp_path):
    entries = _trace(tmp_path, lambda: torch.randn(3).to(torch.float16))
    assert all(e["replayable"] for e in entries)
    assert describe(object()) is None


def test_signature_spread_and_verdict():
    def tensor(n):
        return {"tensor": True, "shape": [n], "stride": [1], "dtype": "float32", "device": "cuda"}

    entries = [{"op": "mul.Tensor", "args": [tensor(n)], "kwargs": {}} for n in range(1, 20)]
    spread = aten_set._spread(entries)
    assert len(spread) == aten_set.MAX_SIGNATURES_PER_OP
    assert spread[0]["args"][0]["shape"] == [1] and spread[-1]["args"][0]["shape"] == [19]
    fast = {"op": "mul.Tensor", "numel": 8, "torch_eager_us": 10.0, "gems_eager_us": 9.0,
            "torch_graph_us": 3.0, "gems_graph_us": 2.5}  # fmt: skip
    assert aten_set.verdict([fast])[0]
    slow_graph = {**fast, "gems_graph_us": 3.5}
    keep, reason = aten_set.verdict([fast, slow_graph])
    assert not keep and "device 1.167x" in reason
    uncapturable = {**fast, "gems_graph_us": None}
    assert "cannot be captured" in aten_set.verdict([uncapturable])[1]


def test_yaml_block_is_replaced_in_place(tmp_path):
    yaml_file = tmp_path / "p.yaml"
    yaml_file.write_text("prefer: flagos\n")
    report = {"functions": [{"function": "mul", "kept": False, "reason": "eager 2.00x"},
                            {"function": "softmax", "kept": True, "reason": "ok"}],
              "whitelist": ["softmax"]}  # fmt: skip
    aten_set.write_yaml(yaml_file, aten_set.whitelist_block(report, {"date": "d"}))
    aten_set.write_yaml(yaml_file, aten_set.whitelist_block({**report, "whitelist": []}, {}))
    text = yaml_file.read_text()
    assert text.count(aten_set.BEGIN_MARK) == 1
    assert text.startswith("prefer: flagos\n") and "flagos_whitelist: []" in text
    assert "#   mul: eager 2.00x" in text


def test_a_failed_trace_run_is_one_line_ending_in_its_output(monkeypatch, tmp_path):
    output = "loading\nTraceback (most recent call last):\n  File x\nRuntimeError: no GPU\n"

    def worker(argv, **kwargs):
        return subprocess.CompletedProcess(argv, 1, stdout=output, stderr="")

    monkeypatch.setattr(aten_set.subprocess, "run", worker)
    with pytest.raises(BenchmarkError) as raised:
        aten_set.trace(tmp_path / "new" / "trace.jsonl")
    assert str(raised.value) == (
        "bench aten: the trace run exited 1 without writing a trace; its output ends: loading | "
        "Traceback (most recent call last): | File x | RuntimeError: no GPU"
    )


def test_measuring_without_flaggems_says_why_before_any_trace(monkeypatch):
    reason = "FlagGems cannot be imported: ModuleNotFoundError: No module named 'flag_gems'"
    monkeypatch.setattr(aten_set, "flaggems_import_error", lambda: reason)
    with pytest.raises(BenchmarkError) as raised:
        aten_set.require_flaggems()
    assert str(raised.value) == f"bench aten times FlagGems against PyTorch: {reason}"
