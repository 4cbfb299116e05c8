"""The reference backend against SGLang's own ``forward_native`` on SGLang's real layer classes.

The modules are SGLang's (random weights); the reference kernels are bound the way the
dispatcher binds them: params from the op's bridge (``BRIDGES[op].params(module, args, {})``,
i.e. ``NormParams(weight=module.weight, eps=module.variance_epsilon, ...)`` /
``RotaryParams(cos_sin_cache=module.cos_sin_cache, head_size, rotary_dim, is_neox_style, ...)``),
then ``ReferenceBackend().implementations()[op].bind(params)``, wrapped by the bridge's
``forward`` so the SGLang calling convention (``post_residual_addition``, ``offsets``) is
exercised too.

Tolerance: where the reference performs the same operations in the same order and precision
as ``forward_native`` (SiLU-and-mul, RMSNorm and GemmaRMSNorm incl. residual, all rotary
variants: they only differ in how the cos/sin cache is built), the results must be
*bit-identical* in every dtype, so those comparisons use ``rtol=atol=0``. The one documented
exception is RMSNorm with ``post_residual_addition`` (see the test there).

SGLang's layer modules resolve ``current_platform`` on import, so the platform is pinned to
sglang-fl's (``SGLANG_PLATFORM=sglang_fl``, its installed platform entry point) around the
SGLang imports. It is set here with ``setdefault`` (an explicit setting wins) rather than in
a conftest, and removed again once SGLang has cached its platform.
"""

from __future__ import annotations

import inspect
import os
import warnings

import pytest
import torch

from sglang_fl.backends.reference import ReferenceBackend
from sglang_fl.dispatch.backend import Refusal
from sglang_fl.ops.bridges import BRIDGES, RMSNormBridge
from sglang_fl.ops.params import NormParams, RotaryParams

_PLATFORM_WAS_SET = "SGLANG_PLATFORM" in os.environ
os.environ.setdefault("SGLANG_PLATFORM", "sglang_fl")
try:
    with warnings.catch_warnings():
        # Importing SGLang's layers on a CPU-only host warns about CUDA-only quantisation.
        warnings.simplefilter("ignore")
        from sglang.srt.layers.activation import SiluAndMul
        from sglang.srt.layers.layernorm import GemmaRMSNorm, RMSNorm
        from sglang.srt.layers.rotary_embedding import get_rope
        from sglang.srt.layers.rotary_embedding.base import (
            LinearScalingRotaryEmbedding,
            RotaryEmbedding,
        )
        from sglang.srt.layers.rotary_embedding.rope_variant import (
            DynamicNTKAlphaRotaryEmbedding,
            DynamicNTKScalingRotaryEmbedding,
            Gemma4RotaryEmbedding,
            Llama3RotaryEmbedding,
        )
        from sglang.srt.layers.rotary_embedding.yarn import YaRNScalingRotaryEmbedding
finally:
    # SGLang resolved (and cached) its platform during the imports above; do not leak the
    # variable into the rest of the session or into subprocesses other tests spawn.
    if not _PLATFORM_WAS_SET:
        os.environ.pop("SGLANG_PLATFORM", None)

pytestmark = pytest.mark.sglang


@pytest.fixture(scope="module", autouse=True)
def _published_server_args():
    """SGLang 0.5.15's SiluAndMul/RotaryEmbedding constructors read the global server args,
    which only a running server publishes; give them defaults (0.5.18+ no longer reads them)."""
    from sglang_fl.compat.fused_ops import publish_default_server_args

    publish_default_server_args()


DTYPES = (torch.float32, torch.bfloat16, torch.float16)
EXACT = {"rtol": 0.0, "atol": 0.0}


def _randn(*shape: int, dtype=torch.float32, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)


def _randomize(module: torch.nn.Module, seed: int, scale: float = 1.0) -> torch.nn.Module:
    with torch.no_grad():
        module.weight.copy_(
            _randn(*module.weight.shape, dtype=module.weight.dtype, seed=seed, scale=scale)
        )
    return module


