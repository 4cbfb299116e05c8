"""The op cases of the conformance suite: instances to bind, and the calls to make on each.

A case is one op *instance* (the static parameters ``bind`` sees, as the op's bridge extracts
them) and a few calls on the one bound kernel with different token counts, as SGLang makes
them: a prefill of odd length, a 1-token decode step, a longer prefill. Inputs cover what SGLang
really passes: fp32, bf16 and fp16; non-power-of-two and odd feature sizes; strided views (a
slice of a wider buffer, q/k as slices of one fused qkv projection); 3-D layouts; with and
without a residual; both gelu approximations; layer norm with and without weight and bias, in
fp32 parameters under a low-precision input; neox and interleaved rotary, partial rotary_dim,
GQA/MQA, a cos/sin cache in fp32 or the model dtype; multimodal rope with chunked (Qwen2-VL)
and interleaved (Qwen3-VL) sections on ``[3, T]`` positions and on text-only ``[T]`` ones;
DeepSeek's rope on MLA's ``[T, heads, 64]`` slices, both styles, with an mscale'd cache.

Inputs are drawn from seeded CPU generators and then moved to the device, so every device
sees the same numbers.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from sglang_fl.ops.catalog import (
    DEEPSEEK_SCALING_ROTARY_EMBEDDING,
    GELU_AND_MUL,
    GEMMA3_RMS_NORM,
    GEMMA_RMS_NORM,
    LAYER_NORM,
    MROTARY_EMBEDDING,
    NEW_GELU,
    QUICK_GELU,
    RMS_NORM,
    RMS_NORM_WITHOUT_SCALE,
    ROTARY_EMBEDDING,
    SILU_AND_MUL,
)
from sglang_fl.ops.params import (
    GELU_APPROXIMATIONS,
    ActivationParams,
    LayerNormParams,
    MRotaryParams,
    NormParams,
    RotaryParams,
)

DTYPES = (torch.float32, torch.bfloat16, torch.float16)
QUICK_DTYPES = (torch.float32, torch.bfloat16)
TOKENS = (7, 1, 33)
QUICK_TOKENS = (7, 1)
MAX_POSITIONS = 4096

Inputs = tuple[Any, ...]


@dataclass(frozen=True)
class OpCase:
    """One instance of ``op``: ``bind(params)`` once, then ``kernel(*make_inputs(t))`` per t."""

    op: str
    label: str
    params: Any
    tokens: tuple[int, ...]
    make_inputs: Callable[[int], Inputs]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _randn(
    shape: tuple[int, ...], dtype: torch.dtype, device: torch.device, seed: int, scale: float = 1.0
) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=gen) * scale).to(device=device, dtype=dtype)


def _tensor(
    shape: tuple[int, ...], dtype, device, seed: int, strided: bool, scale: float = 1.0
) -> torch.Tensor:
    """Random values; ``strided``: a view with the last dim sliced out of wider rows (row
    stride > row length), as a slice of a fused projection's output is."""
    if not strided:
        return _randn(shape, dtype, device, seed, scale)
    *lead, last = shape
    wide = _randn((*lead, last + 24), dtype, device, seed, scale)
    return wide[..., 3 : 3 + last]


# --------------------------------------------------------------------------- silu_and_mul

# (label, half width d, strided, 3-D)
SILU_SHAPES = (
    ("d=128", 128, False, False),
    ("d=80 strided", 80, True, False),
    ("d=33 odd", 33, False, False),
    ("d=64 3-D", 64, False, True),
)


def _silu_inputs(t: int, d: int, strided: bool, three_d: bool, dtype, device) -> Inputs:
    shape = (2, t, 2 * d) if three_d else (t, 2 * d)
    return (_tensor(shape, dtype, device, 10 + t + d, strided),)


