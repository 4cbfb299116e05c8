"""The reference backend against SGLang's own ``forward_native`` on SGLang's real layer classes.

The modules are SGLang's (random weights); the reference kernels are bound the way the
dispatcher binds them: params from the op's bridge (``BRIDGES[op].params(module, args, {})``,
i.e. ``NormParams(weight=module.weight, eps=module.variance_epsilon, ...)`` /
``RotaryParams(cos_sin_cache=module.cos_sin_cache, head_size, rotary_dim, is_neox_style, ...)``),
then ``ReferenceBackend().implementations()[op].bind(params)``, wrapped by the bridge's
``forward`` so the SGLang calling convention (``post_residual_addition``, ``offsets``) is
exercised too.

Tolerance: where the reference performs the same operations in the same order and precision
as ``forward_native`` (SiLU-and-mul, GELU-and-mul in both approximations, NewGELU, QuickGELU,
RMSNorm, GemmaRMSNorm and Gemma3RMSNorm incl. residual, RMSNormWithoutScale, LayerNorm, all
rotary variants incl. multimodal and DeepSeek's: they only differ in how the cos/sin cache is
built), the results must be *bit-identical* in every dtype, so those comparisons use
``rtol=atol=0``. The documented exceptions: RMSNorm with ``post_residual_addition`` (see the
test there), and DeepSeek's neox style, whose ``forward_native`` returns the same values with
a leading dimension of 1 (``[1, T, H, D]``: an artefact of its ``cos.repeat(1, 1, 2)``) that the
contract, like SGLang's CUDA path, does not have.

The new classes are also dispatched end to end (``test_*_dispatches_through_the_bridge``): a
real Dispatcher over the reference backend is attached to a real SGLang instance the way SGLang
binds a registered forward, and ``module(...)`` must return what ``forward_native`` returns,
then run the installed bridge forward on later calls.

SGLang's layer modules resolve ``current_platform`` on import, so the platform is pinned to
sglang-fl's (``SGLANG_PLATFORM=sglang_fl``, its installed platform entry point) around the
SGLang imports. It is set here with ``setdefault`` (an explicit setting wins) rather than in
a conftest, and removed again once SGLang has cached its platform.
"""

from __future__ import annotations

import functools
import inspect
import os
import warnings
from pathlib import Path

import pytest
import torch

from sglang_fl.backends.reference import ReferenceBackend
from sglang_fl.bundles import discover_bundles
from sglang_fl.compat import fused_ops
from sglang_fl.config import load_settings
from sglang_fl.dispatch.backend import Refusal
from sglang_fl.dispatch.binder import Dispatcher
from sglang_fl.dispatch.dispatch_log import DispatchLog
from sglang_fl.dispatch.registry import build_registry
from sglang_fl.dispatch.selection import plan_op
from sglang_fl.ops.bridges import BRIDGES, RMSNormBridge
from sglang_fl.ops.catalog import (
    DEEPSEEK_SCALING_ROTARY_EMBEDDING,
    FAMILY_BY_CLASS,
    GELU_AND_MUL,
    GEMMA3_RMS_NORM,
    LAYER_NORM,
    MROTARY_EMBEDDING,
    NEW_GELU,
    QUICK_GELU,
    RMS_NORM_WITHOUT_SCALE,
)
from sglang_fl.ops.params import (
    ActivationParams,
    LayerNormParams,
    MRotaryParams,
    NormParams,
    RotaryParams,
)

