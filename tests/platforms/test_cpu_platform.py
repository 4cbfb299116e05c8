"""The CPU bundle's SGLang platform class: defaults only where the user left args unset."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

pytestmark = pytest.mark.sglang


def make():
    # SGLang resolves its platform while `sglang` itself is imported; import it first, as
    # SGLang does, so the platform module is not the one that starts SGLang's import.
    import sglang.srt.platforms  # noqa: F401
    from sglang_fl_cpu.platform import CpuPlatform

    return CpuPlatform()


def test_defaults_fill_only_unset_args():
    args = SimpleNamespace(device=None, attention_backend="flex_attention", sampling_backend=None,
                           mem_fraction_static=0.3, disable_cuda_graph=False)  # fmt: skip
    make().apply_server_args_defaults(args)
    assert args.attention_backend == "flex_attention"  # user choice kept
    assert args.mem_fraction_static == 0.3
    assert args.device == "cpu" and args.sampling_backend == "pytorch"
    assert args.disable_cuda_graph is True


def test_identity_and_capabilities():
    platform = make()
    assert platform.is_out_of_tree()
    assert platform.get_device(None) == "cpu" and isinstance(platform.get_device(0), str)
    assert platform.get_torch_distributed_backend_str() == "gloo"
    assert platform.get_dispatch_key_name() == "native"
    assert not platform.is_pin_memory_available()
    assert 0 < platform.get_current_memory_usage() < platform.get_device_total_memory()
    free, total = platform.get_available_memory()
    assert 0 < free <= total == platform.get_device_total_memory()
    assert platform.get_device_capability() is None
    assert platform.get_device_uuid().startswith("cpu-")
    assert platform.get_torch_profiler_activity_str() == "CPU"


@pytest.mark.parametrize(
    ("cores", "ranks", "expected"),
    [
        ([0, 1], 2, "0|1"),
        ([0, 1, 2, 3, 4], 2, "0-2|3-4"),
        ([0], 2, "0|0"),
        ([0, 2, 4, 6], 2, "0,2|4,6"),
    ],
)
def test_core_split(cores, ranks, expected):
    from sglang_fl_cpu.platform import core_split

    assert core_split(cores, ranks) == expected


def test_more_ranks_than_numa_nodes_get_a_core_split(monkeypatch):
    monkeypatch.delenv("SGLANG_CPU_OMP_THREADS_BIND", raising=False)
    args = SimpleNamespace(device=None, attention_backend=None, sampling_backend=None,
                           mem_fraction_static=None, tp_size=2, pp_size=1, dp_size=1)  # fmt: skip
    make().apply_server_args_defaults(args)
    import os

    groups = os.environ["SGLANG_CPU_OMP_THREADS_BIND"].split("|")
    assert len(groups) == 2
    monkeypatch.setenv("SGLANG_CPU_OMP_THREADS_BIND", "0|0")
    make().apply_server_args_defaults(args)
    assert os.environ["SGLANG_CPU_OMP_THREADS_BIND"] == "0|0"  # the user's choice stays


def test_cpu_bundle_detects_only_without_an_accelerator(monkeypatch):
    import torch
    from sglang_fl_cpu import BUNDLE

    monkeypatch.setattr(torch.accelerator, "is_available", lambda: False)
    assert BUNDLE.detect() is True
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: True)
    assert BUNDLE.detect() is False  # a GPU/NPU host is not the CPU platform's