def silu_cases(device: torch.device, dtypes, tokens) -> Iterator[OpCase]:
    for dtype, (label, d, strided, three_d) in itertools.product(dtypes, SILU_SHAPES):
        make = functools.partial(
            _silu_inputs, d=d, strided=strided, three_d=three_d, dtype=dtype, device=device
        )
        params = ActivationParams(dtype=dtype, device=device, width=2 * d)  # as the bridge does
        yield OpCase(SILU_AND_MUL, f"{dtype_name(dtype)} {label}", params, tokens, make)


def gelu_and_mul_cases(device: torch.device, dtypes, tokens) -> Iterator[OpCase]:
    """The gated shapes of silu_and_mul, with each gelu approximation (tanh: Gemma 2/3, Grok;
    none, i.e. erf: Gemma 1)."""
    for dtype, approximate, (label, d, strided, three_d) in itertools.product(
        dtypes, GELU_APPROXIMATIONS, SILU_SHAPES
    ):
        make = functools.partial(
            _silu_inputs, d=d, strided=strided, three_d=three_d, dtype=dtype, device=device
        )
        params = ActivationParams(dtype=dtype, device=device, width=2 * d, approximate=approximate)
        name = f"{dtype_name(dtype)} {label} approximate={approximate}"
        yield OpCase(GELU_AND_MUL, name, params, tokens, make)


# (label, width, strided, 3-D)
ELEMENTWISE_SHAPES = (
    ("width=128", 128, False, False),
    ("width=80 strided", 80, True, False),
    ("width=33 odd", 33, False, False),
    ("width=64 3-D", 64, False, True),
)


def _elementwise_inputs(t: int, width: int, strided: bool, three_d: bool, dtype, device) -> Inputs:
    shape = (2, t, width) if three_d else (t, width)
    return (_tensor(shape, dtype, device, 15 + t + width, strided, scale=3.0),)


def elementwise_cases(op: str, device: torch.device, dtypes, tokens) -> Iterator[OpCase]:
    """new_gelu and quick_gelu: one activation over the whole input, inputs spread to +-9 so
    both tails of the gelus are exercised."""
    for dtype, (label, width, strided, three_d) in itertools.product(dtypes, ELEMENTWISE_SHAPES):
        make = functools.partial(
            _elementwise_inputs,
            width=width,
            strided=strided,
            three_d=three_d,
            dtype=dtype,
            device=device,
        )
        params = ActivationParams(dtype=dtype, device=device, width=width)
        yield OpCase(op, f"{dtype_name(dtype)} {label}", params, tokens, make)


# --------------------------------------------------------------------------- norms

# (label, hidden, residual, strided x, 3-D x)
NORM_SHAPES = (
    ("hidden=64", 64, False, False, False),
    ("hidden=64 residual", 64, True, False, False),
    ("hidden=96 strided", 96, False, True, False),
    ("hidden=96 residual strided", 96, True, True, False),
    ("hidden=33 odd residual", 33, True, False, False),
    ("hidden=64 3-D per-head", 64, False, False, True),
)


