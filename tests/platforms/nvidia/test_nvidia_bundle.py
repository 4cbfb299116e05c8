"""The NVIDIA bundle's discovery, detection, settings and vendor-backend rules (no GPU needed).

What needs a GPU (the kernels themselves, serving) is in ``test_nvidia_backend_cuda.py`` and
``tests/integration/test_cuda_serving.py``, run on the GPU host.
"""

from __future__ import annotations

import pytest
import torch
import yaml
from sglang_fl_nvidia import BUNDLE
from sglang_fl_nvidia.backend import IMPLEMENTATIONS, NvidiaBackend

from sglang_fl.bundles import discover_bundles, known_vendors
from sglang_fl.config import load_settings
from sglang_fl.dispatch.registry import build_registry
from sglang_fl.dispatch.selection import plan_op
from sglang_fl.ops.catalog import OP_NAMES
from sglang_fl.ops.params import ActivationParams, NormParams, RotaryParams

CPU = torch.device("cpu")


def test_discovered_with_its_aliases():
    bundles = discover_bundles()
    assert bundles["nvidia"] is BUNDLE
    assert known_vendors(bundles)["cuda"] == "nvidia"
    assert BUNDLE.dist_backends[0] == "nccl"


def test_detects_nothing_without_a_cuda_gpu():
    assert torch.cuda.is_available() or not BUNDLE.detect()


def test_forced_platform_settings():
    settings = load_settings(env={"SGLANG_FL_PLATFORM": "cuda"})
    assert settings.platform == "nvidia"
    assert settings.dist_backend == "nccl"
    assert settings.sources["dist_backend"] == "platform:nvidia"
    assert settings.prefer == "flagos" and settings.sources["prefer"] == "platform:nvidia"


def test_platform_yaml_is_a_valid_config_with_a_measured_aten_set():
    data = yaml.safe_load(BUNDLE.config_file.read_text(encoding="utf-8"))
    settings = load_settings(env={"SGLANG_FL_PLATFORM": "nvidia"})
    assert settings.flagos_whitelist == tuple(data["flagos_whitelist"])
    assert settings.sources["flagos_whitelist"] == "platform:nvidia"
    assert settings.flagos_blacklist == ()


def test_every_op_has_a_vendor_implementation():
    assert set(IMPLEMENTATIONS) == set(OP_NAMES)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU answer")
def test_backend_unavailable_without_gpu_says_why():
    available = NvidiaBackend().availability()
    assert not available.ok and "no NVIDIA GPU" in available.reason
    settings = load_settings(env={"SGLANG_FL_PLATFORM": "nvidia", "SGLANG_FL_PREFER": "vendor"})
    plan = plan_op("rms_norm", settings, build_registry(discover_bundles()))
    assert plan.candidates[0].impl_id == "flagos" or plan.candidates[0].impl_id == "reference"
    assert any(r.impl_id == "vendor.nvidia" and "no NVIDIA GPU" in r.reason for r in plan.rejected)


@pytest.mark.parametrize(
    ("params", "op", "expected"),
    [
        (ActivationParams(torch.bfloat16, CPU, 22016), "silu_and_mul", None),
        (ActivationParams(torch.bfloat16, CPU, 6), "silu_and_mul", "multiple of 16 bytes"),
        (ActivationParams(torch.float64, CPU, 64), "silu_and_mul", "not torch.float64"),
        (NormParams(torch.ones(8, dtype=torch.bfloat16), 1e-6, 8, torch.bfloat16, CPU),
         "rms_norm", None),
        (NormParams(torch.ones(8), 1e-6, 8, torch.bfloat16, CPU), "rms_norm",
         "weight in the input dtype"),
        (NormParams(torch.ones(8), 1e-6, 8, torch.float32, CPU), "gemma_rms_norm",
         "not torch.float32"),
        (RotaryParams(torch.ones(4, 64), 128, 64, True, torch.bfloat16, CPU),
         "rotary_embedding", None),
        (RotaryParams(torch.ones(4, 63), 128, 63, True, torch.bfloat16, CPU),
         "rotary_embedding", "rotary_dim 63"),
    ],
)  # fmt: skip
def test_per_instance_refusals_name_the_reason(params, op, expected):
    reason = IMPLEMENTATIONS[op].supports(params)
    if expected is None:
        assert reason is None
    else:
        assert reason is not None and expected in reason
