"""The ``flagos`` backend (FlagGems) against the reference backend, on an NVIDIA GPU.

Runs only where CUDA and FlagGems are present (the GPU host; CI has neither and deselects the
``cuda`` marker). Every op, dtype and a spread of shapes including 1 token, odd sizes and
non-contiguous inputs, through the same ``bind(params)`` path the dispatcher uses.
"""

from __future__ import annotations

import pytest
import torch

from sglang_fl.backends.flagos import FlagosBackend, flaggems_import_error
from sglang_fl.backends.reference import ReferenceBackend
from sglang_fl.ops.params import ActivationParams, NormParams, RotaryParams

pytestmark = pytest.mark.cuda


@pytest.fixture(autouse=True)
def _needs_gpu_and_flaggems():
    # a fixture, not a module-level skip: deselected runs (CI) then report nothing at all
    if not torch.cuda.is_available():
        pytest.skip("needs an NVIDIA GPU")
    if flaggems_import_error():
        pytest.skip(f"FlagGems unavailable here: {flaggems_import_error()}")


DEV = torch.device("cuda")
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# Relative tolerances against the reference (both round to the dtype at the end; the kernels
# accumulate in fp32 in different orders).
RTOL = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 2e-3}
TOKENS = (1, 7, 1024)


def _impls(op):
    return FlagosBackend().implementations()[op], ReferenceBackend().implementations()[op]


def _close(actual, expected, dtype, atol=None):
    atol = RTOL[dtype] if atol is None else atol
    torch.testing.assert_close(actual.float(), expected.float(), rtol=RTOL[dtype], atol=atol)


# Rotary: the reference rounds every product and sum to the input dtype (as SGLang's
# forward_native does), a fused kernel rounds once; the gap is a few ulps of the operands'
# magnitude (|x| < ~5 for N(0,1) data: fp16 ulp at 4 is 2**-8), not of the (possibly tiny) result.
ROTARY_ATOL = {torch.float32: 1e-5, torch.bfloat16: 6e-2, torch.float16: 8e-3}


def _randn(*shape, dtype, seed):
    gen = torch.Generator(device=DEV).manual_seed(seed)
    return torch.randn(*shape, generator=gen, device=DEV, dtype=torch.float32).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens", TOKENS)
@pytest.mark.parametrize("inter", (128, 11008, 33))
def test_silu_and_mul(dtype, tokens, inter):
    flagos, ref = _impls("silu_and_mul")
    params = ActivationParams(dtype, DEV)
    x = _randn(tokens, 2 * inter, dtype=dtype, seed=tokens + inter)
    _close(flagos.bind(params)(x), ref.bind(params)(x), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens", TOKENS)
@pytest.mark.parametrize("hidden", (4096, 33))
@pytest.mark.parametrize("with_residual", (False, True))
def test_rms_norm(dtype, tokens, hidden, with_residual):
    flagos, ref = _impls("rms_norm")
    weight = _randn(hidden, dtype=dtype, seed=1) * 0.5 + 1
    params = NormParams(weight, 1e-6, hidden, dtype, DEV)
    x = _randn(tokens, hidden, dtype=dtype, seed=2)
    residual = _randn(tokens, hidden, dtype=dtype, seed=3) if with_residual else None
    expected = ref.bind(params)(x.clone(), None if residual is None else residual.clone())
    got = flagos.bind(params)(x.clone(), None if residual is None else residual.clone())
    if with_residual:
        _close(got[0], expected[0], dtype)
        _close(got[1], expected[1], dtype)
    else:
        _close(got, expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens", TOKENS)
@pytest.mark.parametrize("neox", (True, False))
@pytest.mark.parametrize(("head_size", "rotary_dim"), ((128, 128), (128, 64), (64, 64)))
def test_rotary(dtype, tokens, neox, head_size, rotary_dim):
    flagos, ref = _impls("rotary_embedding")
    inv_freq = 1.0 / (10000 ** (torch.arange(0, rotary_dim, 2, dtype=torch.float) / rotary_dim))
    freqs = torch.outer(torch.arange(4096, dtype=torch.float), inv_freq)
    cache = torch.cat((freqs.cos(), freqs.sin()), dim=-1).to(DEV)  # fp32, as on CUDA
    params = RotaryParams(cache, head_size, rotary_dim, neox, dtype, DEV)
    positions = torch.randint(0, 4096, (tokens,), device=DEV)
    # q/k as slices of a fused qkv projection: non-contiguous rows
    qkv = _randn(tokens, (32 + 8 + 8) * head_size, dtype=dtype, seed=tokens)
    q, k = qkv[:, : 32 * head_size], qkv[:, 32 * head_size : 40 * head_size]
    q_ref, k_ref = ref.bind(params)(positions, q.clone(), k.clone())
    q_got, k_got = flagos.bind(params)(positions, q, k)  # the views themselves
    _close(q_got, q_ref, dtype, ROTARY_ATOL[dtype])
    _close(k_got, k_ref, dtype, ROTARY_ATOL[dtype])