def _norm_weight(hidden: int, dtype, device, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    weight = torch.rand(hidden, generator=gen) + 0.5
    return torch.nn.Parameter(weight.to(device=device, dtype=dtype), requires_grad=False)


def _norm_inputs(
    t: int, hidden: int, residual: bool, strided: bool, three_d: bool, dtype, device
) -> Inputs:
    shape = (t, 3, hidden) if three_d else (t, hidden)
    x = _tensor(shape, dtype, device, 20 + t + hidden, strided, scale=3.0)
    return (x, _randn(shape, dtype, device, 30 + t + hidden) if residual else None)


def norm_cases(op: str, device: torch.device, dtypes, tokens) -> Iterator[OpCase]:
    weight_dtypes = [(d, d) for d in dtypes]
    if torch.bfloat16 in dtypes:  # SGLang can keep norm weights in fp32 under a bf16 model
        weight_dtypes.append((torch.bfloat16, torch.float32))
    for (dtype, weight_dtype), shape in itertools.product(weight_dtypes, NORM_SHAPES):
        label, hidden, residual, strided, three_d = shape
        weight = _norm_weight(hidden, weight_dtype, device, hidden)
        params = NormParams(weight=weight, eps=1e-6, hidden_size=hidden, dtype=dtype, device=device)
        make = functools.partial(
            _norm_inputs,
            hidden=hidden,
            residual=residual,
            strided=strided,
            three_d=three_d,
            dtype=dtype,
            device=device,
        )
        weight_note = "" if weight_dtype == dtype else f" weight {dtype_name(weight_dtype)}"
        yield OpCase(op, f"{dtype_name(dtype)} {label}{weight_note}", params, tokens, make)


# (label, hidden, strided x, 3-D x): the norm shapes of ops that take no residual
PLAIN_NORM_SHAPES = (
    ("hidden=64", 64, False, False),
    ("hidden=96 strided", 96, True, False),
    ("hidden=33 odd", 33, False, False),
    ("hidden=64 3-D", 64, False, True),
)


def norm_without_scale_cases(device: torch.device, dtypes, tokens) -> Iterator[OpCase]:
    """RMSNormWithoutScale: ``forward(x)``, no weight, never a residual."""
    for dtype, (label, hidden, strided, three_d) in itertools.product(dtypes, PLAIN_NORM_SHAPES):
        params = NormParams(weight=None, eps=1e-6, hidden_size=hidden, dtype=dtype, device=device)
        make = functools.partial(
            _norm_inputs,
            hidden=hidden,
            residual=False,
            strided=strided,
            three_d=three_d,
            dtype=dtype,
            device=device,
        )
        yield OpCase(RMS_NORM_WITHOUT_SCALE, f"{dtype_name(dtype)} {label}", params, tokens, make)


# (label, weight, bias): SGLang's LayerNorm flags elementwise_affine and bias
LAYER_NORM_AFFINE = (
    ("weight+bias", True, True),
    ("weight only", True, False),
    ("no affine", False, False),
)


def _layer_norm_inputs(t: int, hidden: int, strided: bool, three_d: bool, dtype, device) -> Inputs:
    shape = (t, 3, hidden) if three_d else (t, hidden)
    x = _tensor(shape, dtype, device, 25 + t + hidden, strided, scale=2.0)
    return (x + 1.5,)  # a mean away from zero: the subtraction matters


def _layer_norm_params(hidden, weight, bias, compute_dtype, dtype, device) -> LayerNormParams:
    gen = torch.Generator().manual_seed(hidden)
    w = torch.rand(hidden, generator=gen) + 0.5
    b = torch.randn(hidden, generator=gen) * 0.5
    as_param = functools.partial(_as_parameter, dtype=compute_dtype, device=device)
    return LayerNormParams(
        weight=as_param(w) if weight else None,
        bias=as_param(b) if bias else None,
        eps=1e-6,
        hidden_size=hidden,
        compute_dtype=compute_dtype,
        dtype=dtype,
        device=device,
    )


def _as_parameter(t: torch.Tensor, dtype, device) -> torch.nn.Parameter:
    return torch.nn.Parameter(t.to(device=device, dtype=dtype), requires_grad=False)


def layer_norm_cases(device: torch.device, dtypes, tokens, quick: bool) -> Iterator[OpCase]:
    """SGLang's LayerNorm computes in its parameters' dtype, fp32 by default whatever the input
    (GLM-4V, the DSA indexer); parameters in the input dtype too where that differs."""
    affines = LAYER_NORM_AFFINE[::2] if quick else LAYER_NORM_AFFINE
    for dtype, (label, hidden, strided, three_d) in itertools.product(dtypes, PLAIN_NORM_SHAPES):
        compute_dtypes = (torch.float32,) if dtype == torch.float32 else (torch.float32, dtype)
        for compute_dtype, (affine, weight, bias) in itertools.product(compute_dtypes, affines):
            params = _layer_norm_params(hidden, weight, bias, compute_dtype, dtype, device)
            make = functools.partial(
                _layer_norm_inputs,
                hidden=hidden,
                strided=strided,
                three_d=three_d,
                dtype=dtype,
                device=device,
            )
            name = f"{dtype_name(dtype)} {label} {affine} params {dtype_name(compute_dtype)}"
            yield OpCase(LAYER_NORM, name, params, tokens, make)


# --------------------------------------------------------------------------- rotary

# (label, head_size, rotary_dim, q heads, kv heads)
ROTARY_SHAPES = (
    ("head 128 full MHA", 128, 128, 4, 4),
    ("head 64 full GQA", 64, 64, 8, 2),
    ("head 128 partial 64 MQA", 128, 64, 4, 1),
    ("head 80 partial 32 GQA", 80, 32, 6, 2),
)
# How q/k arrive: plain [T, H*D]; slices of one fused qkv projection (SGLang's qkv.split:
# non-contiguous rows); [T, H, D] views.
ROTARY_LAYOUTS = ("2-D", "qkv slices", "3-D")


def rope_cache(rotary_dim: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """SGLang's layout: ``[max_positions, rotary_dim]``, cos half then sin half."""
    inv_freq = 1.0 / (10000 ** (torch.arange(0, rotary_dim, 2).float() / rotary_dim))
    freqs = torch.outer(torch.arange(MAX_POSITIONS).float(), inv_freq)
    return torch.cat((freqs.cos(), freqs.sin()), dim=-1).to(device=device, dtype=dtype)


def _rotary_inputs(
    t: int, layout: str, head_size: int, heads: int, kv_heads: int, dtype, device
) -> Inputs:
    gen = torch.Generator().manual_seed(40 + t)
    positions = torch.randint(0, MAX_POSITIONS, (t,), generator=gen).to(device)
    q_width, k_width = heads * head_size, kv_heads * head_size
    if layout == "qkv slices":
        qkv = _randn((t, q_width + 2 * k_width), dtype, device, 50 + t)
        return positions, qkv[:, :q_width], qkv[:, q_width : q_width + k_width]
    query = _randn((t, q_width), dtype, device, 60 + t)
    key = _randn((t, k_width), dtype, device, 70 + t)
    if layout == "3-D":
        return positions, query.view(t, heads, head_size), key.view(t, kv_heads, head_size)
    return positions, query, key


def _cache_dtypes(dtype: torch.dtype, quick: bool) -> tuple[torch.dtype, ...]:
    """SGLang keeps the cos/sin cache in fp32 or in the model dtype (quick: the latter)."""
    both = (torch.float32,) if dtype == torch.float32 else (torch.float32, dtype)
    return both[-1:] if quick else both


def rotary_cases(device: torch.device, dtypes, tokens, quick: bool) -> Iterator[OpCase]:
    shapes = ROTARY_SHAPES[::2] if quick else ROTARY_SHAPES
    layouts = ROTARY_LAYOUTS[:2] if quick else ROTARY_LAYOUTS
    for dtype, shape, neox in itertools.product(dtypes, shapes, (True, False)):
        label, head_size, rotary_dim, heads, kv_heads = shape
        for cache_dtype in _cache_dtypes(dtype, quick):
            params = RotaryParams(
                cos_sin_cache=rope_cache(rotary_dim, cache_dtype, device),
                head_size=head_size,
                rotary_dim=rotary_dim,
                is_neox_style=neox,
                dtype=dtype,
                device=device,
            )
            style = "neox" if neox else "interleaved"
            for layout in layouts:
                make = functools.partial(
                    _rotary_inputs,
                    layout=layout,
                    head_size=head_size,
                    heads=heads,
                    kv_heads=kv_heads,
                    dtype=dtype,
                    device=device,
                )
                name = (
                    f"{dtype_name(dtype)} {label} {style} {layout} cache {dtype_name(cache_dtype)}"
                )
                yield OpCase(ROTARY_EMBEDDING, name, params, tokens, make)


# --------------------------------------------------------------------------- mrotary_embedding

# (label, head_size, rotary_dim, q heads, kv heads, sections, interleaved, neox)
MROPE_SHAPES = (
    ("head 128 chunked [16, 24, 24] GQA", 128, 128, 4, 2, (16, 24, 24), False, True),
    ("head 128 interleaved [24, 20, 20] GQA", 128, 128, 4, 2, (24, 20, 20), True, True),
    ("head 128 partial 64 chunked [8, 12, 12] MQA", 128, 64, 4, 1, (8, 12, 12), False, True),
    ("head 64 chunked [8, 12, 12] gptj-style", 64, 64, 4, 2, (8, 12, 12), False, False),
    ("head 64 no sections (text only)", 64, 64, 4, 2, None, False, True),
)
# (label, positions are [3, T], how q/k arrive): q/k layouts as for rotary_embedding
MROPE_CALLS = (
    ("[3, T] positions 2-D", True, "2-D"),
    ("[3, T] positions qkv slices", True, "qkv slices"),
    ("[3, T] positions 3-D", True, "3-D"),
    ("[T] positions qkv slices", False, "qkv slices"),
)


def _mrope_inputs(
    t: int, multimodal: bool, layout: str, head_size: int, heads: int, kv_heads: int, dtype, device
) -> Inputs:
    """[3, T] positions whose t, h and w rows differ (an image's grid), or text-only [T]."""
    positions, query, key = _rotary_inputs(t, layout, head_size, heads, kv_heads, dtype, device)
    if multimodal:
        gen = torch.Generator().manual_seed(80 + t)
        positions = torch.randint(0, MAX_POSITIONS, (3, t), generator=gen).to(device)
    return positions, query, key


def mrotary_cases(device: torch.device, dtypes, tokens, quick: bool) -> Iterator[OpCase]:
    shapes = MROPE_SHAPES[:2] + MROPE_SHAPES[-1:] if quick else MROPE_SHAPES
    calls = MROPE_CALLS[1:] if quick else MROPE_CALLS
    for dtype, shape in itertools.product(dtypes, shapes):
        label, head_size, rotary_dim, heads, kv_heads, section, interleaved, neox = shape
        for cache_dtype, call in itertools.product(_cache_dtypes(dtype, quick), calls):
            call_label, multimodal, layout = call
            if multimodal and section is None:
                continue  # an instance without sections only ever gets [T] positions
            params = MRotaryParams(
                cos_sin_cache=rope_cache(rotary_dim, cache_dtype, device),
                head_size=head_size,
                rotary_dim=rotary_dim,
                is_neox_style=neox,
                mrope_section=section,
                interleaved=interleaved,
                dtype=dtype,
                device=device,
            )
            make = functools.partial(
                _mrope_inputs,
                multimodal=multimodal,
                layout=layout,
                head_size=head_size,
                heads=heads,
                kv_heads=kv_heads,
                dtype=dtype,
                device=device,
            )
            name = f"{dtype_name(dtype)} {label} {call_label} cache {dtype_name(cache_dtype)}"
            yield OpCase(MROTARY_EMBEDDING, name, params, tokens, make)


# --------------------------------------------------------------------------- DeepSeek rope

DEEPSEEK_ROPE_DIM = 64  # qk_rope_head_dim: head_size == rotary_dim
DEEPSEEK_HEADS = 8
DEEPSEEK_MSCALE = 1.2  # yarn's mscale, folded into the cache as SGLang does
# How q_pe/k_pe arrive: MLA's slices of the wider q [T, H, nope + rope] and latent
# [T, 1, kv_lora_rank + rope] (3-D, row- and head-strided), or plain 2-D [T, H * 64].
DEEPSEEK_LAYOUTS = ("MLA slices", "2-D")


def _deepseek_inputs(t: int, layout: str, dtype, device) -> Inputs:
    gen = torch.Generator().manual_seed(90 + t)
    positions = torch.randint(0, MAX_POSITIONS, (t,), generator=gen).to(device)
    if layout == "2-D":
        query = _randn((t, DEEPSEEK_HEADS * DEEPSEEK_ROPE_DIM), dtype, device, 91 + t)
        return positions, query, _randn((t, DEEPSEEK_ROPE_DIM), dtype, device, 92 + t)
    q_full = _randn((t, DEEPSEEK_HEADS, 128 + DEEPSEEK_ROPE_DIM), dtype, device, 93 + t)
    latent = _randn((t, 1, 512 + DEEPSEEK_ROPE_DIM), dtype, device, 94 + t)
    return positions, q_full[..., 128:], latent[..., 512:]


def deepseek_rotary_cases(device: torch.device, dtypes, tokens, quick: bool) -> Iterator[OpCase]:
    """Both styles (DeepSeek's own is interleaved: ``is_neox = not rope_interleave``); the cache
    in fp32 (as SGLang keeps it on CUDA) and in the model dtype (elsewhere)."""
    layouts = DEEPSEEK_LAYOUTS[:1] if quick else DEEPSEEK_LAYOUTS
    for dtype, neox, layout in itertools.product(dtypes, (False, True), layouts):
        for cache_dtype in (torch.float32,) if quick else _cache_dtypes(dtype, quick):
            cache = rope_cache(DEEPSEEK_ROPE_DIM, torch.float32, device) * DEEPSEEK_MSCALE
            params = RotaryParams(
                cos_sin_cache=cache.to(cache_dtype),
                head_size=DEEPSEEK_ROPE_DIM,
                rotary_dim=DEEPSEEK_ROPE_DIM,
                is_neox_style=neox,
                dtype=dtype,
                device=device,
            )
            make = functools.partial(_deepseek_inputs, layout=layout, dtype=dtype, device=device)
            style = "neox" if neox else "interleaved"
            name = f"{dtype_name(dtype)} rope 64 {style} {layout} cache {dtype_name(cache_dtype)}"
            yield OpCase(DEEPSEEK_SCALING_ROTARY_EMBEDDING, name, params, tokens, make)


def all_cases(device: torch.device, quick: bool = False) -> dict[str, list[OpCase]]:
    """Every op's cases, by op name (the names of ``sglang_fl.ops.catalog``)."""
    dtypes = QUICK_DTYPES if quick else DTYPES
    tokens = QUICK_TOKENS if quick else TOKENS
    return {
        SILU_AND_MUL: list(silu_cases(device, dtypes, tokens)),
        GELU_AND_MUL: list(gelu_and_mul_cases(device, dtypes, tokens)),
        NEW_GELU: list(elementwise_cases(NEW_GELU, device, dtypes, tokens)),
        QUICK_GELU: list(elementwise_cases(QUICK_GELU, device, dtypes, tokens)),
        RMS_NORM: list(norm_cases(RMS_NORM, device, dtypes, tokens)),
        GEMMA_RMS_NORM: list(norm_cases(GEMMA_RMS_NORM, device, dtypes, tokens)),
        GEMMA3_RMS_NORM: list(norm_cases(GEMMA3_RMS_NORM, device, dtypes, tokens)),
        RMS_NORM_WITHOUT_SCALE: list(norm_without_scale_cases(device, dtypes, tokens)),
        LAYER_NORM: list(layer_norm_cases(device, dtypes, tokens, quick)),
        ROTARY_EMBEDDING: list(rotary_cases(device, dtypes, tokens, quick)),
        MROTARY_EMBEDDING: list(mrotary_cases(device, dtypes, tokens, quick)),
        DEEPSEEK_SCALING_ROTARY_EMBEDDING: list(
            deepseek_rotary_cases(device, dtypes, tokens, quick)
        ),
    }
