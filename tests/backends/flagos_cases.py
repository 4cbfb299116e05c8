"""The flagos kernels' test cases, shared by the CPU-interpreter and the CUDA test modules.

Each ``check_*`` runs one case on ``device`` ("cpu": Triton's interpreter, which the caller must
have enabled before Triton was imported; "cuda": the compiled kernels) through the backend's
own bind path (``FlagosBackend().implementations()[op].bind(params)``) and through the plain
launchers, and compares with the reference math (``sglang_fl/backends/reference/math.py``)
evaluated in fp32 on the same (already rounded) inputs and rounded once to the dtype: the
kernels compute in fp32 and round once, so that is what they must reproduce.

Tolerances (one ulp = 2**-23 fp32, 2**-7 bf16, 2**-10 fp16, relative):
* fp32: rtol 1e-5 (different summation orders, approximate rsqrt/exp on the GPU).
* bf16/fp16: one ulp: our fp32 value and the reference's differ by fp32 noise only, which can
  push a value across a rounding boundary once. Triton 3.9's interpreter converts fp32 to bf16
  by truncation instead of round-to-nearest-even (its ``cast_impl``), one more ulp: bf16 on
  "cpu" allows two.
* An absolute floor of 1e-5 for results that cancel to ~0 (rotary): inputs are ~N(0, 1), so
  fp32 noise is ~1e-6 absolute.
* Residual sums written by the fused norms are the fp32 sum rounded once: bit-exact on CUDA.
* Where rounding is to nearest even (all but bf16 in the interpreter), at most 1% of the
  elements may differ from the once-rounded reference at all: fp32 noise moves a value across a
  rounding boundary rarely, while a kernel that rounds at a different step (say, normalises the
  unrounded Gemma sum) differs in a large share of the elements by one ulp.
Every new output is first filled with NaN (``out=``) so an unwritten element fails; in-place
ops must leave everything outside their target untouched (checked bit for bit).
"""

from __future__ import annotations

import torch

from sglang_fl.backends.reference import math as ref
from sglang_fl.ops.params import (
    ActivationParams,
    LayerNormParams,
    MRotaryParams,
    NormParams,
    RotaryParams,
)

# The flagos activation kernel's ops, with SGLang's ``approximate`` where the op has one.
ACTIVATIONS = (
    ("gelu_and_mul", "none"),
    ("gelu_and_mul", "tanh"),
    ("new_gelu", "none"),
    ("quick_gelu", "none"),
)
ULP = {torch.float32: 0.0, torch.bfloat16: 2.0**-7, torch.float16: 2.0**-10}
ATOL = 1e-5
MAX_DIFFERING = 0.01


def _rtol(dtype: torch.dtype, device: str) -> float:
    if dtype == torch.float32:
        return 1e-5
    ulps = 2 if (dtype == torch.bfloat16 and device == "cpu") else 1
    return ulps * ULP[dtype] * 1.001  # the margin only absorbs the float comparison itself


def assert_rounded(actual: torch.Tensor, exact: torch.Tensor, dtype: torch.dtype, device: str):
    """``actual`` (dtype) is ``exact`` (fp32) rounded to dtype, within the tolerances above."""
    assert actual.dtype == dtype
    rounded = exact.float().to(dtype)
    torch.testing.assert_close(
        actual.float(), rounded.float(), rtol=_rtol(dtype, device), atol=ATOL
    )
    if dtype != torch.float32 and not (dtype == torch.bfloat16 and device == "cpu"):
        differing = (actual != rounded).sum().item()
        assert differing <= MAX_DIFFERING * actual.numel(), (
            f"{differing} of {actual.numel()} elements differ from the once-rounded reference"
        )


def _randn(shape, dtype, device, seed, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=gen) * scale).to(dtype).to(device)


def _impl(op: str):
    from sglang_fl.backends.flagos import FlagosBackend

    return FlagosBackend().implementations()[op]


def _kernels():
    from sglang_fl.backends.flagos import kernels

    return kernels