def _reference_forward(op: str, module: torch.nn.Module, args: tuple):
    """What the dispatcher installs for ``module``: bridge params -> bind -> bridge forward."""
    bridge = BRIDGES[op]
    params = bridge.params(module, args, {})
    assert not isinstance(params, Refusal), f"bridge declined the module: {params.reason}"
    kernel = ReferenceBackend().implementations()[op].bind(params)
    return bridge.forward(module, kernel, own=None), params


def _snapshot(*tensors):
    return [None if t is None else t.clone() for t in tensors]


def _assert_unchanged(tensors, snapshots):
    for t, snap in zip(tensors, snapshots, strict=True):
        assert t is None or torch.equal(t, snap), "an input tensor was mutated"


def _assert_same(ours, theirs, **tol):
    tol = tol or EXACT
    if isinstance(theirs, tuple):
        assert isinstance(ours, tuple) and len(ours) == len(theirs)
        for a, b in zip(ours, theirs, strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape
            torch.testing.assert_close(a, b, **tol)
    else:
        assert isinstance(ours, torch.Tensor)
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        torch.testing.assert_close(ours, theirs, **tol)


# --------------------------------------------------------------------------- SiluAndMul


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    "shape",
    [(9, 2 * 64), (1, 2 * 33), (0, 2 * 8), (2, 3, 2 * 17)],
    ids=["d64", "one_token_odd_d", "zero_tokens", "3d"],
)
def test_silu_and_mul_matches_sglang(shape, dtype):
    module = SiluAndMul()
    x = _randn(*shape, dtype=dtype, seed=1, scale=2.0)
    forward, _ = _reference_forward("silu_and_mul", module, (x,))
    before = _snapshot(x)
    ours = forward(x)
    _assert_unchanged([x], before)
    _assert_same(ours, module.forward_native(x))


# --------------------------------------------------------------------------- norms

NORM_SHAPES = [(7, 128), (1, 33), (3, 4095), (2, 3, 48)]
NORM_IDS = ["h128", "one_token_h33", "h4095", "3d"]


def _rms_norm(hidden: int, weight_dtype, seed: int) -> RMSNorm:
    return _randomize(RMSNorm(hidden, eps=1e-6, weight_dtype=weight_dtype), seed)


def _gemma_norm(hidden: int, weight_dtype, seed: int) -> GemmaRMSNorm:
    return _randomize(GemmaRMSNorm(hidden, eps=1e-6).to(weight_dtype), seed, scale=0.5)


NORMS = {"rms_norm": _rms_norm, "gemma_rms_norm": _gemma_norm}


@pytest.mark.parametrize("op", list(NORMS))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", NORM_SHAPES, ids=NORM_IDS)
@pytest.mark.parametrize("with_residual", [False, True], ids=["plain", "residual"])
def test_norm_matches_sglang(op, shape, dtype, with_residual):
    # SGLang keeps RMSNorm weights in fp32 by default (weight_dtype=None); a model loaded in
    # bf16 casts them. Cover both: fp32 weights for RMSNorm, input-dtype weights for Gemma.
    weight_dtype = torch.float32 if op == "rms_norm" else dtype
    module = NORMS[op](shape[-1], weight_dtype, seed=10)
    x = _randn(*shape, dtype=dtype, seed=11, scale=2.0)
    residual = _randn(*shape, dtype=dtype, seed=12) if with_residual else None
    forward, params = _reference_forward(op, module, (x, residual))
    assert isinstance(params, NormParams)
    assert params.weight is module.weight and params.eps == module.variance_epsilon
    before = _snapshot(x, residual, module.weight)
    ours = forward(x, residual)
    _assert_unchanged([x, residual, module.weight], before)
    _assert_same(ours, module.forward_native(x, residual))


@pytest.mark.parametrize("op", list(NORMS))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_norm_zero_tokens_matches_sglang(op, dtype):
    module = NORMS[op](16, dtype, seed=20)
    x, residual = _randn(0, 16, dtype=dtype), _randn(0, 16, dtype=dtype)
    forward, _ = _reference_forward(op, module, (x,))
    _assert_same(forward(x), module.forward_native(x))
    _assert_same(forward(x, residual), module.forward_native(x, residual))


