"""Contract tests of the ``vendor.ascend`` backend against a fake torch_npu (conftest.py).

They prove our side of the contract with torch_npu — the ops we call, our argument mapping,
layouts and dtypes, what we do with the outputs, which instances we refuse — by comparing our
bound kernels numerically with the reference backend. They do not prove that the NPU kernels
compute what their documentation says: nothing here runs on an NPU.
"""

from __future__ import annotations

import math

import pytest
import torch
from sglang_fl_ascend.backend import AscendBackend

from sglang_fl.backends.reference import ReferenceBackend
from sglang_fl.dispatch.backend import ImplKind
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

pytestmark = pytest.mark.ascend_contract

DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# Our kernels and the reference round differently (the fakes compute in fp32 and round once,
# the reference rounds after each op in the input dtype): allow a few roundings, no more.
TOL = {
    torch.float32: {"atol": 1e-5, "rtol": 1e-5},
    torch.float16: {"atol": 4e-3, "rtol": 4e-3},
    torch.bfloat16: {"atol": 3e-2, "rtol": 3e-2},
}
CPU = torch.device("cpu")
HIDDEN = 64


def bind(backend, op: str, params):
    impl = backend.implementations()[op]
    assert impl.supports(params) is None, impl.supports(params)
    return impl.bind(params)


def both(op: str, params):
    """Our bound kernel and the reference's, for the same instance parameters."""
    return bind(AscendBackend(), op, params), bind(ReferenceBackend(), op, params)


def close(actual, expected, dtype) -> None:
    torch.testing.assert_close(actual, expected, **TOL[dtype])


