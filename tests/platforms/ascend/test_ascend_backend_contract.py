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
from sglang_fl.ops.catalog import OP_NAMES
from sglang_fl.ops.params import ActivationParams, NormParams, RotaryParams

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


@pytest.mark.parametrize("op", OP_NAMES)
def test_every_op_refuses_float64(fake_npu, op):
    params = {
        "silu_and_mul": ActivationParams(dtype=torch.float64, device=CPU),
        "rms_norm": norm_params(torch.float64),
        "gemma_rms_norm": norm_params(torch.float64),
        "rotary_embedding": rotary_params(torch.float64),
    }[op]
    refusal = AscendBackend().implementations()[op].supports(params)
    assert refusal is not None and "torch.float64" in refusal


@pytest.mark.parametrize(
    ("op", "kernel", "params"),
    [
        ("silu_and_mul", "npu_swiglu", ActivationParams(dtype=torch.float16, device=CPU)),
        ("rms_norm", "npu_add_rms_norm", norm_params(torch.float16)),
        ("gemma_rms_norm", "npu_gemma_rms_norm", norm_params(torch.float16)),
        ("rotary_embedding", "npu_mrope", rotary_params(torch.float16)),
    ],
)
def test_older_torch_npu_without_the_kernel_is_refused(fake_npu, op, kernel, params):
    fake_npu.without(kernel)
    refusal = AscendBackend().implementations()[op].supports(params)
    assert refusal == f"torch_npu 2.13.0+fake has no public {kernel}"


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
