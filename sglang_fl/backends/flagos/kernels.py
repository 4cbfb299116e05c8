"""Our own Triton kernels for the ``flagos`` backend, and their Python launchers.

Why our own: FlagGems' ``silu_and_mul`` takes the two halves as separate tensors and runs at half
the vendor's speed on SGLang's fused ``[T, 2I]`` layout, and its rope is 2.5-3x slower than the
vendor's at 1-64 tokens (18.7-20.3 µs against sgl_kernel's 6.6-8.0 µs: the GPU host survey
of 2026-11-21 on an H200, made before this repository's benchmarks existed). Every op here is
memory-bound, so each kernel reads its inputs once and writes its outputs once, with wide
contiguous accesses, and computes in fp32, rounding once to the output dtype.

Contracts shared by all launchers:
- Strides are passed explicitly (rows, and the innermost dimension too: Triton compiles a stride
  equal to 1 as a constant, so a contiguous last dim costs nothing and any other still computes
  right). Row-strided views (a slice of a wider tensor, q/k inside a fused qkv) need no copy.
- Nothing on the launch path reads device data, synchronises or allocates, except the output
  tensor an op returns: the launchers are safe inside CUDA-graph capture.
- All tunables are the ``*_config`` heuristics in the "Heuristics" section below (the one place
  to tune). ``OpImpl.bind`` (ops.py) evaluates them once per op instance; the plain launchers
  evaluate them per call through a cache.

The kernels use mainstream ``tl`` features only; they run on Triton 3.6 (the GPU host) and in
Triton 3.9's interpreter on CPU tensors (``TRITON_INTERPRET=1``, the CPU tests).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
import triton
import triton.language as tl

# --------------------------------------------------------------------------------------------
# Heuristics: block sizes, rows per program and warps. The one place to tune.
# --------------------------------------------------------------------------------------------


class ActivationConfig(NamedTuple):
    block: int  # columns of the output row per program
    rows: int  # rows per program
    num_warps: int


class NormConfig(NamedTuple):
    block: int  # next_pow2(hidden): a whole row per program, so one pass reads it once
    rows: int  # rows per program
    num_warps: int


class RotaryConfig(NamedTuple):
    block_half: int  # next_pow2(rotary_dim / 2)
    head_block: int  # heads per program
    num_warps: int


# Elements per 16-byte vector: the widest load a thread issues. Blocks are sized so each thread
# holds whole vectors.
def _vector(element_size: int) -> int:
    return max(1, 16 // element_size)


def _cdiv(a: int, b: int) -> int:
    """Ceiling division on host ints (``triton.cdiv`` costs microseconds per call on Triton 3.9)."""
    return -(-a // b)


# Figures below: an H200, bf16, Triton 3.6, `python -m sglang_fl.bench.flagos_kernels --sweep`
# (2026-12-02, one run each; below ~64 tokens the sweep's numbers are within launch noise).

ACTIVATION_MANY_ROWS = 64  # from this many rows on, the activations use their large blocks


@functools.cache
def activation_config(d: int, element_size: int, many_rows: bool) -> ActivationConfig:
    """Many rows: 512 vectors per program (4096 bf16 columns, 8 KB of gate and of up) with 16
    warps, one vector of each half per thread: fewer, larger programs; at 8192 and 32768 tokens
    it was the fastest or within 1% (I=4096, 32768 tokens: 190 us, 99.7% of copy bandwidth).
    Few rows: 128 vectors (1024 bf16) with 4 warps, so one token still spreads over ``d / 1024``
    SMs. Rows narrower than the block are packed several to a program to keep its size."""
    vectors = 512 if many_rows else 128
    target = vectors * _vector(element_size)
    block = min(triton.next_power_of_2(d), target)
    rows = max(1, target // block)
    return ActivationConfig(block, rows, 16 if many_rows else 4)


@functools.cache
def norm_config(hidden: int, element_size: int) -> NormConfig:
    """One whole row per program (the sum of squares needs it), two 16-byte vectors per thread:
    4096 bf16 -> 8 warps. Within 2% of the sweep's best at 8192 and 32768 tokens for rms_norm
    (37.6 / 133.5 us) and the best for fused_add_rms_norm (69.4 / 260.4 us); one vector per
    thread (16 warps) lost up to 8%. Rows shorter than 2048 elements are packed several per
    program so a program still moves a few KB and the grid is not thousands of tiny programs.
    Knob: ``rows`` 2-4 was up to 2% faster for rms_norm alone at 32768 tokens."""
    block = triton.next_power_of_2(hidden)
    rows = max(1, 2048 // block)
    num_warps = max(1, min(16, block * rows // (32 * 2 * _vector(element_size))))
    return NormConfig(block, rows, num_warps)


@functools.cache
def rotary_config(rotary_dim: int, element_size: int) -> RotaryConfig:
    """8 heads per program, one 16-byte vector of each half per thread (D=128 bf16: 2 warps,
    2 KB in and out per program, 5 programs per token at 32 q + 8 kv heads): the best or within
    1% at 1, 8192 and 32768 tokens (4.3 / 45.5 / 169.6 us); 16 heads with 4 warps was 6% slower
    at 32768 tokens. cos/sin (one row) is loaded once per program."""
    block_half = triton.next_power_of_2(max(1, rotary_dim // 2))
    head_block = 8
    num_warps = max(1, min(8, head_block * block_half // (32 * _vector(element_size))))
    return RotaryConfig(block_half, head_block, num_warps)


# --------------------------------------------------------------------------------------------
# Activations: gated (out[r, c] = act(x[r, c]) * x[r, d + c]) and elementwise (act(x[r, c]))
# --------------------------------------------------------------------------------------------

# The activation a kernel applies (a constexpr: each compiles to its own kernel).
SILU, GELU, GELU_TANH, QUICK_GELU = 0, 1, 2, 3


@triton.jit
def _activate(x, ACT: tl.constexpr):
    """``act(x)`` in fp32. tanh as ``1 - 2 / (exp(2y) + 1)`` (no tanh in every Triton's tl.math):
    exact at both ends, within an fp32 ulp or two elsewhere."""
    if ACT == 0:  # silu
        return x / (1.0 + tl.exp(-x))
    elif ACT == 1:  # gelu, exact
        return 0.5 * x * (1.0 + tl.math.erf(x * 0.7071067811865476))
    elif ACT == 2:  # gelu, tanh approximation (GPT-2's "gelu_new")
        y = 0.7978845608028654 * (x + 0.044715 * x * x * x)
        return 0.5 * x * (2.0 - 2.0 / (tl.exp(2.0 * y) + 1.0))
    else:  # quick gelu
        return x / (1.0 + tl.exp(-1.702 * x))


@triton.jit(do_not_specialize=["n_rows"])
def _activation_kernel(
    x_ptr, x_row_stride, x_col_stride, out_ptr, out_row_stride, n_rows, d,
    BLOCK: tl.constexpr, ROWS: tl.constexpr, ACT: tl.constexpr, GATED: tl.constexpr,
):  # fmt: skip
    """1-D grid, column blocks fastest (programs running together stream neighbouring memory):
    program ``p`` handles rows ``(p // col_blocks) * ROWS + [0, ROWS)`` and output columns
    ``(p % col_blocks) * BLOCK + [0, BLOCK)``. Gated: the up half starts ``d`` columns after the
    gate. ``out`` rows may be strided, its last dim is contiguous."""
    col_blocks = (d + BLOCK - 1) // BLOCK
    pid = tl.program_id(0)
    rows = (pid // col_blocks).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    cols = (pid % col_blocks) * BLOCK + tl.arange(0, BLOCK)
    mask = (rows < n_rows)[:, None] & (cols < d)[None, :]
    x_ptrs = x_ptr + rows[:, None] * x_row_stride + cols[None, :] * x_col_stride
    out = _activate(tl.load(x_ptrs, mask=mask, other=0.0).to(tl.float32), ACT)
    if GATED:
        out *= tl.load(x_ptrs + d * x_col_stride, mask=mask, other=0.0).to(tl.float32)
    out_ptrs = out_ptr + rows[:, None] * out_row_stride + cols[None, :]
    tl.store(out_ptrs, out.to(out_ptr.dtype.element_ty), mask=mask)


def _activation(
    x: torch.Tensor,
    act: int,
    gated: bool,
    out: torch.Tensor | None,
    config: ActivationConfig | None,
) -> torch.Tensor:
    d = x.shape[-1] // 2 if gated else x.shape[-1]
    if out is None:
        out = x.new_empty((*x.shape[:-1], d))
    if x.dim() == 2:
        rows, out_rows = x, out
    else:
        rows, out_rows = x.view(-1, x.shape[-1]), out.view(-1, d)
    n_rows = rows.shape[0]
    if config is None:
        config = activation_config(d, x.element_size(), n_rows >= ACTIVATION_MANY_ROWS)
    grid = (_cdiv(n_rows, config.rows) * _cdiv(d, config.block),)
    xs = rows.stride()
    _activation_kernel[grid](
        rows, xs[0], xs[1], out_rows, out_rows.stride(0), n_rows, d,
        BLOCK=config.block, ROWS=config.rows, ACT=act, GATED=gated, num_warps=config.num_warps,
    )  # fmt: skip
    return out


def silu_and_mul(
    x: torch.Tensor, out: torch.Tensor | None = None, config: ActivationConfig | None = None
) -> torch.Tensor:
    """``x`` ``[..., 2d]`` -> ``[..., d]`` in x's dtype (new tensor, or ``out`` with a contiguous
    last dim); silu and the product in fp32, rounded once.

    Any row stride (a 2-D slice of a wider tensor is fine); more than 2 dims must collapse into
    one row dimension (``view`` raises otherwise). The same holds for every activation here."""
    return _activation(x, SILU, True, out, config)


def gelu_and_mul(
    x: torch.Tensor,
    approximate: str = "none",
    out: torch.Tensor | None = None,
    config: ActivationConfig | None = None,
) -> torch.Tensor:
    """``gelu(x[..., :d]) * x[..., d:]``, gelu exact (``approximate="none"``) or tanh."""
    return _activation(x, GELU_TANH if approximate == "tanh" else GELU, True, out, config)


def new_gelu(
    x: torch.Tensor, out: torch.Tensor | None = None, config: ActivationConfig | None = None
) -> torch.Tensor:
    """The tanh-approximated gelu of ``x`` (GPT-2's "gelu_new"), same shape."""
    return _activation(x, GELU_TANH, False, out, config)


def quick_gelu(
    x: torch.Tensor, out: torch.Tensor | None = None, config: ActivationConfig | None = None
) -> torch.Tensor:
    """``x * sigmoid(1.702 x)``, same shape."""
    return _activation(x, QUICK_GELU, False, out, config)


# --------------------------------------------------------------------------------------------
# RMSNorm family: plain, fused residual add (in place), Gemma's (1 + weight) scale
# --------------------------------------------------------------------------------------------


@triton.jit(do_not_specialize=["n_rows"])
def _rms_norm_kernel(
    x_ptr, x_row_stride, x_col_stride,
    res_ptr, res_row_stride, res_col_stride,
    out_ptr, out_row_stride, out_col_stride,
    w_ptr, w_stride, n_rows, n_cols, eps,
    BLOCK: tl.constexpr, ROWS: tl.constexpr, HAS_RESIDUAL: tl.constexpr, GEMMA: tl.constexpr,
    HAS_WEIGHT: tl.constexpr,
):  # fmt: skip
    """RMSNorm of ROWS rows. With a residual: ``h = x + residual`` is stored to ``res_ptr`` and
    normalised. RMSNorm normalises the fp32 sum; Gemma rounds the sum to the input dtype first
    (SGLang adds in the input dtype) and scales by ``1 + weight``; without a weight there is no
    scale (RMSNormWithoutScale).

    The weight is loaded together with the row, not after the reduction: at a few tokens the
    kernel is one dependent chain of memory round trips, and a load written after ``tl.sum``
    may only be issued once the reduction (which synchronises the program's warps) is done."""
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    cols = tl.arange(0, BLOCK)
    col_mask = cols < n_cols
    mask = (rows < n_rows)[:, None] & col_mask[None, :]
    x_ptrs = x_ptr + rows[:, None] * x_row_stride + cols[None, :] * x_col_stride
    h = tl.load(x_ptrs, mask=mask, other=0.0).to(tl.float32)
    if HAS_WEIGHT:
        w = tl.load(w_ptr + cols * w_stride, mask=col_mask, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        res_ptrs = res_ptr + rows[:, None] * res_row_stride + cols[None, :] * res_col_stride
        h += tl.load(res_ptrs, mask=mask, other=0.0).to(tl.float32)
        rounded = h.to(res_ptr.dtype.element_ty)
        tl.store(res_ptrs, rounded, mask=mask)
        if GEMMA:
            h = rounded.to(tl.float32)
    rstd = tl.rsqrt(tl.sum(h * h, axis=1) / n_cols + eps)
    out = h * rstd[:, None]
    if HAS_WEIGHT:
        if GEMMA:
            w += 1.0
        out = out * w[None, :]
    out_ptrs = out_ptr + rows[:, None] * out_row_stride + cols[None, :] * out_col_stride
    tl.store(out_ptrs, out.to(out_ptr.dtype.element_ty), mask=mask)


def _norm(
    x: torch.Tensor,
    residual: torch.Tensor | None,
    out: torch.Tensor,
    weight: torch.Tensor | None,
    eps: float,
    gemma: bool,
    config: NormConfig,
) -> None:
    """Launch on 2-D ``x`` ``[rows, hidden]``; ``out`` may be ``x`` itself (in place)."""
    n_rows, n_cols = x.shape
    res = x if residual is None else residual  # not read when HAS_RESIDUAL is False
    w = x if weight is None else weight  # not read when HAS_WEIGHT is False
    xs, rs, os = x.stride(), res.stride(), out.stride()  # one call each: launch cost matters
    _rms_norm_kernel[(_cdiv(n_rows, config.rows),)](
        x, xs[0], xs[1], res, rs[0], rs[1], out, os[0], os[1],
        w, w.stride(-1), n_rows, n_cols, eps,
        BLOCK=config.block, ROWS=config.rows, HAS_RESIDUAL=residual is not None, GEMMA=gemma,
        HAS_WEIGHT=weight is not None, num_warps=config.num_warps,
    )  # fmt: skip


def norm(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    eps: float,
    gemma: bool = False,
    *,
    out: torch.Tensor | None = None,
    config: NormConfig | None = None,
) -> torch.Tensor:
    """``norm(x) * weight`` (Gemma: ``* (1 + weight)``; no weight: no scale) in x's dtype, into
    ``out`` (new if None).

    The weight may have another dtype than x (fp32 weight with bf16 x): all math is fp32."""
    if config is None:
        config = norm_config(x.shape[-1], x.element_size())
    if out is None:
        out = x.new_empty(x.shape)
    if x.dim() == 2:
        _norm(x, None, out, weight, eps, gemma, config)
    else:  # leading dims collapse into rows (view raises if they cannot)
        hidden = x.shape[-1]
        _norm(x.view(-1, hidden), None, out.view(-1, hidden), weight, eps, gemma, config)
    return out


def add_norm(
    x: torch.Tensor,
    residual: torch.Tensor,
    weight: torch.Tensor,
    eps: float,
    gemma: bool = False,
    *,
    config: NormConfig | None = None,
) -> None:
    """In place: ``residual <- x + residual`` rounded to the dtype, ``x <- norm(sum) * weight``.

    RMSNorm normalises the fp32 sum, Gemma the rounded sum (and scales by ``1 + weight``)."""
    if config is None:
        config = norm_config(x.shape[-1], x.element_size())
    if x.dim() != 2:
        x, residual = x.view(-1, x.shape[-1]), residual.view(-1, x.shape[-1])
    _norm(x, residual, x, weight, eps, gemma, config)


# The four entry points by name (``out=``/``config=`` are keyword-only).
rms_norm = norm
fused_add_rms_norm = add_norm
gemma_rms_norm = functools.partial(norm, gemma=True)
gemma_fused_add_rms_norm = functools.partial(add_norm, gemma=True)


# --------------------------------------------------------------------------------------------
# LayerNorm: (x - mean) / sqrt(var + eps) * weight + bias
# --------------------------------------------------------------------------------------------


@triton.jit(do_not_specialize=["n_rows"])
def _layer_norm_kernel(
    x_ptr, x_row_stride, x_col_stride, out_ptr, out_row_stride, out_col_stride,
    w_ptr, b_ptr, n_rows, n_cols, eps,
    BLOCK: tl.constexpr, ROWS: tl.constexpr, HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr,
):  # fmt: skip
    """LayerNorm of ROWS rows, a whole row per program (one read), mean and variance in fp32
    (two-pass over registers: exact as ``F.layer_norm``'s Welford for these widths). Weight and
    bias are loaded with the row (see ``_rms_norm_kernel``)."""
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    cols = tl.arange(0, BLOCK)
    col_mask = cols < n_cols
    mask = (rows < n_rows)[:, None] & col_mask[None, :]
    x = tl.load(x_ptr + rows[:, None] * x_row_stride + cols[None, :] * x_col_stride,
                mask=mask, other=0.0).to(tl.float32)  # fmt: skip
    if HAS_WEIGHT:
        w = tl.load(w_ptr + cols, mask=col_mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        b = tl.load(b_ptr + cols, mask=col_mask, other=0.0).to(tl.float32)
    mean = tl.sum(x, axis=1) / n_cols
    centered = tl.where(mask, x - mean[:, None], 0.0)
    rstd = tl.rsqrt(tl.sum(centered * centered, axis=1) / n_cols + eps)
    out = centered * rstd[:, None]
    if HAS_WEIGHT:
        out = out * w[None, :]
    if HAS_BIAS:
        out = out + b[None, :]
    out_ptrs = out_ptr + rows[:, None] * out_row_stride + cols[None, :] * out_col_stride
    tl.store(out_ptrs, out.to(out_ptr.dtype.element_ty), mask=mask)


def layer_norm(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float,
    *,
    out: torch.Tensor | None = None,
    config: NormConfig | None = None,
) -> torch.Tensor:
    """LayerNorm over the last dim in fp32, rounded once to x's dtype (new tensor, or ``out``).
    Weight and bias (any dtype, contiguous) are optional."""
    if config is None:
        config = norm_config(x.shape[-1], x.element_size())
    if out is None:
        out = x.new_empty(x.shape)
    hidden = x.shape[-1]
    rows, out_rows = (x, out) if x.dim() == 2 else (x.view(-1, hidden), out.view(-1, hidden))
    n_rows = rows.shape[0]
    xs, os = rows.stride(), out_rows.stride()
    _layer_norm_kernel[(_cdiv(n_rows, config.rows),)](
        rows, xs[0], xs[1], out_rows, os[0], os[1],
        x if weight is None else weight, x if bias is None else bias, n_rows, hidden, eps,
        BLOCK=config.block, ROWS=config.rows, HAS_WEIGHT=weight is not None,
        HAS_BIAS=bias is not None, num_warps=config.num_warps,
    )  # fmt: skip
    return out


# --------------------------------------------------------------------------------------------
# Rotary embedding, in place on query and key
# --------------------------------------------------------------------------------------------


@triton.jit
def _cos_sin(cache_row_ptr, col_stride, half, BLOCK_HALF: tl.constexpr):
    """One position's cos and sin halves in fp32, shaped ``[1, BLOCK_HALF]`` for broadcasting.
    ``cache_row_ptr`` is one row's pointer, or (mrope) one row pointer per frequency."""
    j = tl.arange(0, BLOCK_HALF)
    ptrs = cache_row_ptr + j * col_stride
    cos = tl.load(ptrs, mask=j < half, other=0.0).to(tl.float32)
    sin = tl.load(ptrs + half * col_stride, mask=j < half, other=0.0).to(tl.float32)
    return cos[None, :], sin[None, :]


@triton.jit
def _rotate_heads(
    row_ptr, head_stride, elem_stride, first_head, n_heads, cache_row_ptr, cache_col_stride, half,
    BLOCK_HALF: tl.constexpr, HEAD_BLOCK: tl.constexpr, IS_NEOX: tl.constexpr,
):  # fmt: skip
    """Rotate the first ``2 * half`` elements of heads ``first_head + [0, HEAD_BLOCK)``.

    The heads are loaded before cos/sin: their loads are in flight while the cos/sin address
    waits for the position load."""
    heads = first_head + tl.arange(0, HEAD_BLOCK)
    head_ptrs = row_ptr + heads[:, None].to(tl.int64) * head_stride
    if IS_NEOX:  # halves: (x[:half], x[half:2 half])
        j = tl.arange(0, BLOCK_HALF)
        mask = (heads < n_heads)[:, None] & (j < half)[None, :]
        p1 = head_ptrs + j[None, :] * elem_stride
        p2 = p1 + half * elem_stride
        x1 = tl.load(p1, mask=mask, other=0.0).to(tl.float32)
        x2 = tl.load(p2, mask=mask, other=0.0).to(tl.float32)
        cos, sin = _cos_sin(cache_row_ptr, cache_col_stride, half, BLOCK_HALF)
        tl.store(p1, (x1 * cos - x2 * sin).to(row_ptr.dtype.element_ty), mask=mask)
        tl.store(p2, (x2 * cos + x1 * sin).to(row_ptr.dtype.element_ty), mask=mask)
    else:  # GPT-J pairs (x[2j], x[2j+1]): load the rotary part whole, split it in registers
        c = tl.arange(0, 2 * BLOCK_HALF)
        mask = (heads < n_heads)[:, None] & (c < 2 * half)[None, :]
        ptrs = head_ptrs + c[None, :] * elem_stride
        x = tl.load(ptrs, mask=mask, other=0.0).to(tl.float32)
        x1, x2 = tl.split(tl.reshape(x, (HEAD_BLOCK, BLOCK_HALF, 2)))
        cos, sin = _cos_sin(cache_row_ptr, cache_col_stride, half, BLOCK_HALF)
        out = tl.join(x1 * cos - x2 * sin, x2 * cos + x1 * sin)
        out = tl.reshape(out, (HEAD_BLOCK, 2 * BLOCK_HALF))
        tl.store(ptrs, out.to(row_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _mrope_row_offsets(
    pos_ptr, pos_stride, pos_row_stride, token, cache_row_stride, s0, s1, s2,
    BLOCK_HALF: tl.constexpr, INTERLEAVED: tl.constexpr,
):  # fmt: skip
    """Multimodal rope: per frequency ``j``, the cache row offset of the position it takes from
    the t, h or w row of ``[3, T]`` positions (chunked sections, or Qwen3-VL's interleaving)."""
    j = tl.arange(0, BLOCK_HALF)
    p_t = tl.load(pos_ptr + token * pos_stride).to(tl.int64)
    p_h = tl.load(pos_ptr + pos_row_stride + token * pos_stride).to(tl.int64)
    p_w = tl.load(pos_ptr + 2 * pos_row_stride + token * pos_stride).to(tl.int64)
    if INTERLEAVED:
        from_h = (j % 3 == 1) & (j < 3 * s1)
        from_w = (j % 3 == 2) & (j < 3 * s2)
    else:
        from_h = (j >= s0) & (j < s0 + s1)
        from_w = j >= s0 + s1
    pos = tl.where(from_h, p_h, tl.where(from_w, p_w, p_t))
    return pos * cache_row_stride


@triton.jit
def _rotary_kernel(
    pos_ptr, pos_stride, pos_row_stride, cache_ptr, cache_row_stride, cache_col_stride,
    q_ptr, q_row_stride, q_head_stride, q_elem_stride, n_q_heads,
    k_ptr, k_row_stride, k_head_stride, k_elem_stride, n_k_heads, half, s0, s1, s2,
    BLOCK_HALF: tl.constexpr, HEAD_BLOCK: tl.constexpr, IS_NEOX: tl.constexpr,
    MROPE: tl.constexpr, INTERLEAVED: tl.constexpr,
):  # fmt: skip
    """1-D grid of ``tokens * (q head blocks + k head blocks)``, a token's blocks next to each
    other (programs running together touch neighbouring memory): each program rotates one block
    of one token's q heads or k heads, loading that token's cos/sin row once (mrope: each
    frequency's entry from the row of its section's position)."""
    q_blocks = (n_q_heads + HEAD_BLOCK - 1) // HEAD_BLOCK
    blocks = q_blocks + (n_k_heads + HEAD_BLOCK - 1) // HEAD_BLOCK
    pid = tl.program_id(0)
    token = (pid // blocks).to(tl.int64)
    block = pid % blocks
    if MROPE:
        cache_row_ptr = cache_ptr + _mrope_row_offsets(
            pos_ptr, pos_stride, pos_row_stride, token, cache_row_stride, s0, s1, s2,
            BLOCK_HALF, INTERLEAVED,
        )  # fmt: skip
    else:
        pos = tl.load(pos_ptr + token * pos_stride).to(tl.int64)
        cache_row_ptr = cache_ptr + pos * cache_row_stride
    if block < q_blocks:
        _rotate_heads(
            q_ptr + token * q_row_stride, q_head_stride, q_elem_stride, block * HEAD_BLOCK,
            n_q_heads, cache_row_ptr, cache_col_stride, half, BLOCK_HALF, HEAD_BLOCK, IS_NEOX,
        )  # fmt: skip
    else:
        _rotate_heads(
            k_ptr + token * k_row_stride, k_head_stride, k_elem_stride,
            (block - q_blocks) * HEAD_BLOCK, n_k_heads, cache_row_ptr, cache_col_stride, half,
            BLOCK_HALF, HEAD_BLOCK, IS_NEOX,
        )  # fmt: skip


def _head_layout(x: torch.Tensor, tokens: int, head_size: int) -> tuple[torch.Tensor, int, ...]:
    """``x`` as ``[tokens, heads, head_size]``: (x or a view of it, heads, row, head and element
    strides)."""
    if x.dim() == 2:  # [T, H * D]: heads follow each other within the row
        row, elem = x.stride()
        return x, x.shape[1] // head_size, row, head_size * elem, elem
    if x.dim() != 3:
        x = x.view(tokens, -1, head_size)
    return x, x.shape[1], *x.stride()


def rotary_embedding(
    positions: torch.Tensor,
    query: torch.Tensor,
    key: torch.Tensor | None,
    cos_sin_cache: torch.Tensor,
    head_size: int,
    rotary_dim: int,
    is_neox: bool,
    config: RotaryConfig | None = None,
    mrope_section: tuple[int, int, int] | None = None,
    mrope_interleaved: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Rotate ``query`` (and ``key``, may be None) in place; returns ``(query, key)``.

    ``query``/``key``: ``[T, heads * head_size]`` or ``[T, heads, head_size]``, rows and heads may
    be strided (views of a fused qkv). ``positions``: int32/int64, ``T`` of them in any shape;
    with ``mrope_section`` and 2-D positions: ``[3, T]`` (t, h, w), each rotary frequency taking
    the position of its section (chunked, or interleaved as Qwen3-VL). ``cos_sin_cache``:
    ``[max_pos, rotary_dim]``, cos half then sin half, fp32 or model dtype. Only the first
    ``rotary_dim`` elements of each head rotate."""
    if config is None:
        config = rotary_config(rotary_dim, query.element_size())
    mrope = None
    if mrope_section is not None and positions.dim() == 2:
        mrope = (*mrope_section, mrope_interleaved)
    rotary(positions, query, key, cos_sin_cache, head_size, rotary_dim // 2, is_neox, config,
           mrope)  # fmt: skip
    return query, key


def rotary(
    positions: torch.Tensor,
    query: torch.Tensor,
    key: torch.Tensor | None,
    cache: torch.Tensor,
    head_size: int,
    half: int,
    is_neox: bool,
    config: RotaryConfig,
    mrope: tuple[int, int, int, bool] | None = None,
) -> None:
    """The launcher behind ``rotary_embedding``. ``mrope``: ``(s0, s1, s2, interleaved)`` with
    ``positions`` ``[3, T]`` (t, h, w); otherwise ``T`` positions in any shape."""
    if mrope is None:
        if positions.dim() != 1:
            positions = positions.view(-1)
        sections, interleaved, pos_row_stride = (0, 0, 0), False, 0
    else:
        *sections, interleaved = mrope
        pos_row_stride = positions.stride(0)
        positions = positions[0]
    tokens = positions.shape[0]
    q, n_q, *q_strides = _head_layout(query, tokens, head_size)
    if key is None:
        k, n_k, k_strides = q, 0, q_strides  # no k blocks in the grid: never touched
    else:
        k, n_k, *k_strides = _head_layout(key, tokens, head_size)
    hb = config.head_block
    grid = (tokens * (_cdiv(n_q, hb) + _cdiv(n_k, hb)),)
    cache_strides = cache.stride()
    _rotary_kernel[grid](
        positions, positions.stride(0), pos_row_stride, cache, *cache_strides,
        q, *q_strides, n_q, k, *k_strides, n_k, half, *sections,
        BLOCK_HALF=config.block_half, HEAD_BLOCK=hb, IS_NEOX=is_neox, MROPE=mrope is not None,
        INTERLEAVED=interleaved, num_warps=config.num_warps,
    )  # fmt: skip