@pytest.mark.parametrize("op", list(NORMS))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_norm_non_contiguous_matches_sglang(op, dtype):
    """Sliced / transposed inputs. SGLang's RMSNorm makes ``x`` contiguous first, the reference
    reduces over the strided view; the values agree bit-for-bit here, but a reduction over a
    different memory order may legitimately differ in the last fp32 bit, which after the final
    rounding is at most 1 ulp of the output dtype: hence rtol = 2**-23 (fp32) / 1 ulp."""
    hidden = 33
    module = NORMS[op](hidden, dtype, seed=30)
    wide = _randn(6, hidden + 5, dtype=dtype, seed=31)
    x = wide[:, 1 : 1 + hidden]
    residual = _randn(hidden, 6, dtype=dtype, seed=32).t()
    forward, _ = _reference_forward(op, module, (x, residual))
    before = _snapshot(wide, residual)
    ours_plain, ours_res = forward(x), forward(x, residual)
    _assert_unchanged([wide, residual], before)
    ulp = {torch.float32: 2.0**-23, torch.bfloat16: 2.0**-7, torch.float16: 2.0**-10}[dtype]
    _assert_same(ours_plain, module.forward_native(x), rtol=ulp, atol=1e-6)
    _assert_same(ours_res, module.forward_native(x, residual), rtol=ulp, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_gemma_post_residual_addition_matches_sglang(dtype):
    """GemmaRMSNorm: residual += post in the input dtype, then the add -- the bridge does the
    same, so this is bit-exact."""
    module = _gemma_norm(64, dtype, seed=40)
    x, residual, post = (_randn(5, 64, dtype=dtype, seed=s) for s in (41, 42, 43))
    forward, _ = _reference_forward("gemma_rms_norm", module, (x, residual))
    before = _snapshot(x, residual, post)
    ours = forward(x, residual, post)
    _assert_unchanged([x, residual, post], before)
    _assert_same(ours, module.forward_native(x, residual, post))
    # Without a residual, post_residual_addition is ignored (as in SGLang).
    _assert_same(forward(x, None, post), module.forward_native(x, None, post))


UNIT_ROUNDOFF = {torch.float32: 2.0**-24, torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}


def _assert_post_residual_close(ours, theirs, x, residual, post, weight):
    """Elementwise rounding bound for "residual + post first, in the dtype" vs "all in fp32".

    With s = x + residual + post (exact) and q = residual + post: the bridge's residual is
    round(x + round(q)), SGLang's is round(s), so they differ by at most u|q| + 2u|s|; the
    perturbation of s by <= u|q| moves out_i = s_i w_i / rms(s) by <= u|q_i||w_i|/rms(s) plus
    a relative u * ||q|| / ||s|| through rms(s), and each side rounds once more (2u|out_i|).
    Relative tolerances do not work here: x + q may cancel. On top, fp32 work carries its own
    rounding (u32 = 2**-24): SGLang's intermediate x + residual (u32 |x + residual|) and ~8
    fp32 operations in the normalisation on either side -- negligible for bf16/fp16, but
    of the same order as u for fp32 inputs. A factor 2 of margin is applied.
    """
    u, u32 = UNIT_ROUNDOFF[x.dtype], UNIT_ROUNDOFF[torch.float32]
    q = residual.double() + post.double()
    xr = (x.double() + residual.double()).abs()
    s = x.double() + q
    rms = s.pow(2).mean(-1, keepdim=True).sqrt()
    gain = weight.double().abs() / rms  # d out_i / d s_i
    out64, res64 = (t.double() for t in theirs)
    res_bound = u * (q.abs() + 2 * s.abs()) + u32 * xr
    rel_rms = q.norm(dim=-1, keepdim=True) / s.norm(dim=-1, keepdim=True)
    out_bound = u * (q.abs() * gain + out64.abs() * (2 + rel_rms)) + u32 * (
        xr * gain + 8 * out64.abs()
    )
    assert ours[0].dtype == theirs[0].dtype and ours[1].dtype == theirs[1].dtype
    assert ((ours[1].double() - res64).abs() <= 2 * res_bound).all()
    assert ((ours[0].double() - out64).abs() <= 2 * out_bound).all()


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"var_hidden_size": 32}, "var_hidden_size"),
        ({"cast_x_before_out_mul": True}, "cast_x_before_out_mul"),
        ({"fp32_residual": True}, "fp32_residual"),
        ({"override_orig_dtype": torch.float32}, "override_orig_dtype"),
    ],
)
def test_rms_norm_variants_outside_the_contract_are_declined(kwargs, reason):
    module = RMSNorm(64, **kwargs)
    x = _randn(2, 64)
    declined = RMSNormBridge().params(module, (x,), {})
    assert isinstance(declined, Refusal) and reason in declined.reason


