"""``vendor.nvidia`` (sgl_kernel, SGLang's CUDA rope) against the reference backend, on a GPU.

Runs on the GPU host only (``cuda`` marker; CI deselects it). Every op, the dtypes the vendor
kernels take, 1 token, odd sizes and q/k as strided views of a fused QKV tensor, through the
same ``bind(params)`` path the dispatcher uses; in-place ops are checked on their inputs.
"""

from __future__ import annotations

import pytest
import torch

from sglang_fl.backends.reference import ReferenceBackend
from sglang_fl.ops.params import ActivationParams, NormParams, RotaryParams

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
