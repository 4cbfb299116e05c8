"""The reference backend's kernels against independent float64 formulas (no SGLang needed).

Every expected value here is computed from the *same* (already rounded) inputs upcast to
float64, with formulas written differently from ``sglang_fl/backends/reference/math.py``
(explicit division/sqrt, per-pair loops, complex multiplication), and the kernels are called
through the backend's public contract: ``ReferenceBackend().implementations()[op].bind(params)``.

Tolerances (u = unit roundoff of the dtype: fp32 2**-24, bf16 2**-8, fp16 2**-11):

* Norms compute in fp32 and round once to the input dtype at the end, so the error is at most
  ~u of the result plus fp32 noise (~1e-6 relative, negligible for bf16/fp16).
  fp32: rtol 1e-5; bf16/fp16: rtol 2u (one rounding, times a 2x margin for the fp32 noise
  that can push a value across a rounding boundary).
* SiLU-and-mul computes in the input dtype: silu(a) is rounded once (or twice if a backend
  forms x * sigmoid(x) with a rounded sigmoid), the product once more, so <= 3u; we allow 4u
  (fp32: 1e-5).
* Rotary computes in the input dtype: cos/sin are rounded to the dtype (u each), both
  products (u each) and the sum/difference (u of the result). Cancellation makes a
  *relative* bound meaningless, so each output element of a pair (x1, x2) is checked against
  the absolute bound 4u * (|x1| + |x2|), derived from the rounding model
  |err| <= (2u + u^2)(|x1 cos| + |x2 sin|) + u |result| <= 3u (|x1| + |x2|) (+ a margin).
  Elements outside rotary_dim must pass through bit-for-bit.
* Residual sums returned by the norms are compared for exact equality with the float64 sum
  rounded to the dtype: the sum of two fp32 values is exact in float64, and for bf16/fp16 the
  kernels' fp32 (or in-dtype, which CPU torch evaluates in fp32) add of two values is exact
  in fp32 for these inputs, so both sides are the correctly rounded sum.
"""

from __future__ import annotations

import pytest
import torch

from sglang_fl.backends.reference import ReferenceBackend
from sglang_fl.dispatch.backend import ImplKind
from sglang_fl.ops.catalog import OP_NAMES
from sglang_fl.ops.params import ActivationParams, NormParams, RotaryParams

CPU = torch.device("cpu")
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
UNIT_ROUNDOFF = {torch.float32: 2.0**-24, torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}
NORM_RTOL = {torch.float32: 1e-5, torch.bfloat16: 2 * 2.0**-8, torch.float16: 2 * 2.0**-11}
SILU_RTOL = {torch.float32: 1e-5, torch.bfloat16: 4 * 2.0**-8, torch.float16: 4 * 2.0**-11}
# Absolute floor for values that round to (near) zero; far below every dtype's resolution at
# the magnitudes used here (inputs are ~N(0, 1)), fp16 subnormal spacing is ~6e-8.
ATOL = 1e-6


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int, dtype=torch.float32, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    """Seeded N(0, scale^2) data, drawn in float64 and rounded to ``dtype`` (never zeros)."""
    return (torch.randn(*shape, generator=_gen(seed), dtype=torch.float64) * scale).to(dtype)


def _snapshot(*tensors: torch.Tensor | None) -> list[torch.Tensor | None]:
    return [None if t is None else t.clone() for t in tensors]


def _assert_unchanged(tensors, snapshots) -> None:
    for t, snap in zip(tensors, snapshots, strict=True):
        if t is None:
            continue
        assert t.dtype == snap.dtype and t.shape == snap.shape
        assert torch.equal(t, snap), "kernel mutated an input tensor"


def _bind(op: str, params):
    return ReferenceBackend().implementations()[op].bind(params)


def _silu_and_mul(dtype):
    return _bind("silu_and_mul", ActivationParams(dtype=dtype, device=CPU))


