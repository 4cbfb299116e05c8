"""The NVIDIA bundle's discovery, detection, settings and vendor-backend rules (no GPU needed).

What needs a GPU (the kernels themselves, serving) is in ``test_nvidia_backend_cuda.py`` and
``tests/integration/test_cuda_serving.py``, run on the GPU host.
"""

from __future__ import annotations

import sys
import types

import pytest
import torch
import yaml
from sglang_fl_nvidia import BUNDLE
from sglang_fl_nvidia.backend import IMPLEMENTATIONS, NvidiaBackend

from sglang_fl.bundles import discover_bundles, known_vendors
from sglang_fl.config import load_settings
from sglang_fl.dispatch.registry import build_registry
from sglang_fl.dispatch.selection import plan_op
from sglang_fl.ops.catalog import (
    DEEPSEEK_SCALING_ROTARY_EMBEDDING,
    GELU_AND_MUL,
    GEMMA3_RMS_NORM,
    GEMMA_RMS_NORM,
    LAYER_NORM,
    MROTARY_EMBEDDING,
    NEW_GELU,
    OP_NAMES,
    QUICK_GELU,
    RMS_NORM,
    RMS_NORM_WITHOUT_SCALE,
    ROTARY_EMBEDDING,
    SILU_AND_MUL,
)
from sglang_fl.ops.params import (
    ActivationParams,
    LayerNormParams,
    MRotaryParams,
    NormParams,
    RotaryParams,
)

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


def _norm(dtype, weight_dtype=None, hidden=8):
    weight = torch.ones(hidden, dtype=weight_dtype or dtype)
    return NormParams(weight, 1e-6, hidden, dtype, CPU)


def _layer_norm(dtype, compute_dtype, weight_dtype=None, bias=True):
    weight = torch.ones(8, dtype=weight_dtype or compute_dtype)
    bias_ = torch.zeros(8, dtype=compute_dtype) if bias else None
    return LayerNormParams(weight, bias_, 1e-6, 8, compute_dtype, dtype, CPU)


def _mrope(dtype, rotary_dim=64, section=(8, 12, 12), interleaved=False):
    return MRotaryParams(torch.ones(4, rotary_dim), 128, rotary_dim, True, section, interleaved,
                         dtype, CPU)  # fmt: skip


@pytest.mark.parametrize(
    ("params", "op", "expected"),
    [
        (ActivationParams(torch.bfloat16, CPU, 22016), SILU_AND_MUL, None),
        (ActivationParams(torch.bfloat16, CPU, 6), SILU_AND_MUL, "multiple of 16 bytes"),
        (ActivationParams(torch.float64, CPU, 64), SILU_AND_MUL, "not torch.float64"),
        (ActivationParams(torch.bfloat16, CPU, 2 * 9216, "tanh"), GELU_AND_MUL, None),
        (ActivationParams(torch.float16, CPU, 2 * 4864, "none"), GELU_AND_MUL, None),
        (ActivationParams(torch.bfloat16, CPU, 6, "tanh"), GELU_AND_MUL,
         "sgl_kernel.gelu_tanh_and_mul needs rows of a multiple of 16 bytes (width 6)"),
        (ActivationParams(torch.float32, CPU, 6, "none"), GELU_AND_MUL,
         "sgl_kernel.gelu_and_mul needs rows of a multiple of 16 bytes (width 6)"),
        (ActivationParams(torch.float64, CPU, 64, "tanh"), GELU_AND_MUL, "not torch.float64"),
        (ActivationParams(torch.bfloat16, CPU, 64, "sigmoid"), GELU_AND_MUL,
         "approximate='sigmoid' is not one of ('none', 'tanh')"),
        (ActivationParams(torch.bfloat16, CPU, 64), NEW_GELU,
         "SGLang's NewGELU.forward_cuda runs forward_native"),
        (ActivationParams(torch.bfloat16, CPU, 4304), QUICK_GELU,
         "exports gelu_quick on ROCm builds only"),
        (_norm(torch.bfloat16), RMS_NORM, None),
        (_norm(torch.bfloat16, torch.float32), RMS_NORM, "weight in the input dtype"),
        (_norm(torch.float32), GEMMA_RMS_NORM, "not torch.float32"),
        (_norm(torch.bfloat16), GEMMA3_RMS_NORM, None),
        (_norm(torch.bfloat16, torch.float32), GEMMA3_RMS_NORM,
         "weight is torch.float32, input is torch.bfloat16"),
        (_norm(torch.float32), GEMMA3_RMS_NORM, "not torch.float32"),
        (NormParams(None, 1e-6, 8, torch.float16, CPU), RMS_NORM_WITHOUT_SCALE, None),
        (NormParams(None, 1e-6, 8, torch.float32, CPU), RMS_NORM_WITHOUT_SCALE,
         "sgl_kernel.rmsnorm supports float16 and bfloat16, not torch.float32"),
        (_layer_norm(torch.float16, torch.float32), LAYER_NORM,
         "not torch.float16 input with torch.float32 parameters"),
        (_layer_norm(torch.bfloat16, torch.bfloat16), LAYER_NORM,
         "not torch.bfloat16 input with torch.bfloat16 parameters"),
        (_layer_norm(torch.bfloat16, torch.float32, weight_dtype=torch.bfloat16), LAYER_NORM,
         "needs a float32 weight vector; got torch.bfloat16"),
        (RotaryParams(torch.ones(4, 64), 128, 64, True, torch.bfloat16, CPU),
         ROTARY_EMBEDDING, None),
        (RotaryParams(torch.ones(4, 63), 128, 63, True, torch.bfloat16, CPU),
         ROTARY_EMBEDDING, "rotary_dim 63"),
        (_mrope(torch.bfloat16), MROTARY_EMBEDDING, None),
        (_mrope(torch.bfloat16, interleaved=True), MROTARY_EMBEDDING, None),
        (_mrope(torch.bfloat16, section=None), MROTARY_EMBEDDING, None),
        (_mrope(torch.float64), MROTARY_EMBEDDING, "not torch.float64"),
        (_mrope(torch.bfloat16, rotary_dim=130), MROTARY_EMBEDDING, "rotary_dim 130"),
        (RotaryParams(torch.ones(4, 64), 64, 64, False, torch.bfloat16, CPU),
         DEEPSEEK_SCALING_ROTARY_EMBEDDING, None),
        (RotaryParams(torch.ones(4, 64), 64, 64, True, torch.float64, CPU),
         DEEPSEEK_SCALING_ROTARY_EMBEDDING, "not torch.float64"),
    ],
)  # fmt: skip
def test_per_instance_refusals_name_the_reason(params, op, expected):
    reason = IMPLEMENTATIONS[op].supports(params)
    if expected is None:
        assert reason is None
    else:
        assert reason is not None and expected in reason