def randn(*shape, dtype, seed=0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


# --------------------------------------------------------------------------- backend identity


def test_identity_and_implementations_without_torch_npu(no_torch_npu):
    backend = AscendBackend()
    assert backend.kind is ImplKind.VENDOR and backend.vendor == "ascend"
    assert backend.impl_id == "vendor.ascend" and backend.priority == 100
    assert set(backend.implementations()) == set(OP_NAMES)  # listing needs no torch_npu
    assert not any(impl.mutates_inputs for impl in backend.implementations().values())


def test_availability_without_torch_npu(no_torch_npu):
    available = AscendBackend().availability()
    assert not available.ok
    assert available.reason.startswith("torch_npu cannot be imported: ")


def test_availability_without_a_device(torch_npu_without_device):
    available = AscendBackend().availability()
    assert not available.ok
    assert "no NPU is visible" in available.reason and "is_available() is False" in available.reason


def test_availability_with_torch_npu_and_a_device(fake_npu):
    assert AscendBackend().availability().ok


# --------------------------------------------------------------------------- silu_and_mul


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(7, 2 * HIDDEN), (2, 3, 2 * 48)], ids=["2d", "3d"])
def test_silu_and_mul_swiglu_halves_match_reference(fake_npu, dtype, shape):
    ours, ref = both("silu_and_mul", ActivationParams(dtype=dtype, device=CPU))
    x = randn(*shape, dtype=dtype)
    x0 = x.clone()
    out = ours(x)
    assert out.dtype == dtype and out.shape == (*shape[:-1], shape[-1] // 2)
    close(out, ref(x), dtype)
    assert torch.equal(x, x0)
    assert fake_npu.calls["npu_swiglu"] == 1


def test_silu_and_mul_gates_with_the_first_half(fake_npu):
    """Control: swapping the halves changes the result, so the comparison above would see it."""
    ours, _ = both("silu_and_mul", ActivationParams(dtype=torch.float32, device=CPU))
    x = randn(4, 2 * HIDDEN, dtype=torch.float32)
    swapped = torch.cat((x[:, HIDDEN:], x[:, :HIDDEN]), dim=-1)
    assert not torch.allclose(ours(x), ours(swapped))
    a, b = x[:, :HIDDEN], x[:, HIDDEN:]
    close(ours(x), a * torch.sigmoid(a) * b, torch.float32)


# --------------------------------------------------------------------------- norms


def norm_params(dtype, *, seed=1, weight_dtype=None) -> NormParams:
    weight = (torch.rand(HIDDEN, generator=torch.Generator().manual_seed(seed)) + 0.5).to(
        weight_dtype or dtype
    )
    return NormParams(weight=torch.nn.Parameter(weight, requires_grad=False), eps=1e-5,
                      hidden_size=HIDDEN, dtype=dtype, device=CPU)  # fmt: skip


@pytest.mark.parametrize("op", ["rms_norm", "gemma_rms_norm"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_norm_without_residual_matches_reference(fake_npu, op, dtype):
    ours, ref = both(op, norm_params(dtype))
    x = randn(5, HIDDEN, dtype=dtype) * 3
    x0 = x.clone()
    out = ours(x, None)
    assert isinstance(out, torch.Tensor) and out.dtype == dtype
    close(out, ref(x, None), dtype)
    assert torch.equal(x, x0)
    kernel = "npu_rms_norm" if op == "rms_norm" else "npu_gemma_rms_norm"
    assert fake_npu.calls[kernel] == 1


@pytest.mark.parametrize("op", ["rms_norm", "gemma_rms_norm"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_norm_with_residual_returns_normed_sum_and_new_residual(fake_npu, op, dtype):
    """SGLang's residual semantics: fn(x, residual) -> (norm(x + residual), x + residual),
    the new residual in x's dtype; the inputs are left untouched (no in-place kernel)."""
    ours, ref = both(op, norm_params(dtype))
    x, residual = randn(6, HIDDEN, dtype=dtype, seed=2), randn(6, HIDDEN, dtype=dtype, seed=3)
    x0, r0 = x.clone(), residual.clone()
    out, new_residual = ours(x, residual)
    ref_out, ref_residual = ref(x, residual)
    assert out.dtype == dtype and new_residual.dtype == dtype
    close(out, ref_out, dtype)
    close(new_residual, ref_residual, dtype)
    close(new_residual, (x0.float() + r0.float()).to(dtype), dtype)
    assert torch.equal(x, x0) and torch.equal(residual, r0)
    if op == "rms_norm":
        assert fake_npu.calls["npu_add_rms_norm"] == 1 and fake_npu.calls["npu_rms_norm"] == 0
    else:
        assert fake_npu.calls["npu_gemma_rms_norm"] == 1


def test_norm_weight_and_eps_are_the_instance_ones(fake_npu):
    """Control: another weight or eps changes the output beyond the tolerance."""
    params = norm_params(torch.float32)
    ours = bind(AscendBackend(), "rms_norm", params)
    x = randn(3, HIDDEN, dtype=torch.float32) * 1e-3  # small x: eps matters
    other_eps = bind(AscendBackend(), "rms_norm", NormParams(**{**params.__dict__, "eps": 1e-2}))
    other_weight = bind(AscendBackend(), "rms_norm", norm_params(torch.float32, seed=9))
    assert not torch.allclose(ours(x, None), other_eps(x, None), **TOL[torch.float32])
    assert not torch.allclose(ours(x, None), other_weight(x, None), **TOL[torch.float32])


def test_norm_sees_weights_reloaded_in_place(fake_npu):
    """Bound once, the kernel reads the live parameter: SGLang reloads weights in place."""
    params = norm_params(torch.float32)
    ours = bind(AscendBackend(), "gemma_rms_norm", params)
    ref = bind(ReferenceBackend(), "gemma_rms_norm", params)
    x, residual = randn(3, HIDDEN, dtype=torch.float32), randn(3, HIDDEN, dtype=torch.float32)
    with torch.no_grad():
        params.weight.mul_(-2.0)
    close(ours(x, residual), ref(x, residual), torch.float32)
    close(ours(x, None), ref(x, None), torch.float32)


# --------------------------------------------------------------------------- rotary


def rope_cache(max_pos: int, rotary_dim: int, dtype: torch.dtype) -> torch.Tensor:
    """SGLang's layout: [max_pos, rotary_dim], cos half then sin half."""
    inv_freq = 1.0 / (10000 ** (torch.arange(0, rotary_dim, 2).float() / rotary_dim))
    freqs = torch.outer(torch.arange(max_pos).float(), inv_freq)
    return torch.cat((freqs.cos(), freqs.sin()), dim=-1).to(dtype)


ROTARY_CASES = [
    # head_size, rotary_dim, q heads, kv heads
    pytest.param(128, 128, 4, 4, id="full-mha"),
    pytest.param(64, 64, 8, 2, id="full-gqa"),
    pytest.param(128, 64, 4, 1, id="partial-mqa"),
    pytest.param(96, 32, 6, 2, id="partial-gqa-head96"),
]


@pytest.mark.parametrize("neox", [True, False], ids=["neox", "interleaved"])
@pytest.mark.parametrize(("head_size", "rotary_dim", "heads", "kv_heads"), ROTARY_CASES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("cache_dtype", ["fp32", "model"])
def test_rotary_matches_reference(fake_npu, dtype, cache_dtype, head_size, rotary_dim, heads,
                                  kv_heads, neox):  # fmt: skip
    cache = rope_cache(512, rotary_dim, torch.float32 if cache_dtype == "fp32" else dtype)
    params = RotaryParams(cos_sin_cache=cache, head_size=head_size, rotary_dim=rotary_dim,
                          is_neox_style=neox, dtype=dtype, device=CPU)  # fmt: skip
    ours, ref = both("rotary_embedding", params)
    positions = torch.tensor([0, 1, 5, 17, 255, 300, 511])
    tokens = positions.shape[0]
    query = randn(tokens, heads * head_size, dtype=dtype, seed=4)
    key = randn(tokens, kv_heads * head_size, dtype=dtype, seed=5)
    q0, k0 = query.clone(), key.clone()

    q_out, k_out = ours(positions, query, key)
    ref_q, ref_k = ref(positions, query, key)

    assert q_out.shape == query.shape and k_out.shape == key.shape
    assert q_out.dtype == dtype and k_out.dtype == dtype
    close(q_out, ref_q, dtype)
    close(k_out, ref_k, dtype)
    assert torch.equal(query, q0) and torch.equal(key, k0)
    assert fake_npu.calls["npu_mrope"] == 1
    if rotary_dim < head_size:  # the tail of every head passes through unchanged
        tail = (..., slice(rotary_dim, None))
        assert torch.equal(q_out.view(tokens, heads, -1)[tail], q0.view(tokens, heads, -1)[tail])


def test_rotary_accepts_3d_query_and_key(fake_npu):
    """The contract allows any shape that views as [tokens, -1, head_size]; shapes come back."""
    params = RotaryParams(cos_sin_cache=rope_cache(64, 64, torch.float32), head_size=64,
                          rotary_dim=64, is_neox_style=True, dtype=torch.float32,
                          device=CPU)  # fmt: skip
    ours, ref = both("rotary_embedding", params)
    positions = torch.tensor([3, 9, 27])
    query, key = randn(3, 4, 64, dtype=torch.float32), randn(3, 2, 64, dtype=torch.float32)
    q_out, k_out = ours(positions, query, key)
    assert q_out.shape == (3, 4, 64) and k_out.shape == (3, 2, 64)
    ref_q, ref_k = ref(positions, query.reshape(3, -1), key.reshape(3, -1))
    close(q_out.reshape(3, -1), ref_q, torch.float32)
    close(k_out.reshape(3, -1), ref_k, torch.float32)


def test_rotary_modes_are_not_interchangeable(fake_npu):
    """Control: neox and interleaved differ on this input, so a swapped mode would fail."""
    common = {"cos_sin_cache": rope_cache(64, 64, torch.float32), "head_size": 64,
              "rotary_dim": 64, "dtype": torch.float32, "device": CPU}  # fmt: skip
    neox = bind(AscendBackend(), "rotary_embedding", RotaryParams(is_neox_style=True, **common))
    gptj = bind(ReferenceBackend(), "rotary_embedding", RotaryParams(is_neox_style=False, **common))
    positions = torch.tensor([1, 2, 40])
    q, k = randn(3, 128, dtype=torch.float32), randn(3, 64, dtype=torch.float32)
    assert not torch.allclose(neox(positions, q, k)[0], gptj(positions, q, k)[0], atol=1e-3)


def test_rotary_cache_is_prepared_once_at_bind(fake_npu, monkeypatch):
    """The cache handed to npu_mrope is the one bind prepared: same tensor every call, in the
    query dtype, never re-cast or re-concatenated per call."""
    seen = []
    real = fake_npu.module.npu_mrope

    def spy(positions, query, key, cache, head_size, **kwargs):
        seen.append(cache)
        return real(positions, query, key, cache, head_size, **kwargs)

    monkeypatch.setattr(fake_npu.module, "npu_mrope", spy)
    params = RotaryParams(cos_sin_cache=rope_cache(64, 64, torch.float32), head_size=64,
                          rotary_dim=64, is_neox_style=True, dtype=torch.bfloat16,
                          device=CPU)  # fmt: skip
    ours = bind(AscendBackend(), "rotary_embedding", params)
    for _ in range(3):
        ours(torch.tensor([1, 2]), randn(2, 64, dtype=torch.bfloat16),
             randn(2, 64, dtype=torch.bfloat16))  # fmt: skip
    assert len(seen) == 3 and all(c is seen[0] for c in seen)
    assert seen[0].dtype == torch.bfloat16 and seen[0].is_contiguous()


# --------------------------------------------------------------------------- supports()


def rotary_params(dtype=torch.bfloat16, rotary_dim=64, head_size=128) -> RotaryParams:
    return RotaryParams(cos_sin_cache=rope_cache(32, rotary_dim, dtype), head_size=head_size,
                        rotary_dim=rotary_dim, is_neox_style=True, dtype=dtype,
                        device=CPU)  # fmt: skip


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        (rotary_params(torch.bfloat16, rotary_dim=16), "multiple of 32 for torch.bfloat16; got 16"),
        (rotary_params(torch.float16, rotary_dim=48), "multiple of 32 for torch.float16; got 48"),
        (rotary_params(torch.float32, rotary_dim=8), "multiple of 16 for torch.float32; got 8"),
        (rotary_params(torch.float64), "not torch.float64"),
    ],
    ids=["bf16-rot16", "fp16-rot48", "fp32-rot8", "fp64"],
)
def test_rotary_refuses_what_npu_mrope_cannot_do(fake_npu, params, reason):
    refusal = AscendBackend().implementations()["rotary_embedding"].supports(params)
    assert refusal is not None and reason in refusal


def test_rotary_fp32_allows_multiples_of_16(fake_npu):
    params = rotary_params(torch.float32, rotary_dim=16, head_size=64)
    assert AscendBackend().implementations()["rotary_embedding"].supports(params) is None


@pytest.mark.parametrize("op", ["rms_norm", "gemma_rms_norm"])
def test_norm_refuses_weight_in_another_dtype(fake_npu, op):
    params = norm_params(torch.bfloat16, weight_dtype=torch.float32)
    refusal = AscendBackend().implementations()[op].supports(params)
    assert refusal is not None and "weight is torch.float32, input is torch.bfloat16" in refusal


def mrope_params(
    dtype=torch.bfloat16,
    rotary_dim=64,
    head_size=128,
    section=(8, 12, 12),
    interleaved=False,
    neox=True,
    cache_dtype=None,
) -> MRotaryParams:
    return MRotaryParams(cos_sin_cache=rope_cache(512, rotary_dim, cache_dtype or dtype),
                         head_size=head_size, rotary_dim=rotary_dim, is_neox_style=neox,
                         mrope_section=section, interleaved=interleaved, dtype=dtype,
                         device=CPU)  # fmt: skip


def layer_norm_params(dtype, compute_dtype, *, weight=True, bias=True, param_dtype=None):
    gen = torch.Generator().manual_seed(7)
    w = (torch.rand(HIDDEN, generator=gen) + 0.5).to(param_dtype or compute_dtype)
    b = torch.randn(HIDDEN, generator=gen).to(param_dtype or compute_dtype)
    return LayerNormParams(weight=w if weight else None, bias=b if bias else None, eps=1e-5,
                           hidden_size=HIDDEN, compute_dtype=compute_dtype, dtype=dtype,
                           device=CPU)  # fmt: skip


def float64_params(op: str):
    """An instance of ``op`` in float64, for every op of the catalogue."""
    activation = ActivationParams(dtype=torch.float64, device=CPU, width=128)
    return {
        SILU_AND_MUL: activation,
        GELU_AND_MUL: ActivationParams(dtype=torch.float64, device=CPU, approximate="tanh"),
        NEW_GELU: activation,
        QUICK_GELU: activation,
        RMS_NORM: norm_params(torch.float64),
        GEMMA_RMS_NORM: norm_params(torch.float64),
        GEMMA3_RMS_NORM: norm_params(torch.float64),
        RMS_NORM_WITHOUT_SCALE: NormParams(None, 1e-6, HIDDEN, torch.float64, CPU),
        LAYER_NORM: layer_norm_params(torch.float64, torch.float64),
        ROTARY_EMBEDDING: rotary_params(torch.float64),
        MROTARY_EMBEDDING: mrope_params(torch.float64),
        DEEPSEEK_SCALING_ROTARY_EMBEDDING: rotary_params(torch.float64),
    }[op]


@pytest.mark.parametrize("op", OP_NAMES)
def test_every_op_refuses_float64(fake_npu, op):
    refusal = AscendBackend().implementations()[op].supports(float64_params(op))
    assert refusal is not None and "torch.float64" in refusal


@pytest.mark.parametrize(
    ("op", "kernel", "params"),
    [
        ("silu_and_mul", "npu_swiglu", ActivationParams(dtype=torch.float16, device=CPU)),
        ("rms_norm", "npu_add_rms_norm", norm_params(torch.float16)),
        ("gemma_rms_norm", "npu_gemma_rms_norm", norm_params(torch.float16)),
        ("rotary_embedding", "npu_mrope", rotary_params(torch.float16)),
        (GELU_AND_MUL, "npu_geglu", ActivationParams(dtype=torch.float16, device=CPU)),
        (NEW_GELU, "npu_gelu", ActivationParams(dtype=torch.float16, device=CPU)),
        (QUICK_GELU, "npu_fast_gelu", ActivationParams(dtype=torch.float16, device=CPU)),
        (GEMMA3_RMS_NORM, "npu_gemma_rms_norm", norm_params(torch.float16)),
        (RMS_NORM_WITHOUT_SCALE, "npu_rms_norm", NormParams(None, 1e-6, 8, torch.float16, CPU)),
        (LAYER_NORM, "npu_layer_norm_eval", layer_norm_params(torch.float16, torch.float32)),
        (MROTARY_EMBEDDING, "npu_mrope", mrope_params(torch.float16)),
        (DEEPSEEK_SCALING_ROTARY_EMBEDDING, "npu_mrope", rotary_params(torch.float16)),
    ],
)
def test_older_torch_npu_without_the_kernel_is_refused(fake_npu, op, kernel, params):
    fake_npu.without(kernel)
    refusal = AscendBackend().implementations()[op].supports(params)
    assert refusal == f"torch_npu 2.13.0+fake has no public {kernel}"


# --------------------------------------------------------------------------- gelus

ACTIVATION_SHAPES = [
    pytest.param((7, 2 * HIDDEN), False, id="2d"),
    pytest.param((2, 3, 2 * 48), False, id="3d"),
    pytest.param((5, 2 * 40), True, id="strided"),
]


def activation_input(shape, strided, dtype, seed=0):
    if not strided:
        return randn(*shape, dtype=dtype, seed=seed) * 2
    *lead, last = shape
    return (randn(*lead, last + 16, dtype=dtype, seed=seed) * 2)[..., 5 : 5 + last]


@pytest.mark.parametrize("approximate", ["tanh", "none"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("shape", "strided"), ACTIVATION_SHAPES)
def test_gelu_and_mul_geglu_matches_reference(fake_npu, approximate, dtype, shape, strided):
    params = ActivationParams(dtype=dtype, device=CPU, width=shape[-1], approximate=approximate)
    ours, ref = both(GELU_AND_MUL, params)
    x = activation_input(shape, strided, dtype)
    x0 = x.clone()
    out = ours(x)
    assert out.dtype == dtype and out.shape == (*shape[:-1], shape[-1] // 2)
    close(out, ref(x), dtype)
    assert torch.equal(x, x0)
    assert fake_npu.calls["npu_geglu"] == 1


def test_gelu_and_mul_activates_the_first_half_with_the_instances_approximation(
    fake_npu, monkeypatch
):
    """Controls: npu_geglu's default (activate_left=False) gelus the other half, and tanh and
    erf differ on this input; our call passes activate_left=True and the right index."""
    seen = []
    real = fake_npu.module.npu_geglu

    def spy(x, **kwargs):
        seen.append(kwargs)
        return real(x, **kwargs)

    monkeypatch.setattr(fake_npu.module, "npu_geglu", spy)
    x = randn(4, 2 * HIDDEN, dtype=torch.float32) * 3
    for approximate, index in (("tanh", 1), ("none", 0)):
        ours = bind(AscendBackend(), GELU_AND_MUL,
                    ActivationParams(torch.float32, CPU, approximate=approximate))  # fmt: skip
        out = ours(x)
        assert seen[-1] == {"dim": -1, "approximate": index, "activate_left": True}
        assert not torch.allclose(out, real(x, dim=-1, approximate=index)[0], atol=1e-3)
        other = "none" if approximate == "tanh" else "tanh"
        ref_other = bind(ReferenceBackend(), GELU_AND_MUL,
                         ActivationParams(torch.float32, CPU, approximate=other))  # fmt: skip
        assert not torch.allclose(out, ref_other(x), atol=1e-5)


@pytest.mark.parametrize(("op", "kernel"), [(NEW_GELU, "npu_gelu"), (QUICK_GELU, "npu_fast_gelu")])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("shape", "strided"), ACTIVATION_SHAPES)
def test_elementwise_gelus_match_reference(fake_npu, op, kernel, dtype, shape, strided):
    ours, ref = both(op, ActivationParams(dtype=dtype, device=CPU, width=shape[-1]))
    x = activation_input(shape, strided, dtype, seed=3)
    x0 = x.clone()
    out = ours(x)
    assert out.dtype == dtype and out.shape == x.shape
    close(out, ref(x), dtype)
    assert torch.equal(x, x0)
    assert fake_npu.calls[kernel] == 1


def test_new_gelu_is_the_tanh_approximation(fake_npu):
    """Control: npu_gelu's default (erf) differs on this input, so a missing approximate="tanh"
    would fail the comparison above."""
    ours = bind(AscendBackend(), NEW_GELU, ActivationParams(torch.float32, CPU))
    x = torch.linspace(-4, 4, 101)
    assert not torch.allclose(ours(x), fake_npu.module.npu_gelu(x), atol=1e-5)
    close(ours(x), torch.nn.functional.gelu(x, approximate="tanh"), torch.float32)


# ------------------------------------------------------------- gemma3, unscaled, layer norm


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("with_residual", [False, True], ids=["plain", "residual"])
@pytest.mark.parametrize("three_d", [False, True], ids=["2d", "per-head-3d"])
def test_gemma3_rms_norm_matches_reference(fake_npu, dtype, with_residual, three_d):
    """Gemma 3's decoder norms (2-D, with a residual on SGLang 0.5.21+) and its q/k norms
    ([tokens, heads, head_dim], a strided view of the projection)."""
    params = norm_params(dtype)
    ours, ref = both(GEMMA3_RMS_NORM, params)
    if three_d:
        wide = randn(5, 3 * HIDDEN + 8, dtype=dtype, seed=2)
        x = wide[:, : 3 * HIDDEN].unflatten(-1, (3, HIDDEN))
    else:
        x = randn(6, HIDDEN, dtype=dtype, seed=2)
    residual = randn(*x.shape, dtype=dtype, seed=3) if with_residual else None
    x0 = x.clone()
    out = ours(x, residual)
    expected = ref(x, residual)
    if with_residual:
        close(out[0], expected[0], dtype)
        close(out[1], expected[1], dtype)
    else:
        assert out.shape == x.shape
        close(out, expected, dtype)
    assert torch.equal(x, x0)
    assert fake_npu.calls["npu_gemma_rms_norm"] == 1


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(5, HIDDEN), (4, 3, HIDDEN)], ids=["2d", "3d"])
def test_rms_norm_without_scale_is_npu_rms_norm_with_ones(fake_npu, monkeypatch, dtype, shape):
    gammas = []
    real = fake_npu.module.npu_rms_norm

    def spy(x, gamma, epsilon):
        gammas.append(gamma)
        return real(x, gamma, epsilon)

    monkeypatch.setattr(fake_npu.module, "npu_rms_norm", spy)
    params = NormParams(None, 1e-5, HIDDEN, dtype, CPU)
    ours, ref = both(RMS_NORM_WITHOUT_SCALE, params)
    for seed in (1, 2):
        x = randn(*shape, dtype=dtype, seed=seed) * 3
        out = ours(x, None)
        assert out.shape == x.shape and out.dtype == dtype
        close(out, ref(x, None), dtype)
    # one gamma of ones in the input dtype, made at bind and reused
    assert len(gammas) == 2 and gammas[0] is gammas[1]
    assert gammas[0].dtype == dtype and torch.equal(gammas[0], torch.ones(HIDDEN, dtype=dtype))


LAYER_NORM_CASES = [
    pytest.param(torch.bfloat16, torch.float32, True, True, id="bf16-in-fp32-params"),
    pytest.param(torch.float16, torch.float32, True, False, id="fp16-in-fp32-weight-only"),
    pytest.param(torch.bfloat16, torch.float32, False, False, id="bf16-in-no-affine"),
    pytest.param(torch.bfloat16, torch.bfloat16, True, True, id="bf16-in-bf16-params"),
    pytest.param(torch.float32, torch.float32, True, True, id="fp32"),
]


@pytest.mark.parametrize(("dtype", "compute", "weight", "bias"), LAYER_NORM_CASES)
@pytest.mark.parametrize("shape", [(6, HIDDEN), (2, 3, HIDDEN)], ids=["2d", "3d"])
def test_layer_norm_matches_reference(fake_npu, dtype, compute, weight, bias, shape):
    params = layer_norm_params(dtype, compute, weight=weight, bias=bias)
    ours, ref = both(LAYER_NORM, params)
    x = randn(*shape, dtype=dtype, seed=4) * 2 + 1
    x0 = x.clone()
    out = ours(x)
    assert out.shape == x.shape and out.dtype == dtype
    close(out, ref(x), dtype)
    assert torch.equal(x, x0)
    assert fake_npu.calls["npu_layer_norm_eval"] == 1


def test_layer_norm_computes_in_the_parameters_dtype(fake_npu, monkeypatch):
    """SGLang's LayerNorm normalises in its parameters' dtype: a bf16 input reaches the kernel
    as fp32 when the parameters are fp32, with the live weight and bias."""
    seen = []
    real = fake_npu.module.npu_layer_norm_eval

    def spy(x, shape, weight=None, bias=None, eps=1e-5):
        seen.append((x.dtype, list(shape), weight, bias, eps))
        return real(x, shape, weight=weight, bias=bias, eps=eps)

    monkeypatch.setattr(fake_npu.module, "npu_layer_norm_eval", spy)
    params = layer_norm_params(torch.bfloat16, torch.float32)
    ours = bind(AscendBackend(), LAYER_NORM, params)
    assert ours(randn(3, HIDDEN, dtype=torch.bfloat16)).dtype == torch.bfloat16
    assert seen == [(torch.float32, [HIDDEN], params.weight, params.bias, 1e-5)]


def test_layer_norm_refuses_parameters_in_another_dtype(fake_npu):
    params = layer_norm_params(torch.bfloat16, torch.float32, param_dtype=torch.bfloat16)
    refusal = AscendBackend().implementations()[LAYER_NORM].supports(params)
    assert refusal == (
        "npu_layer_norm_eval needs the weight in the compute dtype torch.float32; it is "
        "torch.bfloat16"
    )


# --------------------------------------------------------------------------- mrope, DeepSeek


def mrope_positions(tokens: int, max_pos: int = 512) -> torch.Tensor:
    """[3, T] t/h/w positions that differ per row (a vision block: t constant, h and w a grid)."""
    gen = torch.Generator().manual_seed(tokens)
    t = torch.full((tokens,), 7)
    h = torch.randint(0, max_pos, (tokens,), generator=gen)
    w = torch.randint(0, max_pos, (tokens,), generator=gen)
    return torch.stack((t, h, w))


MROPE_CASES = [
    # head_size, rotary_dim, section, q heads, kv heads
    pytest.param(128, 128, (16, 24, 24), 7, 1, id="qwen2.5-vl-sections"),
    pytest.param(64, 64, (8, 12, 12), 4, 2, id="small"),
    pytest.param(128, 64, (16, 8, 8), 2, 1, id="partial"),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("head_size", "rotary_dim", "section", "heads", "kv_heads"), MROPE_CASES)
@pytest.mark.parametrize("neox", [True, False], ids=["neox", "interleave"])
@pytest.mark.parametrize("positions_dim", [2, 1], ids=["3xT", "T"])
def test_mrotary_matches_reference(fake_npu, monkeypatch, dtype, head_size, rotary_dim, section,
                                   heads, kv_heads, neox, positions_dim):  # fmt: skip
    sections = []
    real = fake_npu.module.npu_mrope

    def spy(*args, mrope_section, **kwargs):
        sections.append(mrope_section)
        return real(*args, mrope_section=mrope_section, **kwargs)

    monkeypatch.setattr(fake_npu.module, "npu_mrope", spy)
    params = mrope_params(dtype, rotary_dim, head_size, section, neox=neox,
                          cache_dtype=torch.float32)  # fmt: skip
    ours, ref = both(MROTARY_EMBEDDING, params)
    positions = mrope_positions(6) if positions_dim == 2 else torch.tensor([0, 1, 5, 17, 255, 511])
    qkv = randn(6, (heads + 2 * kv_heads) * head_size, dtype=dtype, seed=5)
    query = qkv[:, : heads * head_size]
    key = qkv[:, heads * head_size : (heads + kv_heads) * head_size]
    qkv0 = qkv.clone()
    q_out, k_out = ours(positions, query, key)
    ref_q, ref_k = ref(positions, query, key)
    assert q_out.shape == query.shape and k_out.shape == key.shape
    close(q_out, ref_q, dtype)
    close(k_out, ref_k, dtype)
    assert torch.equal(qkv, qkv0)
    assert sections == [list(section) if positions_dim == 2 else [0, 0, 0]]


def test_mrotary_sections_matter(fake_npu):
    """Control: with h and w positions unlike t, mrope differs from rope at the t positions,
    so passing [0, 0, 0] (SGLang 0.5.15-0.5.22's call) would not match the reference."""
    params = mrope_params(torch.float32, 64, 64, (8, 12, 12), cache_dtype=torch.float32)
    ours, ref = both(MROTARY_EMBEDDING, params)
    positions = mrope_positions(5)
    q, k = randn(5, 2 * 64, dtype=torch.float32), randn(5, 64, dtype=torch.float32, seed=1)
    mrope = ours(positions, q, k)
    close(mrope[0], ref(positions, q, k)[0], torch.float32)
    assert not torch.allclose(mrope[0], ours(positions[0], q, k)[0], atol=1e-3)


def test_mrotary_without_sections_takes_text_positions(fake_npu):
    params = mrope_params(torch.bfloat16, section=None)
    ours, ref = both(MROTARY_EMBEDDING, params)
    positions = torch.tensor([3, 9, 27])
    q, k = randn(3, 2 * 128, dtype=torch.bfloat16), randn(3, 128, dtype=torch.bfloat16, seed=1)
    for got, expected in zip(ours(positions, q, k), ref(positions, q, k), strict=True):
        close(got, expected, torch.bfloat16)


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        (mrope_params(section=(24, 20, 20), rotary_dim=128, interleaved=True),
         "Qwen3-VL's interleaved layout is none of its modes"),
        (mrope_params(section=(8, 8, 8)),
         "sections to sum to rotary_dim / 2 = 32; got [8, 8, 8]"),
        (mrope_params(rotary_dim=48, section=(8, 8, 8)), "multiple of 32 for torch.bfloat16"),
    ],
    ids=["interleaved", "bad-sum", "rotary-dim"],
)  # fmt: skip
def test_mrotary_refuses_what_npu_mrope_does_not_document(fake_npu, params, reason):
    refusal = AscendBackend().implementations()[MROTARY_EMBEDDING].supports(params)
    assert refusal is not None and reason in refusal


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("neox", [False, True], ids=["interleave", "neox"])
def test_deepseek_rope_mla_layout_matches_reference(fake_npu, dtype, neox):
    """MLA: q_pe [T, 16, 64] and k_pe [T, 1, 64] sliced out of wider tensors, the mscale'd
    cache in fp32 (reference: computed in fp32, rounded once; ours: the cache cast to the
    query dtype at bind, as npu_mrope takes it)."""
    cache = rope_cache(512, 64, torch.float32) * 1.2
    params = RotaryParams(cos_sin_cache=cache, head_size=64, rotary_dim=64, is_neox_style=neox,
                          dtype=dtype, device=CPU)  # fmt: skip
    ours, ref = both(DEEPSEEK_SCALING_ROTARY_EMBEDDING, params)
    positions = torch.tensor([0, 1, 5, 17, 255, 300, 511])
    q_full = randn(7, 16, 128 + 64, dtype=dtype, seed=6)
    latent = randn(7, 1, 512 + 64, dtype=dtype, seed=7)
    q_pe, k_pe = q_full[..., 128:], latent[..., 512:]
    q_out, k_out = ours(positions, q_pe, k_pe)
    ref_q, ref_k = ref(positions, q_pe, k_pe)
    assert q_out.shape == (7, 16, 64) and k_out.shape == (7, 1, 64)
    close(q_out, ref_q, dtype)
    close(k_out, ref_k, dtype)
    assert fake_npu.calls["npu_mrope"] == 1


# --------------------------------------------------------------------------- the fakes themselves


def test_fake_kernels_follow_their_documented_formulas(fake_npu):
    """Hand-computed cases keep the fakes honest (they are the yardstick above)."""
    tnpu = fake_npu.module
    x = torch.tensor([[3.0, 4.0]])
    y, rstd = tnpu.npu_rms_norm(x, torch.tensor([1.0, 2.0]), 0.0)
    torch.testing.assert_close(y, torch.tensor([[3.0, 8.0]]) / (12.5**0.5))
    assert rstd.shape == (1, 1) and rstd.dtype == torch.float32
    y, _, summed = tnpu.npu_add_rms_norm(x, x, torch.tensor([1.0, 1.0]), 0.0)
    torch.testing.assert_close(summed, 2 * x)
    torch.testing.assert_close(y, torch.tensor([[6.0, 8.0]]) / 50**0.5)
    y, _ = tnpu.npu_gemma_rms_norm(x, torch.tensor([0.0, 1.0]), 0.0)
    torch.testing.assert_close(y, torch.tensor([[3.0, 8.0]]) / (12.5**0.5))
    gated = tnpu.npu_swiglu(torch.tensor([[0.0, 2.0, 5.0, 7.0]]))
    expected = 2 * torch.sigmoid(torch.tensor(2.0)) * 7  # silu(0) * 5 = 0, silu(2) * 7
    torch.testing.assert_close(gated, torch.tensor([[0.0, expected]]))
    # one head of 16 (the smallest fp32 rotary_dim the kernel takes), one nonzero element
    angle = 0.5
    cache = torch.zeros(2, 16)
    cache[1, :8], cache[1, 8:] = math.cos(angle), math.sin(angle)  # every pair turns 0.5 rad
    q = torch.zeros(1, 16)
    q[0, 0] = 1.0  # neox: pairs (i, i+8); interleaved: pairs (2i, 2i+1)
    half, _ = tnpu.npu_mrope(torch.tensor([1]), q, q.clone(), cache, 16, rotary_mode="half")
    inter, _ = tnpu.npu_mrope(torch.tensor([1]), q, q.clone(), cache, 16, rotary_mode="interleave")
    expected = {0: math.cos(angle), 8: math.sin(angle)}
    assert {i: v for i, v in enumerate(half[0].tolist()) if v} == pytest.approx(expected)
    expected = {0: math.cos(angle), 1: math.sin(angle)}
    assert {i: v for i, v in enumerate(inter[0].tolist()) if v} == pytest.approx(expected)


def test_fake_kernels_enforce_their_documented_constraints(fake_npu):
    tnpu = fake_npu.module
    with pytest.raises(RuntimeError, match="gamma dtype"):
        tnpu.npu_rms_norm(torch.ones(2, 4, dtype=torch.bfloat16), torch.ones(4))
    with pytest.raises(RuntimeError, match="2-D only"):
        tnpu.npu_mrope(torch.tensor([0]), torch.ones(1, 2, 32), torch.ones(1, 32),
                       torch.ones(4, 32), 32)  # fmt: skip
    with pytest.raises(RuntimeError, match="beyond maxSeqLen"):
        tnpu.npu_mrope(torch.tensor([4]), torch.ones(1, 32), torch.ones(1, 32),
                       torch.ones(4, 32), 32)  # fmt: skip
    with pytest.raises(RuntimeError, match="dtypes differ"):
        tnpu.npu_mrope(torch.tensor([0]), torch.ones(1, 32, dtype=torch.bfloat16),
                       torch.ones(1, 32, dtype=torch.bfloat16), torch.ones(4, 32), 32)  # fmt: skip


def test_fakes_of_the_newer_ops_follow_their_documented_formulas(fake_npu):
    """Hand-computed cases for the gelus, the layer norm and npu_mrope's mrope mode."""
    tnpu = fake_npu.module
    quick = tnpu.npu_fast_gelu(torch.tensor([0.0, 1.0, -1.0]))
    torch.testing.assert_close(quick, torch.tensor([0.0, 1 / (1 + math.exp(-1.702)),
                                                    -1 / (1 + math.exp(1.702))]))  # fmt: skip
    erf1 = 0.5 * (1 + math.erf(1 / math.sqrt(2)))  # gelu(1), erf form
    tanh1 = 0.5 * (1 + math.tanh(math.sqrt(2 / math.pi) * 1.044715))  # gelu(1), tanh form
    torch.testing.assert_close(tnpu.npu_gelu(torch.tensor([1.0]), approximate="tanh"),
                               torch.tensor([tanh1]))  # fmt: skip
    torch.testing.assert_close(tnpu.npu_gelu(torch.tensor([1.0])), torch.tensor([erf1]))
    x = torch.tensor([[1.0, 3.0]])  # halves: 1 | 3
    out, gelu = tnpu.npu_geglu(x, dim=-1, approximate=0, activate_left=True)
    torch.testing.assert_close((out, gelu), (torch.tensor([[3 * erf1]]), torch.tensor([[erf1]])))
    out, _ = tnpu.npu_geglu(x, dim=-1, approximate=1, activate_left=True)
    torch.testing.assert_close(out, torch.tensor([[3 * tanh1]]))
    out, gelu = tnpu.npu_geglu(x, dim=-1, approximate=0)  # default: the right half is gelu'd
    assert gelu.item() == pytest.approx(3 * 0.5 * (1 + math.erf(3 / math.sqrt(2))), rel=1e-6)
    assert out.item() == pytest.approx(gelu.item(), rel=1e-6)
    normed = tnpu.npu_layer_norm_eval(torch.tensor([[1.0, 2.0, 3.0, 4.0]]), [4],
                                      torch.full((4,), 2.0), torch.ones(4), eps=0.0)  # fmt: skip
    expected = torch.tensor([[-1.5, -0.5, 0.5, 1.5]]) / math.sqrt(1.25) * 2 + 1
    torch.testing.assert_close(normed, expected)
    # mrope mode, one neox head of 16: sections [2, 3, 3] over 8 frequencies; the cache turns
    # every pair of row p by p / 2 rad; t = 0, h = 1, w = 2, so the frequencies turn by
    # 0 (t), 0.5 (h) and 1.0 (w) rad
    cache = torch.zeros(3, 16)
    for p in range(3):
        cache[p, :8], cache[p, 8:] = math.cos(p / 2), math.sin(p / 2)
    q = torch.zeros(1, 16)
    q[0, :8] = 1.0
    positions = torch.tensor([[0], [1], [2]])
    out, _ = tnpu.npu_mrope(positions, q, q.clone(), cache, 16, mrope_section=[2, 3, 3])
    angles = [0.0] * 2 + [0.5] * 3 + [1.0] * 3
    expected = torch.tensor([[*map(math.cos, angles), *map(math.sin, angles)]])
    torch.testing.assert_close(out, expected)


def test_fakes_of_the_newer_ops_enforce_their_documented_constraints(fake_npu):
    tnpu = fake_npu.module
    with pytest.raises(RuntimeError, match="approximate must be 0 or 1"):
        tnpu.npu_geglu(torch.ones(2, 4), approximate=2)
    with pytest.raises(RuntimeError, match="split dim must be even"):
        tnpu.npu_geglu(torch.ones(2, 3))
    with pytest.raises(RuntimeError, match=r"weight dtype torch\.float32 differs"):
        tnpu.npu_layer_norm_eval(torch.ones(2, 4, dtype=torch.bfloat16), [4], torch.ones(4))
    with pytest.raises(RuntimeError, match=r"sum\(mrope_section\) == rotary_dim / 2"):
        tnpu.npu_mrope(torch.zeros(3, 1, dtype=torch.long), torch.ones(1, 32), torch.ones(1, 32),
                       torch.ones(4, 32), 32, mrope_section=[8, 4, 8])  # fmt: skip
    with pytest.raises(RuntimeError, match="1-D positions are rope mode"):
        tnpu.npu_mrope(torch.zeros(1, dtype=torch.long), torch.ones(1, 32), torch.ones(1, 32),
                       torch.ones(4, 32), 32, mrope_section=[8, 4, 4])  # fmt: skip