def _rows(shape_tokens: int, width: int, layout: str, dtype, device, seed) -> torch.Tensor:
    """A ``[tokens, width]`` input: contiguous, a row-strided slice of a wider tensor, or (3d)
    ``[2, tokens/2, width]``-shaped when tokens is even (else contiguous)."""
    if layout == "strided":
        return _randn((shape_tokens, width + 24), dtype, device, seed)[:, 8 : 8 + width]
    x = _randn((shape_tokens, width), dtype, device, seed)
    if layout == "3d" and shape_tokens % 2 == 0:
        return x.view(2, shape_tokens // 2, width)
    return x


# ---- silu_and_mul ---------------------------------------------------------------------------


def check_silu_and_mul(device: str, dtype: torch.dtype, tokens: int, d: int, layout: str):
    x = _rows(tokens, 2 * d, layout, dtype, device, seed=tokens * 7 + d)
    before = x.clone()
    exact = ref.silu_and_mul(x.float())
    got = _impl("silu_and_mul").bind(ActivationParams(dtype, torch.device(device)))(x)
    assert got.shape == (*x.shape[:-1], d)
    assert_rounded(got, exact, dtype, device)
    poisoned = torch.full_like(got, float("nan"))
    assert _kernels().silu_and_mul(x, out=poisoned) is poisoned
    assert_rounded(poisoned, exact, dtype, device)
    assert torch.equal(x, before)  # input untouched


# ---- gelu_and_mul, new_gelu, quick_gelu -----------------------------------------------------


def check_activation(
    device: str, dtype: torch.dtype, op: str, tokens: int, d: int, layout: str,
    approximate: str = "none",
):  # fmt: skip
    """``op``: gelu_and_mul (width 2d, ``approximate``), new_gelu or quick_gelu (width d)."""
    gated = op == "gelu_and_mul"
    x = _rows(tokens, 2 * d if gated else d, layout, dtype, device, seed=tokens * 5 + d)
    before = x.clone()
    if gated:
        exact = ref.gelu_and_mul(x.float(), approximate)
        launch = lambda x, out: _kernels().gelu_and_mul(x, approximate, out=out)  # noqa: E731
    else:
        exact = {"new_gelu": ref.new_gelu, "quick_gelu": ref.quick_gelu}[op](x.float())
        launch = getattr(_kernels(), op)
    params = ActivationParams(dtype, torch.device(device), int(x.shape[-1]), approximate)
    got = _impl(op).bind(params)(x)
    assert got.shape == (*x.shape[:-1], d)
    assert_rounded(got, exact, dtype, device)
    poisoned = torch.full_like(got, float("nan"))
    assert launch(x, out=poisoned) is poisoned
    assert_rounded(poisoned, exact, dtype, device)
    assert torch.equal(x, before)


def check_gelu_variants_differ(device: str):
    """The exact and the tanh gelu differ where they should (~1e-3 around |x| ~ 2): a kernel
    that ignored ``approximate`` would pass both checks above within bf16, not in fp32."""
    x = torch.linspace(-4, 4, 2 * 256, device=device).view(1, -1)
    exact = _kernels().gelu_and_mul(x, "none")
    tanh = _kernels().gelu_and_mul(x, "tanh")
    assert (exact - tanh).abs().max().item() > 1e-4
    assert_rounded(exact, ref.gelu_and_mul(x, "none"), torch.float32, device)
    assert_rounded(tanh, ref.gelu_and_mul(x, "tanh"), torch.float32, device)


# ---- rms_norm / gemma_rms_norm --------------------------------------------------------------


def check_norm(
    device: str,
    dtype: torch.dtype,
    tokens: int,
    hidden: int,
    residual: bool,
    gemma: bool,
    layout: str,
    weight_dtype: torch.dtype | None = None,
):
    """Plain norm (new output) or fused add + norm (in place on x and residual)."""
    seed = tokens * 31 + hidden
    weight = _randn((hidden,), weight_dtype or dtype, device, seed, scale=0.5) + 1
    eps = 1e-6
    x = _rows(tokens, hidden, layout, dtype, device, seed + 1)
    res = _randn(x.shape, dtype, device, seed + 2) if residual else None
    op = "gemma_rms_norm" if gemma else "rms_norm"
    bound = _impl(op).bind(NormParams(weight, eps, hidden, dtype, torch.device(device)))
    if not residual:
        exact = _exact_norm(x.float(), weight, eps, gemma)
        before = x.clone()
        assert_rounded(bound(x, None), exact, dtype, device)
        assert torch.equal(x, before)
        launch = _kernels().gemma_rms_norm if gemma else _kernels().rms_norm
        poisoned = torch.full(x.shape, float("nan"), dtype=dtype, device=device)
        assert launch(x, weight, eps, out=poisoned) is poisoned
        assert_rounded(poisoned, exact, dtype, device)
        return
    x_in, res_in = x.clone(), res.clone()
    base = x._base if layout == "strided" else None
    base_before = None if base is None else base.clone()
    out, new_res = bound(x, res)
    assert out is x and new_res is res  # in place
    exact_sum = x_in.float() + res_in.float()
    assert_rounded(new_res, exact_sum, dtype, device)
    if device == "cuda":
        assert torch.equal(new_res, exact_sum.to(dtype))
    # RMSNorm normalises the fp32 sum; Gemma the rounded sum it stored (SGLang's semantics)
    normalised = new_res.float() if gemma else exact_sum
    assert_rounded(out, _exact_norm(normalised, weight, eps, gemma), dtype, device)
    if base is not None:  # the columns around the slice are untouched
        assert torch.equal(base[:, :8], base_before[:, :8])
        assert torch.equal(base[:, 8 + hidden :], base_before[:, 8 + hidden :])


def _exact_norm(h32: torch.Tensor, weight: torch.Tensor, eps: float, gemma: bool):
    norm = ref.gemma_rms_norm if gemma else ref.rms_norm
    return norm(h32, None, weight.float(), eps)


def check_gemma3_norm(device: str, dtype: torch.dtype, residual: bool):
    """gemma3_rms_norm binds Gemma's kernels: plain on Gemma 3's ``[tokens, heads, head_dim]``
    q/k norms (a 3-D input, the weight over head_dim), and the residual form on rows."""
    hidden, eps = 256, 1e-6
    weight = _randn((hidden,), dtype, device, seed=3, scale=0.5)
    bound = _impl("gemma3_rms_norm").bind(NormParams(weight, eps, hidden, dtype,
                                                     torch.device(device)))  # fmt: skip
    if not residual:
        x = _randn((5, 4, hidden), dtype, device, seed=4)
        assert_rounded(bound(x, None), _exact_norm(x.float(), weight, eps, True), dtype, device)
        return
    x, res = _randn((5, hidden), dtype, device, seed=5), _randn((5, hidden), dtype, device, 6)
    x_in, res_in = x.clone(), res.clone()
    out, new_res = bound(x, res)
    assert_rounded(new_res, x_in.float() + res_in.float(), dtype, device)
    assert_rounded(out, _exact_norm(new_res.float(), weight, eps, True), dtype, device)


def check_norm_without_scale(device: str, dtype: torch.dtype, tokens: int, hidden: int,
                             layout: str):  # fmt: skip
    eps = 1e-5
    x = _rows(tokens, hidden, layout, dtype, device, seed=tokens + hidden)
    before = x.clone()
    bound = _impl("rms_norm_without_scale").bind(
        NormParams(None, eps, hidden, dtype, torch.device(device))
    )
    exact = ref.rms_norm_without_scale(x.float(), eps)
    assert_rounded(bound(x, None), exact, dtype, device)
    poisoned = torch.full(x.shape, float("nan"), dtype=dtype, device=device)
    assert _kernels().norm(x, None, eps, out=poisoned) is poisoned
    assert_rounded(poisoned, exact, dtype, device)
    assert torch.equal(x, before)


# ---- layer_norm -----------------------------------------------------------------------------


def check_layer_norm(
    device: str, dtype: torch.dtype, tokens: int, hidden: int, layout: str, weight: bool,
    bias: bool, param_dtype: torch.dtype = torch.float32,
):  # fmt: skip
    """SGLang's LayerNorm: parameters in ``param_dtype`` (fp32 by default), computed in it."""
    eps = 1e-6
    x = _rows(tokens, hidden, layout, dtype, device, seed=tokens * 11 + hidden)
    w = _randn((hidden,), param_dtype, device, seed=7, scale=0.5) + 1 if weight else None
    b = _randn((hidden,), param_dtype, device, seed=8, scale=0.5) if bias else None
    before = x.clone()
    params = LayerNormParams(w, b, eps, hidden, param_dtype, dtype, torch.device(device))
    exact = ref.layer_norm(x.float(), None if w is None else w.float(),
                           None if b is None else b.float(), eps, torch.float32)  # fmt: skip
    got = _impl("layer_norm").bind(params)(x)
    assert got.shape == x.shape
    assert_rounded(got, exact, dtype, device)
    poisoned = torch.full(x.shape, float("nan"), dtype=dtype, device=device)
    assert _kernels().layer_norm(x, w, b, eps, out=poisoned) is poisoned
    assert_rounded(poisoned, exact, dtype, device)
    assert torch.equal(x, before)


# ---- rotary_embedding -----------------------------------------------------------------------


def rope_cache(rotary_dim: int, max_positions: int, dtype: torch.dtype, device: str):
    inv_freq = 1.0 / (10000 ** (torch.arange(0, rotary_dim, 2, dtype=torch.float) / rotary_dim))
    freqs = torch.outer(torch.arange(max_positions, dtype=torch.float), inv_freq)
    return torch.cat((freqs.cos(), freqs.sin()), dim=-1).to(dtype).to(device)


def rope_inputs(tokens, q_heads, k_heads, head_size, layout, dtype, device, seed):
    """``(q, k, qkv)``: views into one fused qkv tensor (``layout`` "qkv": ``[T, H*D]`` views
    with a row stride > H*D; "qkv3d": ``[T, H, D]`` views), or separate contiguous tensors."""
    width = (q_heads + 2 * k_heads) * head_size
    qkv = _randn((tokens, width), dtype, device, seed)
    if layout == "contiguous":
        q = qkv[:, : q_heads * head_size].clone()
        k = qkv[:, q_heads * head_size : (q_heads + k_heads) * head_size].clone()
        return q, k, qkv
    if layout == "qkv3d":
        heads = qkv.view(tokens, q_heads + 2 * k_heads, head_size)
        return heads[:, :q_heads], heads[:, q_heads : q_heads + k_heads], qkv
    q_end = q_heads * head_size
    return qkv[:, :q_end], qkv[:, q_end : q_end + k_heads * head_size], qkv


def check_rotary(
    device: str,
    dtype: torch.dtype,
    tokens: int,
    head_size: int,
    rotary_dim: int,
    is_neox: bool,
    layout: str = "qkv",
    pos_dtype: torch.dtype = torch.int64,
    cache_dtype: torch.dtype = torch.float32,
    with_key: bool = True,
    q_heads: int = 4,
    k_heads: int = 2,
):
    max_positions = 64
    cache = rope_cache(rotary_dim, max_positions, cache_dtype, device)
    gen = torch.Generator().manual_seed(tokens + rotary_dim)
    positions = torch.randint(0, max_positions, (tokens,), generator=gen).to(pos_dtype).to(device)
    q, k, qkv = rope_inputs(
        tokens, q_heads, k_heads, head_size, layout, dtype, device, seed=tokens * 3 + head_size
    )
    qkv_before, q_before, k_before = qkv.clone(), q.clone(), k.clone()
    key = k if with_key else None
    exact_q, exact_k = _exact_rotary(positions, q, k, cache, head_size, rotary_dim, is_neox)
    params = RotaryParams(cache, head_size, rotary_dim, is_neox, dtype, torch.device(device))
    got_q, got_k = _impl("rotary_embedding").bind(params)(positions, q, key)
    assert got_q is q and got_k is key  # in place, the same tensors back
    assert_rounded(q, exact_q, dtype, device)
    if with_key:
        assert_rounded(k, exact_k, dtype, device)
    else:
        assert torch.equal(k, k_before)
    _assert_rest_untouched(q, q_before, head_size, rotary_dim)
    _assert_rest_untouched(k, k_before, head_size, rotary_dim)
    if layout != "contiguous":  # v (and k when key is None) inside the qkv tensor untouched
        start = (q_heads + (k_heads if with_key else 0)) * head_size
        assert torch.equal(qkv[:, start:], qkv_before[:, start:])


def _exact_rotary(positions, q, k, cache, head_size, rotary_dim, is_neox):
    cos, sin = ref.split_cos_sin(cache.float())
    return ref.rotary_embedding(
        positions.long().flatten(), q.float(), k.float(), cos, sin, head_size, rotary_dim, is_neox
    )


def _assert_rest_untouched(x, before, head_size, rotary_dim):
    heads, heads_before = (t.reshape(t.shape[0], -1, head_size) for t in (x, before))
    assert torch.equal(heads[..., rotary_dim:], heads_before[..., rotary_dim:])


def check_rotary_positions_2d(device: str, dtype: torch.dtype):
    """Positions given as ``[1, T]`` (any shape with T elements) are flattened, not rejected."""
    cache = rope_cache(64, 64, torch.float32, device)
    positions = torch.arange(6, device=device).flip(0)
    q, k, _ = rope_inputs(6, 2, 1, 64, "qkv", dtype, device, seed=5)
    q2, k2 = q.clone(), k.clone()
    launch = _kernels().rotary_embedding
    launch(positions, q, k, cache, 64, 64, True)
    launch(positions.view(1, -1), q2, k2, cache, 64, 64, True)
    assert torch.equal(q, q2) and torch.equal(k, k2)


# ---- mrotary_embedding ----------------------------------------------------------------------


def check_mrotary(
    device: str, dtype: torch.dtype, tokens: int, section: tuple[int, int, int],
    interleaved: bool, is_neox: bool = True, head_size: int = 128, flat_positions: bool = False,
):  # fmt: skip
    """Multimodal rope on ``[3, T]`` positions (or ``[T]`` with ``flat_positions``), q and k
    views of a fused qkv, against the reference's mrope."""
    rotary_dim, max_positions = 2 * sum(section), 64
    cache = rope_cache(rotary_dim, max_positions, torch.float32, device)
    gen = torch.Generator().manual_seed(tokens * 13 + rotary_dim)
    shape = (tokens,) if flat_positions else (3, tokens)
    positions = torch.randint(0, max_positions, shape, generator=gen).to(device)
    q, k, qkv = rope_inputs(tokens, 4, 2, head_size, "qkv", dtype, device, seed=tokens + 1)
    q_before, k_before, qkv_before = q.clone(), k.clone(), qkv.clone()
    cos, sin = ref.split_cos_sin(cache.float())
    axes = ref.mrope_axes(rotary_dim // 2, section, interleaved, torch.device(device))
    exact_q, exact_k = ref.mrotary_embedding(positions, q.float(), k.float(), cos, sin, axes,
                                             head_size, rotary_dim, is_neox)  # fmt: skip
    params = MRotaryParams(cache, head_size, rotary_dim, is_neox, section, interleaved, dtype,
                           torch.device(device))  # fmt: skip
    got_q, got_k = _impl("mrotary_embedding").bind(params)(positions, q, k)
    assert got_q is q and got_k is k
    assert_rounded(q, exact_q, dtype, device)
    assert_rounded(k, exact_k, dtype, device)
    _assert_rest_untouched(q, q_before, head_size, rotary_dim)
    _assert_rest_untouched(k, k_before, head_size, rotary_dim)
    assert torch.equal(qkv[:, 6 * head_size :], qkv_before[:, 6 * head_size :])  # v untouched


def check_mrope_sections_matter(device: str):
    """Different position rows per section: chunked and interleaved layouts give different
    results (a kernel that read only the t row would pass neither check)."""
    results = []
    for interleaved in (False, True):
        q, k, _ = rope_inputs(3, 1, 1, 64, "contiguous", torch.float32, device, seed=9)
        positions = torch.tensor([[1, 2, 3], [10, 20, 30], [40, 50, 60]], device=device)
        cache = rope_cache(64, 64, torch.float32, device)
        params = MRotaryParams(cache, 64, 64, True, (8, 12, 12), interleaved, torch.float32,
                               torch.device(device))  # fmt: skip
        results.append(_impl("mrotary_embedding").bind(params)(positions, q, k)[0].clone())
        t_only = q.clone()
        _kernels().rotary_embedding(positions[0], t_only, None, cache, 64, 64, True)
        assert not torch.equal(results[-1], t_only)
    assert not torch.equal(results[0], results[1])


# ---- deepseek_scaling_rotary_embedding ------------------------------------------------------


def check_deepseek_rotary(device: str, dtype: torch.dtype, tokens: int, is_neox: bool):
    """DeepSeek's rope: a 64-dim rope on 128+64 heads (the rope part only is passed by MLA, as
    a [T, heads, 64] view); mscale folded into an fp32 cache."""
    head_size = rotary_dim = 64
    cache = rope_cache(rotary_dim, 64, torch.float32, device) * 1.25  # mscale
    gen = torch.Generator().manual_seed(tokens)
    positions = torch.randint(0, 64, (tokens,), generator=gen).to(device)
    q_full = _randn((tokens, 4, 128 + 64), dtype, device, seed=tokens + 2)
    q = q_full[..., 128:]  # the rope part of each head, strided
    k = _randn((tokens, 1, 64), dtype, device, seed=tokens + 3)
    nope_before = q_full[..., :128].clone()
    exact_q, exact_k = ref.deepseek_rotary_embedding(positions, q.float(), k.float(), cache,
                                                     head_size, rotary_dim, is_neox)  # fmt: skip
    params = RotaryParams(cache, head_size, rotary_dim, is_neox, dtype, torch.device(device))
    got_q, got_k = _impl("deepseek_scaling_rotary_embedding").bind(params)(positions, q, k)
    assert got_q.shape == q.shape and got_k.shape == k.shape
    assert_rounded(got_q, exact_q, dtype, device)
    assert_rounded(got_k, exact_k, dtype, device)
    assert torch.equal(q_full[..., :128], nope_before)