_PLATFORM_WAS_SET = "SGLANG_PLATFORM" in os.environ
os.environ.setdefault("SGLANG_PLATFORM", "sglang_fl")
try:
    with warnings.catch_warnings():
        # Importing SGLang's layers on a CPU-only host warns about CUDA-only quantisation.
        warnings.simplefilter("ignore")
        from sglang.srt.layers.activation import GeluAndMul, NewGELU, QuickGELU, SiluAndMul
        from sglang.srt.layers.layernorm import (
            Gemma3RMSNorm,
            GemmaRMSNorm,
            LayerNorm,
            RMSNorm,
            RMSNormWithoutScale,
        )
        from sglang.srt.layers.rotary_embedding import get_rope
        from sglang.srt.layers.rotary_embedding.base import (
            LinearScalingRotaryEmbedding,
            RotaryEmbedding,
        )
        from sglang.srt.layers.rotary_embedding.mrope import (
            MRotaryEmbedding,
            YaRNScalingMRotaryEmbedding,
        )
        from sglang.srt.layers.rotary_embedding.rope_variant import (
            DeepseekScalingRotaryEmbedding,
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


# --------------------------------------------------------------------------- activations (new)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("approximate", ["tanh", "none"])
@pytest.mark.parametrize(
    "shape", [(9, 2 * 64), (1, 2 * 33), (0, 2 * 8), (2, 3, 2 * 17)],
    ids=["d64", "one_token_odd_d", "zero_tokens", "3d"],
)  # fmt: skip
def test_gelu_and_mul_matches_sglang(shape, approximate, dtype):
    module = GeluAndMul(approximate=approximate)
    x = _randn(*shape, dtype=dtype, seed=100, scale=3.0)
    forward, params = _reference_forward(GELU_AND_MUL, module, (x,))
    assert isinstance(params, ActivationParams) and params.approximate == approximate
    before = _snapshot(x)
    ours = forward(x)
    _assert_unchanged([x], before)
    _assert_same(ours, module.forward_native(x))


def test_gelu_and_mul_strided_input_matches_sglang():
    module = GeluAndMul()
    wide = _randn(5, 2 * 48 + 6, dtype=torch.bfloat16, seed=101, scale=3.0)
    x = wide[:, 3 : 3 + 2 * 48]
    forward, _ = _reference_forward(GELU_AND_MUL, module, (x,))
    _assert_same(forward(x), module.forward_native(x))


def test_gelu_and_mul_bridge_declines_an_approximation_sglang_rejects():
    """SGLang's own kernels raise for anything but tanh/none (its native path would pass any
    string on to F.gelu); the bridge leaves such an instance on SGLang's path."""
    module = GeluAndMul(approximate="sigmoid")
    declined = BRIDGES[GELU_AND_MUL].params(module, (_randn(2, 8),), {})
    assert isinstance(declined, Refusal)
    assert declined.reason == "approximate='sigmoid' is not one of ('none', 'tanh')"


ELEMENTWISE = {NEW_GELU: NewGELU, QUICK_GELU: QuickGELU}


@pytest.mark.parametrize("op", list(ELEMENTWISE))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    "shape", [(9, 64), (1, 33), (0, 8), (2, 3, 17)],
    ids=["w64", "one_token_odd_w", "zero_tokens", "3d"],
)  # fmt: skip
def test_elementwise_gelus_match_sglang(op, shape, dtype):
    module = ELEMENTWISE[op]()
    x = _randn(*shape, dtype=dtype, seed=102, scale=4.0)
    forward, _ = _reference_forward(op, module, (x,))
    before = _snapshot(x)
    ours = forward(x)
    _assert_unchanged([x], before)
    _assert_same(ours, module.forward_native(x))


# --------------------------------------------------------------------------- norms (new)

GEMMA3_TAKES_A_RESIDUAL = "residual" in inspect.signature(Gemma3RMSNorm.forward_native).parameters


def _gemma3_norm(hidden: int, dtype, seed: int) -> Gemma3RMSNorm:
    return _randomize(Gemma3RMSNorm(hidden, eps=1e-6).to(dtype), seed, scale=0.5)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", NORM_SHAPES, ids=NORM_IDS)
