"""The op cases of the conformance suite: instances to bind, and the calls to make on each.

A case is one op *instance* (the static parameters ``bind`` sees) and a few calls on the one
bound kernel with different token counts, as SGLang makes them: a prefill of odd length, a
1-token decode step, a longer prefill. Inputs cover what SGLang really passes: fp32, bf16 and
fp16; non-power-of-two and odd feature sizes; strided views (a slice of a wider buffer, q/k as
slices of one fused qkv projection); 3-D layouts; with and without a residual; neox and
interleaved rotary, partial rotary_dim, GQA/MQA, a cos/sin cache in fp32 or the model dtype.

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

from sglang_fl.ops.params import ActivationParams, NormParams, RotaryParams

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
        params = ActivationParams(dtype=dtype, device=device)
        yield OpCase("silu_and_mul", f"{dtype_name(dtype)} {label}", params, tokens, make)


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
                yield OpCase("rotary_embedding", name, params, tokens, make)


def all_cases(device: torch.device, quick: bool = False) -> dict[str, list[OpCase]]:
    """Every op's cases, by op name (the names of ``sglang_fl.ops.catalog``)."""
    dtypes = QUICK_DTYPES if quick else DTYPES
    tokens = QUICK_TOKENS if quick else TOKENS
    return {
        "silu_and_mul": list(silu_cases(device, dtypes, tokens)),
        "rms_norm": list(norm_cases("rms_norm", device, dtypes, tokens)),
        "gemma_rms_norm": list(norm_cases("gemma_rms_norm", device, dtypes, tokens)),
        "rotary_embedding": list(rotary_cases(device, dtypes, tokens, quick)),
    }
