"""ci/check_stack.py on this CPU machine: an accelerator cell here must fail, saying why
(instead of passing green with every device test skipped)."""

from __future__ import annotations

import sys

import check_stack
import pytest


def test_a_cuda_cell_without_a_gpu_fails_naming_what_torch_sees(capsys):
    assert check_stack.main(["--device", "cuda", "--sglang", "0.5.15"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ci/check_stack: this cell runs on cuda devices; torch ")
    assert err.rstrip().endswith("sees no accelerator")


def test_an_npu_cell_without_torch_npu_fails_naming_the_import(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch_npu", None)  # import torch_npu -> ImportError
    assert check_stack.main(["--device", "npu", "--sglang", "0.5.21"]) == 1
    assert "this cell runs on npu, but torch_npu cannot be imported" in capsys.readouterr().err


def test_unknown_device_is_a_usage_error():
    with pytest.raises(SystemExit) as exc:
        check_stack.main(["--device", "tpu", "--sglang", "0.5.21"])
    assert exc.value.code == 2