def test_gemma3_rms_norm_matches_sglang(shape, dtype):
    """``forward(x)`` on every release: decoder norms [T, hidden] and the per-head q/k norms
    [T, heads, head_dim]; ``eps`` (not ``variance_epsilon``) and the raw weight reach the
    kernel."""
    module = _gemma3_norm(shape[-1], dtype, seed=110)
    x = _randn(*shape, dtype=dtype, seed=111, scale=2.0)
    forward, params = _reference_forward(GEMMA3_RMS_NORM, module, (x,))
    assert isinstance(params, NormParams)
    assert params.weight is module.weight and params.eps == module.eps
    before = _snapshot(x, module.weight)
    ours = forward(x)
    _assert_unchanged([x, module.weight], before)
    _assert_same(ours, module.forward_native(x))


@pytest.mark.skipif(
    not GEMMA3_TAKES_A_RESIDUAL,
    reason="this SGLang's Gemma3RMSNorm takes no residual (added in 0.5.21)",
)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", NORM_SHAPES[:3], ids=NORM_IDS[:3])
def test_gemma3_rms_norm_residual_matches_sglang(shape, dtype):
    """0.5.21+ decoder layers call ``norm(h, residual)``: ``(norm(h + residual), h + residual)``
    with the sum in the input dtype, as forward_native computes it."""
    module = _gemma3_norm(shape[-1], dtype, seed=112)
    x = _randn(*shape, dtype=dtype, seed=113, scale=2.0)
    residual = _randn(*shape, dtype=dtype, seed=114)
    forward, _ = _reference_forward(GEMMA3_RMS_NORM, module, (x, residual))
    before = _snapshot(x, residual)
    ours = forward(x, residual)
    _assert_unchanged([x, residual], before)
    _assert_same(ours, module.forward_native(x, residual))
    _assert_same(forward(x, residual=residual), module.forward_native(x, residual=residual))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [*NORM_SHAPES, (0, 16)], ids=[*NORM_IDS, "zero_tokens"])
def test_rms_norm_without_scale_matches_sglang(shape, dtype):
    module = RMSNormWithoutScale(shape[-1], eps=1e-5)
    x = _randn(*shape, dtype=dtype, seed=120, scale=2.0)
    forward, params = _reference_forward(RMS_NORM_WITHOUT_SCALE, module, (x,))
    assert params.weight is None and params.eps == module.eps
    before = _snapshot(x)
    ours = forward(x)
    _assert_unchanged([x], before)
    _assert_same(ours, module.forward_native(x))


def _layer_norm(hidden, affine, bias, param_dtype, seed) -> LayerNorm:
    """SGLang's LayerNorm, its weight and bias randomized even where its flags switch them off
    (then SGLang ignores them, and so must the bridge)."""
    module = LayerNorm(hidden, eps=1e-5, elementwise_affine=affine, bias=bias, dtype=param_dtype)
    with torch.no_grad():
        module.weight.copy_(_randn(hidden, dtype=param_dtype, seed=seed) * 0.5 + 1)
        module.bias.copy_(_randn(hidden, dtype=param_dtype, seed=seed + 1))
    return module


@pytest.mark.parametrize(
    ("dtype", "param_dtype"),
    [(torch.bfloat16, torch.float32), (torch.float16, torch.float32),
     (torch.float32, torch.float32), (torch.bfloat16, torch.bfloat16)],
    ids=["bf16-in-fp32-params", "fp16-in-fp32-params", "fp32", "bf16-in-bf16-params"],
)  # fmt: skip
@pytest.mark.parametrize(("affine", "bias"), [(True, True), (True, False), (False, False)],
                         ids=["affine-bias", "affine", "plain"])  # fmt: skip
@pytest.mark.parametrize("shape", [(7, 96), (1, 33), (2, 3, 48)], ids=["h96", "one_h33", "3d"])
def test_layer_norm_matches_sglang(shape, affine, bias, dtype, param_dtype):
    module = _layer_norm(shape[-1], affine, bias, param_dtype, seed=130)
    x = _randn(*shape, dtype=dtype, seed=131, scale=2.0) + 1
    forward, params = _reference_forward(LAYER_NORM, module, (x,))
    assert isinstance(params, LayerNormParams)
    assert params.weight is (module.weight if affine else None)
    assert params.bias is (module.bias if bias else None)
    assert params.compute_dtype == param_dtype and params.eps == module.variance_epsilon
    before = _snapshot(x)
    ours = forward(x)
    _assert_unchanged([x], before)
    _assert_same(ours, module.forward_native(x))


