"""``vendor.nvidia`` (sgl_kernel, SGLang's CUDA rope and Triton mrope kernels, flashinfer's
layer norm) against the reference backend, on a GPU.

Runs on the GPU host only (``cuda`` marker; CI deselects it). Every op with a vendor kernel, the
dtypes the vendor kernels take, 1 token, odd sizes and q/k as strided views of a fused QKV
tensor, through the same ``bind(params)`` path the dispatcher uses; in-place ops are checked on
their inputs. (``new_gelu`` and ``quick_gelu`` have no vendor kernel: their refusals are tested
without a GPU, in test_nvidia_bundle.py.)
"""

from __future__ import annotations

import pytest
import torch

from sglang_fl.backends.reference import ReferenceBackend
from sglang_fl.ops.catalog import (
    DEEPSEEK_SCALING_ROTARY_EMBEDDING,
    GELU_AND_MUL,
    GEMMA3_RMS_NORM,
    LAYER_NORM,
    MROTARY_EMBEDDING,
    RMS_NORM_WITHOUT_SCALE,
)
from sglang_fl.ops.params import (
    ActivationParams,
    LayerNormParams,
    MRotaryParams,
    NormParams,
    RotaryParams,
)

pytestmark = pytest.mark.cuda

DEV = torch.device("cuda") if torch.cuda.is_available() else None
DTYPES = (torch.bfloat16, torch.float16)
RTOL = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 2e-3}
# rotary: the reference rounds each product to the dtype (as SGLang's forward_native does); the
# kernel rounds once. The gap is a few ulps of the operands' magnitude (see test_flagos_cuda).
ROTARY_ATOL = {torch.bfloat16: 6e-2, torch.float16: 8e-3}
TOKENS = (1, 7, 1024)


@pytest.fixture(autouse=True)
def _needs_vendor():
    if DEV is None:
        pytest.skip("needs an NVIDIA GPU")
    from sglang_fl_nvidia.backend import NvidiaBackend

    available = NvidiaBackend().availability()
    if not available.ok:
        pytest.skip(available.reason)


def _impls(op):
    from sglang_fl_nvidia.backend import NvidiaBackend

    return NvidiaBackend().implementations()[op], ReferenceBackend().implementations()[op]


def _randn(*shape, dtype, seed):
    gen = torch.Generator(device=DEV).manual_seed(seed)
    return torch.randn(*shape, generator=gen, device=DEV, dtype=torch.float32).to(dtype)