@pytest.mark.skipif(
    "quant_linear" not in inspect.signature(RMSNorm.forward_native).parameters,
    reason="this SGLang's RMSNorm takes no quant_linear (added in 0.5.18)",
)
def test_rms_norm_call_with_quant_linear_runs_sglangs_own_path():
    """The bridge hands a call with quant_linear to SGLang's own forward, with SGLang's
    argument names, and does not run the kernel."""
    module = _rms_norm(64, torch.float32, seed=50)
    x, residual, post = (_randn(5, 64, seed=s) for s in (51, 52, 53))
    linear = torch.nn.Linear(64, 64)
    kernel_calls = []
    forward = BRIDGES["rms_norm"].forward(module, lambda *a: kernel_calls.append(a),
                                          own=module.forward_native)  # fmt: skip
    ours = forward(x.clone(), residual.clone(), post, quant_linear=linear)
    _assert_same(ours, module.forward_native(x.clone(), residual.clone(), post, linear))
    assert kernel_calls == []


# --------------------------------------------------------------------------- rotary


def _rope_cases():
    """Constructors by dtype; classes imported from their modules, plus the get_rope factory."""
    return {
        "plain_neox": lambda dt: RotaryEmbedding(64, 64, 256, 10000, True, dt),
        "plain_gptj": lambda dt: RotaryEmbedding(64, 64, 256, 10000, False, dt),
        "partial_neox": lambda dt: RotaryEmbedding(80, 32, 256, 10000, True, dt),
        "partial_gptj": lambda dt: RotaryEmbedding(96, 48, 256, 1e6, False, dt),
        "llama3": lambda dt: Llama3RotaryEmbedding(
            64, 64, 512, 500000, True, dt, 8.0, 1.0, 4.0, 128
        ),
        "yarn": lambda dt: YaRNScalingRotaryEmbedding(
            64, 64, 128, 10000, True, 2.0, dt, beta_fast=32, beta_slow=1
        ),
        "yarn_gptj_partial": lambda dt: YaRNScalingRotaryEmbedding(
            64, 32, 64, 10000, False, 4.0, dt, attn_factor=0.9, beta_fast=16
        ),
        "linear": lambda dt: LinearScalingRotaryEmbedding(64, 64, 128, 10000, True, 2.0, dt),
        "dynamic_ntk": lambda dt: DynamicNTKScalingRotaryEmbedding(
            64, 64, 128, 10000, True, 2.0, dt
        ),
        "dynamic_ntk_alpha": lambda dt: DynamicNTKAlphaRotaryEmbedding(
            64, 64, 128, 10000, True, 2.0, dt
        ),
        "gemma4": lambda dt: Gemma4RotaryEmbedding(64, 16, 128, 10000.0, True, dt),
        "get_rope_llama3": lambda dt: get_rope(
            64,
            64,
            512,
            500000,
            True,
            {
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 128,
            },
            dt,
        ),
        "get_rope_yarn": lambda dt: get_rope(
            64,
            64,
            256,
            10000,
            True,
            {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64},
            dt,
        ),
        "get_rope_partial_factor": lambda dt: get_rope(
            128, 128, 256, 10000, False, None, dt, partial_rotary_factor=0.5
        ),
    }


ROPES = _rope_cases()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", list(ROPES))
def test_rotary_matches_sglang(case, dtype):
    module = ROPES[case](dtype)
    head_size = module.head_size
    tokens, hq, hk = 7, 4, 2  # GQA: fewer key heads
    max_pos = module.cos_sin_cache.shape[0]
    g = torch.Generator().manual_seed(60)
    positions = torch.randint(0, max_pos, (tokens,), generator=g)
    positions[0] = max_pos - 1  # the last cache row
    query = _randn(tokens, hq * head_size, dtype=dtype, seed=61)
    key = _randn(tokens, hk * head_size, dtype=dtype, seed=62)
    forward, params = _reference_forward("rotary_embedding", module, (positions, query, key))
    assert isinstance(params, RotaryParams)
    assert params.cos_sin_cache is module.cos_sin_cache
    assert (params.head_size, params.rotary_dim, params.is_neox_style) == (
        module.head_size,
        module.rotary_dim,
        module.is_neox_style,
    )
    before = _snapshot(positions, query, key, module.cos_sin_cache)
    ours = forward(positions, query, key)
    _assert_unchanged([positions, query, key, module.cos_sin_cache], before)
    _assert_same(ours, module.forward_native(positions, query, key))