def test_layer_norm_strided_input_matches_sglang():
    module = _layer_norm(40, True, True, torch.float32, seed=132)
    wide = _randn(6, 50, dtype=torch.bfloat16, seed=133)
    x = wide[:, 5:45]
    forward, _ = _reference_forward(LAYER_NORM, module, (x,))
    _assert_same(forward(x), module.forward_native(x))


# --------------------------------------------------------------------------- mrope


def _mrope_cases():
    """Qwen2-VL / 2.5-VL (chunked), Qwen3-VL (interleaved), partial rotary, YaRN-scaled."""
    return {
        "chunked_neox": lambda dt: MRotaryEmbedding(
            128, 128, 512, 1e6, True, dt, mrope_section=[16, 24, 24]
        ),
        "interleaved_neox": lambda dt: MRotaryEmbedding(
            128, 128, 512, 5e6, True, dt, mrope_section=[24, 20, 20], mrope_interleaved=True
        ),
        "chunked_gptj_partial": lambda dt: MRotaryEmbedding(
            96, 64, 512, 10000, False, dt, mrope_section=[8, 12, 12]
        ),
        "yarn_interleaved": lambda dt: YaRNScalingMRotaryEmbedding(
            64, 64, 256, 10000, True, 2.0, dt, mrope_section=[8, 12, 12],
            mrope_interleaved=True,
        ),
    }  # fmt: skip


MROPES = _mrope_cases()