@pytest.mark.parametrize("op", [NEW_GELU, QUICK_GELU])
def test_ops_without_a_vendor_kernel_refuse_every_instance(op):
    """No dtype or width makes them bindable, and bind itself says why if called anyway."""
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        assert IMPLEMENTATIONS[op].supports(ActivationParams(dtype, CPU, 4096)) is not None
    with pytest.raises(RuntimeError, match=r"vendor\.nvidia refuses every instance"):
        IMPLEMENTATIONS[op].bind(ActivationParams(torch.bfloat16, CPU, 4096))


@pytest.fixture
def fake_flashinfer(monkeypatch):
    """``flashinfer.norm.layernorm`` with flashinfer 0.6.12's signature (input, gemma, beta,
    eps), computing F.layer_norm: the wiring of the bound layer norm, not the kernel."""
    calls = []

    def layernorm(input, gemma, beta, eps=1e-6):
        assert input.dim() == 2 and input.is_contiguous() and input.dtype == torch.bfloat16
        assert gemma.dtype == beta.dtype == torch.float32
        calls.append((input.shape, gemma, beta, eps))
        out = torch.nn.functional.layer_norm(input.float(), input.shape[-1:], gemma, beta, eps)
        return out.to(input.dtype)

    norm = types.ModuleType("flashinfer.norm")
    norm.layernorm = layernorm
    package = types.ModuleType("flashinfer")
    package.norm = norm
    monkeypatch.setitem(sys.modules, "flashinfer", package)
    monkeypatch.setitem(sys.modules, "flashinfer.norm", norm)
    return calls


def test_layer_norm_without_flashinfer_is_refused_with_the_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "flashinfer", None)
    reason = IMPLEMENTATIONS[LAYER_NORM].supports(_layer_norm(torch.bfloat16, torch.float32))
    assert reason.startswith("flashinfer.norm.layernorm cannot be imported: ")


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_layer_norm_passes_neutral_fp32_vectors_for_what_is_switched_off(
    fake_flashinfer, affine, bias
):
    """SGLang passes its always-present ones/zeros when elementwise_affine/bias are off; the
    contract says None: bind makes the same neutral vectors, and 3-D or strided input is
    handed over as a contiguous [rows, hidden] tensor."""
    weight = torch.linspace(0.5, 1.5, 8) if affine else None
    bias_ = torch.linspace(-1, 1, 8) if bias else None
    params = LayerNormParams(weight, bias_, 1e-5, 8, torch.float32, torch.bfloat16, CPU)
    assert IMPLEMENTATIONS[LAYER_NORM].supports(params) is None
    layer_norm = IMPLEMENTATIONS[LAYER_NORM].bind(params)
    wide = torch.randn(2, 3, 11).to(torch.bfloat16)
    x = wide[..., 1:9]  # 3-D and strided
    out = layer_norm(x)
    expected = torch.nn.functional.layer_norm(x.float(), (8,), weight, bias_, 1e-5)
    assert out.shape == x.shape and out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, rtol=1e-2, atol=1e-2)
    (shape, gamma, beta, eps), *_ = fake_flashinfer
    assert shape == (6, 8) and eps == 1e-5
    if affine:
        assert gamma is weight  # the live parameter: SGLang reloads weights in place
    else:
        assert torch.equal(gamma, torch.ones(8)) and gamma.dtype == torch.float32
    if bias:
        assert beta is bias_
    else:
        assert torch.equal(beta, torch.zeros(8)) and beta.dtype == torch.float32
