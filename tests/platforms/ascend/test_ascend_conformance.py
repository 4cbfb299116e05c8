"""The conformance suite's op checks against the ``vendor.ascend`` backend on the fake
torch_npu (conftest.py): the same command a vendor runs on an NPU, here proving our side of the
torch_npu contract on every case of the suite (not the NPU kernels themselves).
"""

from __future__ import annotations

import json

import pytest
import torch
from sglang_fl_ascend.backend import AscendBackend

from sglang_fl.cli import main
from sglang_fl.conformance.ops import check_backend
from sglang_fl.conformance.report import Status
from sglang_fl.ops.catalog import OP_NAMES

pytestmark = pytest.mark.ascend_contract


def test_every_op_case_passes_or_is_refused_for_a_documented_reason(fake_npu):
    checks = check_backend(AscendBackend(), torch.device("cpu"))
    assert not [c for c in checks if c.status is Status.FAIL]
    refused = [c for c in checks if c.status is Status.REFUSED]
    # the only refusals: a norm weight kept in fp32 under a bf16 input (gamma must match x),
    # and Qwen3-VL's interleaved mrope sections (npu_mrope documents the chunked ones only)
    weight = [c for c in refused if c.name.endswith("weight float32")]
    interleaved = [c for c in refused if c.name.startswith("mrotary_embedding ")]
    assert weight and interleaved and len(weight) + len(interleaved) == len(refused)
    assert all("needs the weight in the input dtype" in c.detail for c in weight)
    assert all("interleaved [24, 20, 20]" in c.name for c in interleaved)
    assert all("interleaved layout is none of its modes" in c.detail for c in interleaved)
    assert {c.name.split()[0] for c in checks if c.status is Status.PASS} == set(OP_NAMES)
    for kernel in ("npu_swiglu", "npu_geglu", "npu_gelu", "npu_fast_gelu", "npu_rms_norm",
                   "npu_add_rms_norm", "npu_gemma_rms_norm", "npu_layer_norm_eval",
                   "npu_mrope"):  # fmt: skip
        assert fake_npu.calls[kernel], kernel


def test_strided_inputs_reach_the_kernels_contiguous(fake_npu):
    """npu_swiglu and npu_gemma_rms_norm take contiguous inputs only (the fake enforces it as
    documented): the strided cases pass because the backend makes them contiguous first."""
    checks = check_backend(AscendBackend(), torch.device("cpu"))
    strided = [
        c
        for c in checks
        if "strided" in c.name
        and c.name.split()[0] in ("silu_and_mul", "gemma_rms_norm", "gemma3_rms_norm")
        and "weight" not in c.name
    ]
    assert strided and {c.status for c in strided} == {Status.PASS}


def test_the_conformance_command_passes_on_the_fake(fake_npu, tmp_path, capsys):
    path = tmp_path / "ascend.json"
    assert (
        main(
            ["conformance", "--platform", "npu", "--ops-only", "--quick", "--json-file", str(path)]
        )
        == 0
    )
    report = json.loads(path.read_text())
    assert report["platform"] == "ascend" and report["vendor"] == "ascend"
    assert report["passed"] and report["counts"]["fail"] == 0 and report["counts"]["pass"] > 40
    assert "conformance PASS" in capsys.readouterr().out


def test_the_conformance_command_fails_without_torch_npu(no_torch_npu, capsys):
    assert main(["conformance", "--platform", "ascend", "--ops-only"]) == 1
    out = capsys.readouterr().out
    assert "vendor.ascend is unavailable here: torch_npu cannot be imported" in out