def _mrope_positions(tokens: int, max_pos: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    positions = torch.randint(0, max_pos, (3, tokens), generator=g)
    positions[:, 0] = max_pos - 1  # the last cache row, on every axis
    return positions


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", list(MROPES))
@pytest.mark.parametrize("multimodal", [True, False], ids=["3xT", "T"])
def test_mrotary_matches_sglang(case, multimodal, dtype):
    module = MROPES[case](dtype)
    head_size, max_pos = module.head_size, module.cos_sin_cache.shape[0]
    tokens, hq, hk = 7, 4, 2
    positions = _mrope_positions(tokens, max_pos, seed=140)
    if not multimodal:
        positions = positions[1]  # text only: one row
    qkv = _randn(tokens, (hq + 2 * hk) * head_size, dtype=dtype, seed=141)
    query, key = qkv[:, : hq * head_size], qkv[:, hq * head_size : (hq + hk) * head_size]
    forward, params = _reference_forward(MROTARY_EMBEDDING, module, (positions, query, key))
    assert isinstance(params, MRotaryParams)
    assert params.cos_sin_cache is module.cos_sin_cache
    assert params.mrope_section == tuple(module.mrope_section)
    assert params.interleaved == module.mrope_interleaved
    before = _snapshot(positions, qkv, module.cos_sin_cache)
    ours = forward(positions, query, key)
    _assert_unchanged([positions, qkv, module.cos_sin_cache], before)
    _assert_same(ours, module.forward_native(positions, query, key))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_mrotary_fp32_cache_with_low_precision_query(dtype):
    """The cache as SGLang keeps it on CUDA hardware (fp32) under a half-precision query."""
    module = MRotaryEmbedding(128, 128, 512, 1e6, True, dtype, mrope_section=[16, 24, 24])
    module.cos_sin_cache = module._compute_cos_sin_cache()
    assert module.cos_sin_cache.dtype == torch.float32
    positions = _mrope_positions(5, 512, seed=142)
    query = _randn(5, 2 * 128, dtype=dtype, seed=143)
    key = _randn(5, 128, dtype=dtype, seed=144)
    forward, _ = _reference_forward(MROTARY_EMBEDDING, module, (positions, query, key))
    _assert_same(forward(positions, query, key), module.forward_native(positions, query, key))


def test_mrotary_sections_change_the_result():
    """Control: with h and w unlike t, the [3, T] result differs from plain rope at t."""
    module = MROPES["chunked_neox"](torch.float32)
    positions = _mrope_positions(6, 512, seed=145)
    query, key = _randn(6, 2 * 128, seed=146), _randn(6, 128, seed=147)
    forward, _ = _reference_forward(MROTARY_EMBEDDING, module, (positions, query, key))
    assert not torch.equal(forward(positions, query, key)[0], forward(positions[0], query, key)[0])


def test_mrotary_bridge_declines_glm_interleaving():
    """``mrope_interleaved_glm`` is honoured by SGLang's Triton kernel only, not by its own
    forward_native: such an instance stays on SGLang's path."""
    module = MRotaryEmbedding(64, 64, 128, 10000, True, torch.float32, mrope_section=[8, 12, 12],
                              mrope_interleaved=True, mrope_interleaved_glm=True)  # fmt: skip
    args = (_mrope_positions(3, 128, seed=148), _randn(3, 64), _randn(3, 64))
    declined = BRIDGES[MROTARY_EMBEDDING].params(module, args, {})
    assert isinstance(declined, Refusal) and "mrope_interleaved_glm=True" in declined.reason


def test_mrotary_call_with_fused_set_kv_buffer_arg_runs_sglangs_own_path():
    """Like RMSNorm's quant_linear: a call that also writes the KV cache goes to SGLang's own
    forward with SGLang's argument order, and the kernel does not run. (SGLang's models never
    pass it to MRotaryEmbedding, whose forward_native rejects it.)"""
    module = MROPES["chunked_neox"](torch.bfloat16)
    positions = _mrope_positions(4, 512, seed=149)
    query, key = _randn(4, 128, dtype=torch.bfloat16), _randn(4, 128, dtype=torch.bfloat16)
    kv_arg, own_calls, kernel_calls = object(), [], []

    def own(*args, **kwargs):
        own_calls.append((args, kwargs))
        return "own"

    forward = BRIDGES[MROTARY_EMBEDDING].forward(module, lambda *a: kernel_calls.append(a), own)
    assert forward(positions, query, key, fused_set_kv_buffer_arg=kv_arg) == "own"
    assert own_calls == [((positions, query, key, kv_arg), {})] and kernel_calls == []
    with pytest.raises(AssertionError):  # what SGLang's own native path does with it
        module.forward_native(positions, query, key, kv_arg)


# --------------------------------------------------------------------------- DeepSeek rope


def _deepseek(neox: bool, dtype, rotary_dim: int = 64, head_size: int = 64):
    return DeepseekScalingRotaryEmbedding(
        head_size, rotary_dim, 256, 10000, neox, 4.0, dtype, mscale=1.0, mscale_all_dim=0.707,
        beta_fast=32, beta_slow=1, device="cpu",
    )  # fmt: skip


def _mla_inputs(tokens: int, heads: int, head_size: int, dtype, seed: int):
    """q_pe [T, H, D] and k_pe [T, 1, D] sliced out of wider tensors, as MLA passes them."""
    q_full = _randn(tokens, heads, 128 + head_size, dtype=dtype, seed=seed)
    latent = _randn(tokens, 1, 512 + head_size, dtype=dtype, seed=seed + 1)
    return q_full, latent, q_full[..., 128:], latent[..., 512:]


DEEPSEEK_STYLES = [
    pytest.param(False, 64, id="interleaved-mla"),
    pytest.param(True, 64, id="neox-mla"),
    pytest.param(False, 32, id="interleaved-partial"),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("cache", ["fp32", "model"])
@pytest.mark.parametrize(("neox", "rotary_dim"), DEEPSEEK_STYLES)
def test_deepseek_rotary_matches_sglang(neox, rotary_dim, cache, dtype):
    """Bit-identical in the promoted dtype of query and cache; for the neox style SGLang's
    native result carries a leading 1 ([1, T, H, D]), compared here without it."""
    head_size = 64
    module = _deepseek(neox, dtype, rotary_dim, head_size)
    assert module.mscale != 1.0  # the scaling is in the cache
    if cache == "fp32":
        module.cos_sin_cache = module._compute_cos_sin_cache()  # as SGLang keeps it on CUDA
    tokens = 7
    g = torch.Generator().manual_seed(150)
    positions = torch.randint(0, module.cos_sin_cache.shape[0], (tokens,), generator=g)
    q_full, latent, q_pe, k_pe = _mla_inputs(tokens, 4, head_size, dtype, seed=151)
    forward, params = _reference_forward(DEEPSEEK_SCALING_ROTARY_EMBEDDING, module,
                                         (positions, q_pe, k_pe))  # fmt: skip
    assert isinstance(params, RotaryParams) and params.cos_sin_cache is module.cos_sin_cache
    before = _snapshot(q_full, latent, module.cos_sin_cache)
    ours = forward(positions, q_pe, k_pe)
    _assert_unchanged([q_full, latent, module.cos_sin_cache], before)
    theirs = module.forward_native(positions, q_pe, k_pe)
    if neox:
        assert theirs[0].shape == (1, *q_pe.shape) and theirs[1].shape == (1, *k_pe.shape)
        theirs = (theirs[0].squeeze(0), theirs[1].squeeze(0))
    _assert_same(ours, theirs)


def test_deepseek_neox_partial_rotary_fails_in_sglangs_native_path():
    """Why the neox style with rotary_dim < head_size is not compared above: SGLang's own
    forward_native cannot concatenate its [1, T, H, R] rotated part with the [T, H, D - R]
    pass-through. The contract (and SGLang's CUDA path) keep [T, H, D]; the conformance suite
    checks that case against the reference."""
    module = _deepseek(True, torch.float32, rotary_dim=32, head_size=64)
    _, _, q_pe, k_pe = _mla_inputs(3, 2, 64, torch.float32, seed=153)
    positions = torch.tensor([0, 1, 2])
    with pytest.raises(RuntimeError, match="same number of dimensions"):
        module.forward_native(positions, q_pe, k_pe)
    forward, _ = _reference_forward(DEEPSEEK_SCALING_ROTARY_EMBEDDING, module,
                                    (positions, q_pe, k_pe))  # fmt: skip
    q_out, k_out = forward(positions, q_pe, k_pe)
    assert q_out.shape == q_pe.shape and k_out.shape == k_pe.shape
    assert torch.equal(q_out[..., 32:], q_pe[..., 32:])  # the pass-through part


def test_deepseek_rotary_offsets_match_sglang():
    module = _deepseek(False, torch.float32)
    positions, offsets = torch.tensor([0, 3, 9]), torch.tensor([5, 5, 100])
    _, _, q_pe, k_pe = _mla_inputs(3, 2, 64, torch.float32, seed=152)
    forward, _ = _reference_forward(DEEPSEEK_SCALING_ROTARY_EMBEDDING, module,
                                    (positions, q_pe, k_pe))  # fmt: skip
    ours = forward(positions, q_pe, k_pe, offsets)
    _assert_same(ours, module.forward_native(positions, q_pe, k_pe, offsets))
    assert not torch.equal(ours[0], forward(positions, q_pe, k_pe)[0])


# --------------------------------------------------------------------------- dispatch


def _dispatcher(tmp_path: Path) -> Dispatcher:
    """The real Dispatcher over the real registry, every op planned onto the reference."""
    settings = load_settings(env={"SGLANG_FL_PREFER": "reference", "SGLANG_FL_STRICT": "1"})
    registry = build_registry(discover_bundles())
    plans = {op: plan_op(op, settings, registry) for op in BRIDGES}
    return Dispatcher(plans, DispatchLog(tmp_path / "dispatch.log"), fused_ops.install_forward,
                      functools.partial(fused_ops.own_path, dispatch_key="native"))  # fmt: skip


def _attach(module: torch.nn.Module, dispatcher: Dispatcher) -> torch.nn.Module:
    """What SGLang does with a forward registered for the instance's class: bind it."""
    name = type(module).__name__
    op = FAMILY_BY_CLASS[name].name
    module._forward_method = functools.partial(dispatcher.trampoline(BRIDGES[op], name), module)
    return module


def _dispatch_cases():
    """(module, args) per new class, as their models call them."""
    bf16 = torch.bfloat16
    mrope = MRotaryEmbedding(64, 64, 128, 10000, True, bf16, mrope_section=[8, 12, 12])
    yarn_mrope = YaRNScalingMRotaryEmbedding(
        64, 64, 128, 10000, True, 2.0, bf16, mrope_section=[8, 12, 12], mrope_interleaved=True
    )
    _, _, q_pe, k_pe = _mla_inputs(3, 2, 64, bf16, seed=160)
    return {
        "GeluAndMul": (GeluAndMul(), (_randn(3, 64, dtype=bf16, seed=161),)),
        "NewGELU": (NewGELU(), (_randn(3, 64, dtype=bf16, seed=162),)),
        "QuickGELU": (QuickGELU(), (_randn(3, 64, dtype=bf16, seed=163),)),
        "Gemma3RMSNorm": (_gemma3_norm(64, bf16, 164), (_randn(3, 4, 64, dtype=bf16, seed=165),)),
        "RMSNormWithoutScale": (RMSNormWithoutScale(64), (_randn(3, 64, dtype=bf16, seed=166),)),
        "LayerNorm": (_layer_norm(64, True, True, torch.float32, 167),
                      (_randn(3, 64, dtype=bf16, seed=168),)),
        "MRotaryEmbedding": (mrope, (_mrope_positions(3, 128, 169), _randn(3, 128, dtype=bf16),
                                     _randn(3, 64, dtype=bf16))),
        "YaRNScalingMRotaryEmbedding": (yarn_mrope, (_mrope_positions(3, 128, 170),
                                                     _randn(3, 128, dtype=bf16),
                                                     _randn(3, 64, dtype=bf16))),
        "DeepseekScalingRotaryEmbedding": (_deepseek(False, bf16),
                                           (torch.tensor([1, 2, 3]), q_pe, k_pe)),
    }  # fmt: skip


# built lazily (SGLang 0.5.15's rotary constructors read the server args the fixture publishes)
DISPATCHED = ("GeluAndMul", "NewGELU", "QuickGELU", "Gemma3RMSNorm", "RMSNormWithoutScale",
              "LayerNorm", "MRotaryEmbedding", "YaRNScalingMRotaryEmbedding",
              "DeepseekScalingRotaryEmbedding")  # fmt: skip


@pytest.mark.parametrize("name", DISPATCHED)
def test_new_classes_dispatch_through_the_bridge(name, tmp_path):
    """module(...) through a trampoline bound like SGLang binds a registered forward: the first
    call binds the reference through the bridge and installs its forward; both calls return
    what SGLang's forward_native returns; the dispatch log names the class."""
    cases = _dispatch_cases()
    assert set(cases) == set(DISPATCHED)
    module, args = cases[name]
    assert type(module).__name__ == name
    expected = module.forward_native(*args)
    dispatcher = _dispatcher(tmp_path)
    _attach(module, dispatcher)
    _assert_same(module(*args), expected)
    binding = dispatcher.bindings[module]
    assert binding.impl_id == "reference"
    assert module._forward_method is binding.forward  # the bridge forward, not the trampoline
    _assert_same(module(*args), expected)
    assert module._forward_method is binding.forward
    assert name in (tmp_path / "dispatch.log").read_text()


def test_every_new_class_is_a_family_member_in_this_sglang():
    """The classes above are the ones Layer 2 registers here (family_classes), so what is
    dispatched in this test is what a server dispatches."""
    from sglang_fl.ops.catalog import OP_FAMILIES

    found = {name for family in OP_FAMILIES for name in fused_ops.family_classes(family)}
    assert set(DISPATCHED) <= found