@pytest.mark.parametrize("neox", [True, False], ids=["neox", "gptj"])
def test_rotary_offsets_match_sglang(neox):
    """LinearScaling keeps one cache per factor; ``offsets`` select the 4x one (LoRA batching)."""
    module = LinearScalingRotaryEmbedding(64, 32, 64, 10000, neox, [1.0, 4.0], torch.float32)
    offset = module.scaling_factor_to_offset[4.0]
    assert offset > 0
    positions = torch.tensor([0, 5, 63, 200, 255])
    offsets = torch.full_like(positions, offset)
    offsets[0] = 0  # one token still on the 1x cache
    query, key = _randn(5, 3 * 64, seed=70), _randn(5, 64, seed=71)
    forward, _ = _reference_forward("rotary_embedding", module, (positions, query, key))
    before = _snapshot(positions, offsets, query, key)
    ours = forward(positions, query, key, offsets)
    _assert_unchanged([positions, offsets, query, key], before)
    theirs = module.forward_native(positions, query, key, offsets)
    _assert_same(ours, theirs)
    # ... and the offsets did matter.
    assert not torch.equal(ours[0], forward(positions, query, key)[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_rotary_fp32_cache_with_low_precision_query(dtype):
    """On CUDA (or with SGLANG_ROPE_CACHE_FP32) SGLang keeps an fp32 cache for bf16 queries."""
    module = RotaryEmbedding(64, 64, 128, 10000, True, dtype)
    module.cos_sin_cache = module._compute_cos_sin_cache()  # fp32, as on CUDA
    positions = torch.arange(20, 26)
    query = _randn(6, 2 * 64, dtype=torch.bfloat16, seed=80)
    key = _randn(6, 64, dtype=torch.bfloat16, seed=81)
    forward, _ = _reference_forward("rotary_embedding", module, (positions, query, key))
    _assert_same(forward(positions, query, key), module.forward_native(positions, query, key))


@pytest.mark.parametrize("neox", [True, False], ids=["neox", "gptj"])
def test_rotary_edge_shapes_match_sglang(neox):
    """One token, MQA (a single key head), [T, H, D] inputs, and q/k sliced from a fused qkv."""
    module = RotaryEmbedding(32, 16, 64, 10000, neox, torch.float32)
    forward, _ = _reference_forward(
        "rotary_embedding", module, (torch.tensor([3]), _randn(1, 32), _randn(1, 32))
    )
    one = (torch.tensor([3]), _randn(1, 2 * 32, seed=90), _randn(1, 32, seed=91))
    _assert_same(forward(*one), module.forward_native(*one))

    three_d = (torch.tensor([1, 9, 9]), _randn(3, 4, 32, seed=92), _randn(3, 1, 32, seed=93))
    _assert_same(forward(*three_d), module.forward_native(*three_d))

    qkv = _randn(5, (4 + 2 * 1) * 32, seed=94)
    sliced = (torch.tensor([0, 1, 2, 30, 63]), qkv[:, : 4 * 32], qkv[:, 4 * 32 : 5 * 32])
    before = _snapshot(qkv)
    ours = forward(*sliced)
    _assert_unchanged([qkv], before)
    _assert_same(ours, module.forward_native(*sliced))


def test_rotary_bridge_declines_precomputed_sin_cos_cache():
    module = RotaryEmbedding(32, 32, 64, 10000, True, torch.float32)
    module.sin_cos_cache = module.cos_sin_cache[:4]
    args = (torch.arange(4), _randn(4, 32), _randn(4, 32))
    declined = BRIDGES["rotary_embedding"].params(module, args, {})
    assert isinstance(declined, Refusal) and "sin_cos_cache" in declined.reason