def _norm(op: str, weight: torch.Tensor, eps: float, dtype):
    params = NormParams(
        weight=weight, eps=eps, hidden_size=weight.shape[-1], dtype=dtype, device=CPU
    )
    return _bind(op, params)


# --------------------------------------------------------------------------- backend shape


def test_backend_declares_all_ops_as_pure_reference_impls():
    backend = ReferenceBackend()
    assert backend.kind is ImplKind.REFERENCE
    assert backend.impl_id == "reference"
    assert backend.priority == 50
    assert backend.availability().ok
    impls = backend.implementations()
    assert set(impls) == set(OP_NAMES)
    for impl in impls.values():
        assert impl.mutates_inputs is False
        assert impl.supports(object()) is None


# --------------------------------------------------------------------------- silu_and_mul


def _silu_and_mul_ref(x: torch.Tensor) -> torch.Tensor:
    """float64: gate / (1 + e^-gate) * up, with gate = first half, up = second half."""
    x64 = x.double()
    d = x64.shape[-1] // 2
    gate, up = x64.narrow(-1, 0, d), x64.narrow(-1, d, d)
    return gate / (1.0 + torch.exp(-gate)) * up


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    "shape",
    [(7, 2 * 64), (1, 2 * 11), (5, 2 * 33), (3, 2 * 4095), (2, 3, 2 * 17)],
    ids=["d64", "one_token", "odd_d33", "odd_d4095", "3d"],
)
def test_silu_and_mul_matches_formula(shape, dtype):
    x = _randn(*shape, dtype=dtype, seed=1, scale=2.0)
    before = _snapshot(x)
    out = _silu_and_mul(dtype)(x)
    _assert_unchanged([x], before)
    assert out.dtype == dtype
    assert out.shape == (*shape[:-1], shape[-1] // 2)
    torch.testing.assert_close(out.double(), _silu_and_mul_ref(x), rtol=SILU_RTOL[dtype], atol=ATOL)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_silu_and_mul_zero_tokens(dtype):
    x = _randn(0, 2 * 9, dtype=dtype)
    out = _silu_and_mul(dtype)(x)
    assert out.shape == (0, 9) and out.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_silu_and_mul_non_contiguous(dtype):
    wide = _randn(6, 2 * 21 + 5, dtype=dtype, seed=2)
    sliced = wide[:, 3 : 3 + 2 * 21]  # row stride != last-dim size
    transposed = _randn(2 * 21, 6, dtype=dtype, seed=3).t()
    for x in (sliced, transposed):
        assert not x.is_contiguous()
        before = _snapshot(wide, x)
        out = _silu_and_mul(dtype)(x)
        _assert_unchanged([wide, x], before)
        torch.testing.assert_close(
            out.double(), _silu_and_mul_ref(x), rtol=SILU_RTOL[dtype], atol=ATOL
        )


# --------------------------------------------------------------------------- norms


def _rms_ref(h64: torch.Tensor, scale64: torch.Tensor, eps: float) -> torch.Tensor:
    """float64: h / sqrt(mean(h^2) + eps) * scale."""
    ms = (h64 * h64).sum(dim=-1, keepdim=True) / h64.shape[-1]
    return h64 / torch.sqrt(ms + eps) * scale64


NORM_SHAPES = [(4, 128), (1, 64), (3, 33), (2, 4095), (2, 3, 48)]
NORM_IDS = ["h128", "one_token", "odd_h33", "odd_h4095", "3d"]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", NORM_SHAPES, ids=NORM_IDS)
@pytest.mark.parametrize("weight_fp32", [True, False], ids=["w_fp32", "w_xdtype"])
def test_rms_norm_without_residual(shape, dtype, weight_fp32):
    hidden = shape[-1]
    x = _randn(*shape, dtype=dtype, seed=10, scale=3.0)
    weight = _randn(hidden, dtype=torch.float32 if weight_fp32 else dtype, seed=11)
    eps = 1e-6
    before = _snapshot(x, weight)
    out = _norm("rms_norm", weight, eps, dtype)(x, None)
    _assert_unchanged([x, weight], before)
    assert isinstance(out, torch.Tensor)
    assert out.dtype == dtype and out.shape == x.shape
    expected = _rms_ref(x.double(), weight.double(), eps)
    torch.testing.assert_close(out.double(), expected, rtol=NORM_RTOL[dtype], atol=ATOL)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", NORM_SHAPES, ids=NORM_IDS)
def test_rms_norm_with_residual(shape, dtype):
    hidden = shape[-1]
    x = _randn(*shape, dtype=dtype, seed=20)
    residual = _randn(*shape, dtype=dtype, seed=21, scale=2.0)
    weight = _randn(hidden, dtype=dtype, seed=22)
    eps = 1e-5
    before = _snapshot(x, residual, weight)
    result = _norm("rms_norm", weight, eps, dtype)(x, residual)
    _assert_unchanged([x, residual, weight], before)
    assert isinstance(result, tuple) and len(result) == 2
    out, new_residual = result
    assert out.dtype == dtype and new_residual.dtype == dtype
    assert out.shape == x.shape and new_residual.shape == x.shape
    sum64 = x.double() + residual.double()  # exact: RMSNorm adds in fp32, not in the dtype
    assert torch.equal(new_residual, sum64.to(dtype))
    expected = _rms_ref(sum64, weight.double(), eps)
    torch.testing.assert_close(out.double(), expected, rtol=NORM_RTOL[dtype], atol=ATOL)


def test_rms_norm_residual_add_is_done_in_fp32():
    """bf16: 256 + 1 is not representable (rounds to 256), but RMSNorm normalises 257.

    The outputs at the other positions tell the two apart: their value is h / rms(h).
    """
    hidden = 64
    x = torch.full((1, hidden), 0.5, dtype=torch.bfloat16)
    x[0, : hidden // 2] = 256.0
    residual = torch.full((1, hidden), 0.25, dtype=torch.bfloat16)
    residual[0, : hidden // 2] = 1.0
    weight = torch.full((hidden,), 64.0, dtype=torch.float32)
    out, new_residual = _norm("rms_norm", weight, 1e-6, torch.bfloat16)(x, residual)
    assert new_residual[0, 0].item() == 256.0  # the returned residual is in bf16
    fp32_sum = x.double() + residual.double()
    bf16_sum = (x + residual).double()
    want = _rms_ref(fp32_sum, weight.double(), 1e-6)[0, -1].item()
    other = _rms_ref(bf16_sum, weight.double(), 1e-6)[0, -1].item()
    got = out[0, -1].item()
    assert want != other
    assert abs(got - want) <= abs(want) * 2.0**-8
    assert torch.tensor(other, dtype=torch.bfloat16).item() != got


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", NORM_SHAPES, ids=NORM_IDS)
def test_gemma_rms_norm_without_residual(shape, dtype):
    hidden = shape[-1]
    x = _randn(*shape, dtype=dtype, seed=30, scale=0.5)
    weight = _randn(hidden, dtype=dtype, seed=31, scale=0.5)
    eps = 1e-6
    before = _snapshot(x, weight)
    out = _norm("gemma_rms_norm", weight, eps, dtype)(x, None)
    _assert_unchanged([x, weight], before)
    assert isinstance(out, torch.Tensor)
    assert out.dtype == dtype and out.shape == x.shape
    expected = _rms_ref(x.double(), 1.0 + weight.double(), eps)
    torch.testing.assert_close(out.double(), expected, rtol=NORM_RTOL[dtype], atol=ATOL)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", NORM_SHAPES, ids=NORM_IDS)
def test_gemma_rms_norm_with_residual(shape, dtype):
    hidden = shape[-1]
    x = _randn(*shape, dtype=dtype, seed=40)
    residual = _randn(*shape, dtype=dtype, seed=41, scale=3.0)
    weight = _randn(hidden, dtype=torch.float32, seed=42, scale=0.5)
    eps = 1e-6
    before = _snapshot(x, residual, weight)
    result = _norm("gemma_rms_norm", weight, eps, dtype)(x, residual)
    _assert_unchanged([x, residual, weight], before)
    assert isinstance(result, tuple) and len(result) == 2
    out, new_residual = result
    assert out.dtype == dtype and new_residual.dtype == dtype
    # Gemma adds in the input dtype: the residual is the rounded sum, and *that* is normalised.
    rounded_sum = (x.double() + residual.double()).to(dtype)
    assert torch.equal(new_residual, rounded_sum)
    expected = _rms_ref(rounded_sum.double(), 1.0 + weight.double(), eps)
    torch.testing.assert_close(out.double(), expected, rtol=NORM_RTOL[dtype], atol=ATOL)


def test_gemma_rms_norm_residual_add_is_done_in_input_dtype():
    """The mirror image of the RMSNorm test: Gemma normalises the bf16-rounded sum (256)."""
    hidden = 64
    x = torch.full((1, hidden), 0.5, dtype=torch.bfloat16)
    x[0, : hidden // 2] = 256.0
    residual = torch.full((1, hidden), 0.25, dtype=torch.bfloat16)
    residual[0, : hidden // 2] = 1.0
    weight = torch.full((hidden,), 63.0, dtype=torch.float32)  # scale 1 + 63 = 64
    out, new_residual = _norm("gemma_rms_norm", weight, 1e-6, torch.bfloat16)(x, residual)
    assert new_residual[0, 0].item() == 256.0
    bf16_sum = (x.double() + residual.double()).to(torch.bfloat16).double()
    want = _rms_ref(bf16_sum, 1.0 + weight.double(), 1e-6)[0, -1].item()
    other = _rms_ref(x.double() + residual.double(), 1.0 + weight.double(), 1e-6)[0, -1].item()
    got = out[0, -1].item()
    assert abs(got - want) <= abs(want) * 2.0**-8
    assert abs(got - other) > abs(other) * 2.0**-8


@pytest.mark.parametrize("op", ["rms_norm", "gemma_rms_norm"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_norms_eps_inside_the_square_root(op, dtype):
    """A large eps on small inputs: out = x / sqrt(mean(x^2) + eps) * scale."""
    x = _randn(3, 40, dtype=dtype, seed=50, scale=0.05)
    weight = _randn(40, dtype=torch.float32, seed=51)
    eps = 0.1
    out = _norm(op, weight, eps, dtype)(x, None)
    scale = weight.double() + (1.0 if op == "gemma_rms_norm" else 0.0)
    expected = _rms_ref(x.double(), scale, eps)
    torch.testing.assert_close(out.double(), expected, rtol=NORM_RTOL[dtype], atol=ATOL)


@pytest.mark.parametrize("op", ["rms_norm", "gemma_rms_norm"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_norms_zero_tokens(op, dtype):
    weight = _randn(33, dtype=dtype, seed=60)
    norm = _norm(op, weight, 1e-6, dtype)
    x = _randn(0, 33, dtype=dtype)
    out = norm(x, None)
    assert out.shape == (0, 33) and out.dtype == dtype
    out, new_residual = norm(x, _randn(0, 33, dtype=dtype))
    assert out.shape == (0, 33) and new_residual.shape == (0, 33)
    assert out.dtype == dtype and new_residual.dtype == dtype


@pytest.mark.parametrize("op", ["rms_norm", "gemma_rms_norm"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_norms_non_contiguous_inputs(op, dtype):
    hidden = 33
    weight = _randn(hidden, dtype=dtype, seed=70, scale=0.5)
    scale = weight.double() + (1.0 if op == "gemma_rms_norm" else 0.0)
    norm = _norm(op, weight, 1e-6, dtype)
    wide = _randn(5, hidden + 7, dtype=dtype, seed=71)
    x = wide[:, 2 : 2 + hidden]  # sliced view
    residual = _randn(hidden, 5, dtype=dtype, seed=72).t()  # transposed view
    assert not x.is_contiguous() and not residual.is_contiguous()
    before = _snapshot(wide, x, residual)

    out = norm(x, None)
    torch.testing.assert_close(
        out.double(), _rms_ref(x.double(), scale, 1e-6), rtol=NORM_RTOL[dtype], atol=ATOL
    )
    out, new_residual = norm(x, residual)
    _assert_unchanged([wide, x, residual], before)
    summed = (x.double() + residual.double()).to(dtype)
    assert torch.equal(new_residual, summed)
    h = summed.double() if op == "gemma_rms_norm" else x.double() + residual.double()
    torch.testing.assert_close(
        out.double(), _rms_ref(h, scale, 1e-6), rtol=NORM_RTOL[dtype], atol=ATOL
    )


# --------------------------------------------------------------------------- rotary


def _inv_freq(rotary_dim: int, base: float) -> torch.Tensor:
    return 1.0 / (base ** (torch.arange(0, rotary_dim, 2, dtype=torch.float64) / rotary_dim))


def _sglang_style_cache(max_pos: int, rotary_dim: int, base: float = 10000.0) -> torch.Tensor:
    """Built like SGLang: freqs = t (x) inv_freq, cache = cat(cos(freqs), sin(freqs)) in fp32."""
    inv_freq = _inv_freq(rotary_dim, base).float()
    t = torch.arange(max_pos, dtype=torch.float32)
    freqs = torch.outer(t, inv_freq)
    return torch.cat((freqs.cos(), freqs.sin()), dim=-1)


def _rotary(cache, head_size, rotary_dim, neox, dtype):
    params = RotaryParams(
        cos_sin_cache=cache,
        head_size=head_size,
        rotary_dim=rotary_dim,
        is_neox_style=neox,
        dtype=dtype,
        device=CPU,
    )
    return _bind("rotary_embedding", params)


def _pairs(rotary_dim: int, neox: bool) -> list[tuple[int, int]]:
    """(first, second) element index of every rotated pair; pair i uses angle i."""
    half = rotary_dim // 2
    if neox:
        return [(i, i + half) for i in range(half)]
    return [(2 * i, 2 * i + 1) for i in range(half)]


def _rotary_ref(positions, x, cache, head_size, rotary_dim, neox):
    """float64 per-pair loop. Returns (expected, per-element magnitude |x1| + |x2|)."""
    tokens = positions.numel()
    x64 = x.double().reshape(tokens, -1, head_size)
    rows = cache.double()[positions.flatten().long()]  # [T, R]: cos half, then sin half
    half = rotary_dim // 2
    out = x64.clone()
    magnitude = torch.zeros_like(x64)
    for i, (a, b) in enumerate(_pairs(rotary_dim, neox)):
        cos, sin = rows[:, i].unsqueeze(-1), rows[:, half + i].unsqueeze(-1)
        x1, x2 = x64[..., a], x64[..., b]
        out[..., a] = x1 * cos - x2 * sin
        out[..., b] = x2 * cos + x1 * sin
        magnitude[..., a] = magnitude[..., b] = x1.abs() + x2.abs()
    return out.reshape(x.shape), magnitude.reshape(x.shape)


def _assert_rotated(out, x, positions, cache, head_size, rotary_dim, neox, dtype):
    assert out.dtype == x.dtype and out.shape == x.shape
    expected, magnitude = _rotary_ref(positions, x, cache, head_size, rotary_dim, neox)
    tokens = positions.numel()
    out_h = out.reshape(tokens, -1, head_size)
    # Beyond rotary_dim the values pass through bit-for-bit.
    assert torch.equal(out_h[..., rotary_dim:], x.reshape(tokens, -1, head_size)[..., rotary_dim:])
    err = (out.double() - expected).abs()
    bound = 4 * UNIT_ROUNDOFF[dtype] * magnitude + 1e-30
    worst = (err / bound).max().item() if err.numel() else 0.0
    assert worst <= 1.0, f"rotary error exceeds 4u(|x1|+|x2|) by {worst:.2f}x"


ROTARY_CASES = [
    # tokens, q heads, k heads, head_size, rotary_dim
    pytest.param(6, 4, 2, 64, 64, id="gqa_full"),
    pytest.param(5, 3, 1, 64, 32, id="mqa_partial_half"),
    pytest.param(1, 2, 2, 32, 32, id="one_token"),
    pytest.param(7, 4, 2, 80, 48, id="partial_48_of_80"),
    pytest.param(3, 1, 1, 16, 2, id="single_pair"),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("neox", [True, False], ids=["neox", "interleaved"])
@pytest.mark.parametrize(("tokens", "hq", "hk", "head_size", "rotary_dim"), ROTARY_CASES)
def test_rotary_matches_pairwise_formula(tokens, hq, hk, head_size, rotary_dim, neox, dtype):
    max_pos = 64
    cache = _sglang_style_cache(max_pos, rotary_dim)
    positions = torch.randint(0, max_pos, (tokens,), generator=_gen(80))
    query = _randn(tokens, hq * head_size, dtype=dtype, seed=81)
    key = _randn(tokens, hk * head_size, dtype=dtype, seed=82)
    before = _snapshot(positions, query, key, cache)
    q_out, k_out = _rotary(cache, head_size, rotary_dim, neox, dtype)(positions, query, key)
    _assert_unchanged([positions, query, key, cache], before)
    _assert_rotated(q_out, query, positions, cache, head_size, rotary_dim, neox, dtype)
    _assert_rotated(k_out, key, positions, cache, head_size, rotary_dim, neox, dtype)


@pytest.mark.parametrize("neox", [True, False], ids=["neox", "interleaved"])
def test_rotary_matches_complex_rotation_by_angle(neox):
    """Independent of the cache layout: pair (a, b) as a + ib, multiplied by e^(i pos f_i)."""
    head_size, rotary_dim, base = 64, 48, 500.0
    cache = _sglang_style_cache(128, rotary_dim, base)
    positions = torch.tensor([0, 1, 2, 17, 127, 17, 64])
    query = _randn(len(positions), 2 * head_size, seed=90)
    key = _randn(len(positions), head_size, seed=91)
    q_out, k_out = _rotary(cache, head_size, rotary_dim, neox, torch.float32)(positions, query, key)
    angles = torch.outer(positions.double(), _inv_freq(rotary_dim, base))  # [T, R/2]
    phase = torch.polar(torch.ones_like(angles), angles).unsqueeze(1)  # [T, 1, R/2]
    for x, out in ((query, q_out), (key, k_out)):
        x64 = x.double().reshape(len(positions), -1, head_size)
        first, second = zip(*_pairs(rotary_dim, neox), strict=True)
        z = torch.complex(x64[..., list(first)], x64[..., list(second)]) * phase
        expected = x64.clone()
        expected[..., list(first)] = z.real
        expected[..., list(second)] = z.imag
        # The fp32 cache carries fp32 angle errors (pos * f_i rounded): ~pos * 6e-8 rad.
        torch.testing.assert_close(
            out.double().reshape(expected.shape), expected, rtol=0, atol=5e-5
        )


@pytest.mark.parametrize("neox", [True, False], ids=["neox", "interleaved"])
def test_rotary_position_zero_is_identity(neox):
    cache = _sglang_style_cache(8, 32)
    positions = torch.zeros(4, dtype=torch.long)
    query = _randn(4, 3 * 32, seed=100)
    key = _randn(4, 32, seed=101)
    q_out, k_out = _rotary(cache, 32, 32, neox, torch.float32)(positions, query, key)
    assert torch.equal(q_out, query) and torch.equal(k_out, key)


def test_rotary_styles_differ():
    """neox pairs (i, i + R/2) and GPT-J pairs (2i, 2i + 1) are really different rotations."""
    cache = _sglang_style_cache(16, 32)
    positions = torch.arange(1, 5)
    query, key = _randn(4, 32, seed=110), _randn(4, 32, seed=111)
    neox_q, _ = _rotary(cache, 32, 32, True, torch.float32)(positions, query, key)
    gptj_q, _ = _rotary(cache, 32, 32, False, torch.float32)(positions, query, key)
    assert not torch.allclose(neox_q, gptj_q)


@pytest.mark.parametrize("neox", [True, False], ids=["neox", "interleaved"])
@pytest.mark.parametrize("pos_dtype", [torch.int64, torch.int32], ids=str)
def test_rotary_positions_are_gathered_per_token(neox, pos_dtype):
    """Unsorted, repeated positions and a [T, H, D] query shape that is kept as is."""
    head_size, rotary_dim = 32, 16
    cache = _sglang_style_cache(1000, rotary_dim)
    positions = torch.tensor([999, 3, 3, 0, 512, 7], dtype=pos_dtype)
    query = _randn(6, 4, head_size, seed=120)
    key = _randn(6, 2, head_size, seed=121)
    q_out, k_out = _rotary(cache, head_size, rotary_dim, neox, torch.float32)(positions, query, key)
    assert q_out.shape == (6, 4, head_size) and k_out.shape == (6, 2, head_size)
    _assert_rotated(q_out, query, positions, cache, head_size, rotary_dim, neox, torch.float32)
    _assert_rotated(k_out, key, positions, cache, head_size, rotary_dim, neox, torch.float32)
    # Tokens with equal positions and equal inputs get equal outputs.
    q_same = query.clone()
    q_same[2] = q_same[1]
    q2, _ = _rotary(cache, head_size, rotary_dim, neox, torch.float32)(positions, q_same, key)
    assert torch.equal(q2[1], q2[2])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("neox", [True, False], ids=["neox", "interleaved"])
def test_rotary_non_contiguous_inputs(neox, dtype):
    """q/k sliced out of a fused qkv projection (SGLang's usual layout), and a transposed q."""
    tokens, hq, hk, head_size, rotary_dim = 5, 4, 2, 32, 16
    cache = _sglang_style_cache(32, rotary_dim)
    positions = torch.randint(0, 32, (tokens,), generator=_gen(130))
    qkv = _randn(tokens, (hq + 2 * hk) * head_size, dtype=dtype, seed=131)
    query = qkv[:, : hq * head_size]
    key = qkv[:, hq * head_size : (hq + hk) * head_size]
    assert not query.is_contiguous() and not key.is_contiguous()
    rotary = _rotary(cache, head_size, rotary_dim, neox, dtype)
    before = _snapshot(qkv)
    q_out, k_out = rotary(positions, query, key)
    _assert_unchanged([qkv], before)
    _assert_rotated(q_out, query, positions, cache, head_size, rotary_dim, neox, dtype)
    _assert_rotated(k_out, key, positions, cache, head_size, rotary_dim, neox, dtype)

    query_t = _randn(hq * head_size, tokens, dtype=dtype, seed=132).t()
    before = _snapshot(query_t)
    q_out, _ = rotary(positions, query_t, key)
    _assert_unchanged([query_t], before)
    _assert_rotated(q_out, query_t, positions, cache, head_size, rotary_dim, neox, dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_rotary_cache_in_low_precision(dtype):
    """SGLang off CUDA stores the cache in the model dtype; the kernel must accept that."""
    head_size = rotary_dim = 64
    cache = _sglang_style_cache(40, rotary_dim).to(dtype)
    positions = torch.randint(0, 40, (9,), generator=_gen(140))
    query = _randn(9, 2 * head_size, dtype=dtype, seed=141)
    key = _randn(9, head_size, dtype=dtype, seed=142)
    q_out, k_out = _rotary(cache, head_size, rotary_dim, True, dtype)(positions, query, key)
    _assert_rotated(q_out, query, positions, cache, head_size, rotary_dim, True, dtype)
    _assert_rotated(k_out, key, positions, cache, head_size, rotary_dim, True, dtype)