def _close(actual, expected, dtype, atol=None):
    atol = RTOL[dtype] if atol is None else atol
    torch.testing.assert_close(actual.float(), expected.float(), rtol=RTOL[dtype], atol=atol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens", TOKENS)
@pytest.mark.parametrize("inter", (128, 11008, 4864))
def test_silu_and_mul(dtype, tokens, inter):
    vendor, ref = _impls("silu_and_mul")
    params = ActivationParams(dtype, DEV, 2 * inter)
    assert vendor.supports(params) is None
    x = _randn(tokens, 2 * inter, dtype=dtype, seed=tokens + inter)
    _close(vendor.bind(params)(x), ref.bind(params)(x), dtype)


@pytest.mark.parametrize("op", ("rms_norm", "gemma_rms_norm"))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens", TOKENS)
@pytest.mark.parametrize("hidden", (4096, 896, 64))
@pytest.mark.parametrize("with_residual", (False, True))
def test_norms(op, dtype, tokens, hidden, with_residual):
    vendor, ref = _impls(op)
    weight = _randn(hidden, dtype=dtype, seed=1) * 0.5 + (1 if op == "rms_norm" else 0)
    params = NormParams(weight, 1e-6, hidden, dtype, DEV)
    x = _randn(tokens, hidden, dtype=dtype, seed=2)
    residual = _randn(tokens, hidden, dtype=dtype, seed=3) if with_residual else None
    expected = ref.bind(params)(x.clone(), None if residual is None else residual.clone())
    got = vendor.bind(params)(x, residual)
    if with_residual:
        assert got[0] is x and got[1] is residual  # in place, as SGLang's fused_add_rmsnorm
        _close(got[0], expected[0], dtype)
        _close(got[1], expected[1], dtype)
    else:
        _close(got, expected, dtype)


def test_norm_of_3d_input_keeps_its_shape():
    vendor, ref = _impls("rms_norm")
    weight = _randn(128, dtype=torch.bfloat16, seed=1)
    params = NormParams(weight, 1e-6, 128, torch.bfloat16, DEV)
    x = _randn(5, 8, 128, dtype=torch.bfloat16, seed=4)  # per-head q/k norm layout
    got = vendor.bind(params)(x, None)
    assert got.shape == x.shape
    _close(got, ref.bind(params)(x, None), torch.bfloat16)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens", TOKENS)
@pytest.mark.parametrize("neox", (True, False))
@pytest.mark.parametrize(("head_size", "rotary_dim"), ((128, 128), (128, 64), (64, 64)))
@pytest.mark.parametrize("cache_dtype", (torch.float32, "model"))
def test_rotary(dtype, tokens, neox, head_size, rotary_dim, cache_dtype):
    vendor, ref = _impls("rotary_embedding")
    inv_freq = 1.0 / (10000 ** (torch.arange(0, rotary_dim, 2, dtype=torch.float) / rotary_dim))
    freqs = torch.outer(torch.arange(4096, dtype=torch.float), inv_freq)
    cache = torch.cat((freqs.cos(), freqs.sin()), dim=-1).to(DEV)
    cache = cache if cache_dtype is torch.float32 else cache.to(dtype)
    params = RotaryParams(cache, head_size, rotary_dim, neox, dtype, DEV)
    positions = torch.randint(0, 4096, (tokens,), device=DEV)
    qkv = _randn(tokens, (32 + 8 + 8) * head_size, dtype=dtype, seed=tokens)
    q, k = qkv[:, : 32 * head_size], qkv[:, 32 * head_size : 40 * head_size]
    q_ref, k_ref = ref.bind(params)(positions, q.clone(), k.clone())
    q_got, k_got = vendor.bind(params)(positions, q, k)
    assert q_got is q and k_got is k  # in place on the views of the QKV tensor
    _close(q_got, q_ref, dtype, ROTARY_ATOL[dtype])
    _close(k_got, k_ref, dtype, ROTARY_ATOL[dtype])


def _cache(rotary_dim: int, dtype, max_pos: int = 4096, scale: float = 1.0) -> torch.Tensor:
    inv_freq = 1.0 / (10000 ** (torch.arange(0, rotary_dim, 2, dtype=torch.float) / rotary_dim))
    freqs = torch.outer(torch.arange(max_pos, dtype=torch.float), inv_freq)
    return (torch.cat((freqs.cos(), freqs.sin()), dim=-1) * scale).to(device=DEV, dtype=dtype)


# --------------------------------------------------------------------------- gelu_and_mul


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens", TOKENS)
@pytest.mark.parametrize("inter", (128, 9216, 4864))  # 9216: Gemma-2 2B's intermediate size
@pytest.mark.parametrize("approximate", ("tanh", "none"))
def test_gelu_and_mul(dtype, tokens, inter, approximate):
    vendor, ref = _impls(GELU_AND_MUL)
    params = ActivationParams(dtype, DEV, 2 * inter, approximate)
    assert vendor.supports(params) is None
    x = _randn(tokens, 2 * inter, dtype=dtype, seed=tokens + inter)
    _close(vendor.bind(params)(x), ref.bind(params)(x), dtype)


@pytest.mark.parametrize("approximate", ("tanh", "none"))
def test_gelu_and_mul_strided_and_3d_input(approximate):
    """A slice of a wider buffer (row stride > 2d) and [batch, tokens, 2d] both come out right;
    tanh and erf differ on this input, so a swapped kernel would fail."""
    vendor, ref = _impls(GELU_AND_MUL)
    params = ActivationParams(torch.bfloat16, DEV, 2 * 256, approximate)
    kernel, expected = vendor.bind(params), ref.bind(params)
    wide = _randn(7, 2 * 256 + 64, dtype=torch.bfloat16, seed=5)
    x = wide[:, 32 : 32 + 2 * 256]
    _close(kernel(x), expected(x), torch.bfloat16)
    x3 = _randn(2, 5, 2 * 256, dtype=torch.bfloat16, seed=6) * 3
    _close(kernel(x3), expected(x3), torch.bfloat16)
    other = "none" if approximate == "tanh" else "tanh"
    other_ref = ref.bind(ActivationParams(torch.bfloat16, DEV, 2 * 256, other))
    assert not torch.allclose(kernel(x3).float(), other_ref(x3).float(), rtol=0, atol=1e-3)


# --------------------------------------------------------------- gemma3, unscaled norm


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens", TOKENS)
@pytest.mark.parametrize("hidden", (2560, 3840, 64))  # Gemma 3 4B and 12B, and a small one
@pytest.mark.parametrize("with_residual", (False, True))
def test_gemma3_rms_norm(dtype, tokens, hidden, with_residual):
    vendor, ref = _impls(GEMMA3_RMS_NORM)
    weight = _randn(hidden, dtype=dtype, seed=1) * 0.5  # raw weight: the scale is 1 + weight
    params = NormParams(weight, 1e-6, hidden, dtype, DEV)
    assert vendor.supports(params) is None
    x = _randn(tokens, hidden, dtype=dtype, seed=2)
    residual = _randn(tokens, hidden, dtype=dtype, seed=3) if with_residual else None
    expected = ref.bind(params)(x.clone(), None if residual is None else residual.clone())
    got = vendor.bind(params)(x, residual)
    if with_residual:
        assert got[0] is x and got[1] is residual  # in place, as gemma_fused_add_rmsnorm
        _close(got[0], expected[0], dtype)
        _close(got[1], expected[1], dtype)
    else:
        _close(got, expected, dtype)


@pytest.mark.parametrize("strided", (False, True))
def test_gemma3_rms_norm_per_head_3d(strided):
    """Gemma 3's q/k norm: [tokens, heads, head_dim], possibly q.unflatten of a qkv slice (not
    viewable as 2-D): SGLang runs it natively, we reshape to [-1, head_dim]."""
    vendor, ref = _impls(GEMMA3_RMS_NORM)
    weight = _randn(256, dtype=torch.bfloat16, seed=1) * 0.5
    params = NormParams(weight, 1e-6, 256, torch.bfloat16, DEV)
    qkv = _randn(9, (8 + 2 * 4) * 256, dtype=torch.bfloat16, seed=7)
    q = qkv[:, : 8 * 256].unflatten(-1, (8, 256)) if strided else qkv.view(9, 16, 256)
    got = vendor.bind(params)(q, None)
    assert got.shape == q.shape
    _close(got, ref.bind(params)(q, None), torch.bfloat16)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens", TOKENS)
@pytest.mark.parametrize("shape", ((2304,), (8, 128), (33,)), ids=("h2304", "3d", "h33"))
def test_rms_norm_without_scale(dtype, tokens, shape):
    vendor, ref = _impls(RMS_NORM_WITHOUT_SCALE)
    params = NormParams(None, 1e-6, shape[-1], dtype, DEV)
    assert vendor.supports(params) is None
    x = _randn(tokens, *shape, dtype=dtype, seed=tokens) * 3
    got = vendor.bind(params)(x, None)
    assert got.shape == x.shape and got.dtype == dtype
    _close(got, ref.bind(params)(x, None), dtype)


# --------------------------------------------------------------------------- layer_norm


@pytest.mark.parametrize("tokens", TOKENS)
@pytest.mark.parametrize("hidden", (1152, 4096, 96))  # SigLIP's 1152, GLM-4V's 4096
@pytest.mark.parametrize(("affine", "bias"), ((True, True), (True, False), (False, False)))
def test_layer_norm_bf16_input_fp32_params(tokens, hidden, affine, bias):
    vendor, ref = _impls(LAYER_NORM)
    weight = _randn(hidden, dtype=torch.float32, seed=1) * 0.5 + 1 if affine else None
    bias_ = _randn(hidden, dtype=torch.float32, seed=2) if bias else None
    params = LayerNormParams(weight, bias_, 1e-6, hidden, torch.float32, torch.bfloat16, DEV)
    assert vendor.supports(params) is None
    x = _randn(tokens, hidden, dtype=torch.bfloat16, seed=3) * 2 + 0.5
    _close(vendor.bind(params)(x), ref.bind(params)(x), torch.bfloat16)


def test_layer_norm_3d_and_strided_input():
    vendor, ref = _impls(LAYER_NORM)
    weight = _randn(1152, dtype=torch.float32, seed=1) * 0.5 + 1
    bias_ = _randn(1152, dtype=torch.float32, seed=2)
    params = LayerNormParams(weight, bias_, 1e-6, 1152, torch.float32, torch.bfloat16, DEV)
    kernel, expected = vendor.bind(params), ref.bind(params)
    x3 = _randn(2, 9, 1152, dtype=torch.bfloat16, seed=4)
    assert kernel(x3).shape == x3.shape
    _close(kernel(x3), expected(x3), torch.bfloat16)
    wide = _randn(9, 1152 + 40, dtype=torch.bfloat16, seed=5)
    _close(kernel(wide[:, 8:1160]), expected(wide[:, 8:1160]), torch.bfloat16)


# --------------------------------------------------------------------------- mrotary_embedding

# (label, q heads, kv heads, head_size, rotary_dim, section, interleaved)
MROPE_SHAPES = (
    ("qwen2.5-vl chunked", 28, 4, 128, 128, (16, 24, 24), False),
    ("qwen3-vl interleaved", 32, 8, 128, 128, (24, 20, 20), True),
    ("partial chunked", 4, 2, 128, 64, (8, 12, 12), False),
)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens", TOKENS)
@pytest.mark.parametrize("shape", MROPE_SHAPES, ids=[s[0] for s in MROPE_SHAPES])
@pytest.mark.parametrize("positions_dim", (2, 1), ids=("3xT", "T"))
@pytest.mark.parametrize("cache_dtype", (torch.float32, "model"))
def test_mrotary(dtype, tokens, shape, positions_dim, cache_dtype):
    """q/k as strided slices of a fused qkv tensor, written in place by the Triton mrope
    kernel ([3, T] positions) or the rope kernel ([T] positions, text only)."""
    vendor, ref = _impls(MROTARY_EMBEDDING)
    _, heads, kv_heads, head_size, rotary_dim, section, interleaved = shape
    cache = _cache(rotary_dim, torch.float32 if cache_dtype is torch.float32 else dtype)
    params = MRotaryParams(cache, head_size, rotary_dim, True, section, interleaved, dtype, DEV)
    assert vendor.supports(params) is None
    gen = torch.Generator(device=DEV).manual_seed(tokens)
    size = (3, tokens) if positions_dim == 2 else (tokens,)
    positions = torch.randint(0, 4096, size, device=DEV, generator=gen)
    qkv = _randn(tokens, (heads + 2 * kv_heads) * head_size, dtype=dtype, seed=tokens)
    q = qkv[:, : heads * head_size]
    k = qkv[:, heads * head_size : (heads + kv_heads) * head_size]
    q_ref, k_ref = ref.bind(params)(positions, q.clone(), k.clone())
    q_got, k_got = vendor.bind(params)(positions, q, k)
    assert q_got is q and k_got is k
    _close(q_got, q_ref, dtype, ROTARY_ATOL[dtype])
    _close(k_got, k_ref, dtype, ROTARY_ATOL[dtype])


def test_mrotary_sections_matter():
    """Control: the h and w rows differ from t here, so a kernel that ignored the sections (or
    the layout) would not match the reference."""
    vendor, ref = _impls(MROTARY_EMBEDDING)
    for interleaved in (False, True):
        params = MRotaryParams(_cache(128, torch.float32), 128, 128, True, (16, 24, 24),
                               interleaved, torch.bfloat16, DEV)  # fmt: skip
        positions = torch.stack((torch.arange(5), torch.arange(5) + 100, torch.arange(5) + 900))
        positions = positions.to(DEV)
        q = _randn(5, 4 * 128, dtype=torch.bfloat16, seed=8)
        k = _randn(5, 128, dtype=torch.bfloat16, seed=9)
        plain = ref.bind(params)(positions[0], q.clone(), k.clone())
        got = vendor.bind(params)(positions, q.clone(), k.clone())
        _close(got[0], ref.bind(params)(positions, q.clone(), k.clone())[0], torch.bfloat16,
               ROTARY_ATOL[torch.bfloat16])  # fmt: skip
        assert not torch.allclose(got[0].float(), plain[0].float(), atol=0.1)


def test_mrotary_empty_batch_is_a_no_op():
    vendor, _ = _impls(MROTARY_EMBEDDING)
    params = MRotaryParams(_cache(128, torch.bfloat16), 128, 128, True, (16, 24, 24), False,
                           torch.bfloat16, DEV)  # fmt: skip
    q = torch.empty(0, 4 * 128, device=DEV, dtype=torch.bfloat16)
    k = torch.empty(0, 128, device=DEV, dtype=torch.bfloat16)
    positions = torch.empty(3, 0, dtype=torch.long, device=DEV)
    q_out, k_out = vendor.bind(params)(positions, q, k)
    assert q_out is q and k_out is k


# --------------------------------------------------------------------------- DeepSeek rope


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens", TOKENS)
@pytest.mark.parametrize("neox", (False, True), ids=("interleaved", "neox"))
def test_deepseek_rope_mla_layout(dtype, tokens, neox):
    """MLA: q_pe [T, 16, 64] and k_pe [T, 1, 64] sliced out of wider tensors (the nope part
    and the latent come first), the mscale'd fp32 cache SGLang keeps on CUDA."""
    vendor, ref = _impls(DEEPSEEK_SCALING_ROTARY_EMBEDDING)
    cache = _cache(64, torch.float32, scale=1.23)  # mscale folded into the cache
    params = RotaryParams(cache, 64, 64, neox, dtype, DEV)
    assert vendor.supports(params) is None
    gen = torch.Generator(device=DEV).manual_seed(tokens)
    positions = torch.randint(0, 4096, (tokens,), device=DEV, generator=gen)
    q_full = _randn(tokens, 16, 128 + 64, dtype=dtype, seed=tokens)
    latent = _randn(tokens, 1, 512 + 64, dtype=dtype, seed=tokens + 1)
    q_pe, k_pe = q_full[..., 128:], latent[..., 512:]
    q_ref, k_ref = ref.bind(params)(positions, q_pe.clone(), k_pe.clone())
    q_got, k_got = vendor.bind(params)(positions, q_pe, k_pe)
    assert q_got is q_pe and k_got is k_pe
    assert q_got.shape == (tokens, 16, 64) and k_got.shape == (tokens, 1, 64)
    _close(q_got, q_ref, dtype, ROTARY_ATOL[dtype])
    _close(k_got, k_ref, dtype, ROTARY_ATOL[dtype])
    # the rest of the tensors the slices live in is untouched
    q_nope = _randn(tokens, 16, 128 + 64, dtype=dtype, seed=tokens)[..., :128]
    assert torch.equal(q_full[..., :128], q_nope)
