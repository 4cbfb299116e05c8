"""The reference math in plain PyTorch: the numerical ground truth for every other backend.

Precision follows SGLang's own ``forward_native`` for each op, so the reference backend and
SGLang without the plugin agree: RMSNorm upcasts to fp32 (including the residual add),
GemmaRMSNorm adds the residual in the input dtype and normalises in fp32, SiLU-and-mul and
rotary embedding compute in the input dtype. Nothing here mutates its inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    d = x.shape[-1] // 2
    return F.silu(x[..., :d]) * x[..., d:]


def _normalize_fp32(x: torch.Tensor, eps: float) -> torch.Tensor:
    variance = x.pow(2).mean(dim=-1, keepdim=True)
    return x * torch.rsqrt(variance + eps)


def rms_norm(
    x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor, eps: float
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    orig_dtype = x.dtype
    h = x.float()
    new_residual = None
    if residual is not None:
        h = h + residual.float()
        new_residual = h.to(orig_dtype)
    out = (_normalize_fp32(h, eps) * weight).to(orig_dtype)
    return out if new_residual is None else (out, new_residual)


def gemma_rms_norm(
    x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor, eps: float
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    orig_dtype = x.dtype
    if residual is not None:
        x = x + residual
        residual = x
    out = (_normalize_fp32(x.float(), eps) * (1.0 + weight.float())).to(orig_dtype)
    return out if residual is None else (out, residual)


def split_cos_sin(cos_sin_cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[P, R]`` cache (cos half, sin half) -> contiguous ``[P, R/2]`` cos and sin tables."""
    cos, sin = cos_sin_cache.chunk(2, dim=-1)
    return cos.contiguous(), sin.contiguous()


def apply_rotary(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, is_neox_style: bool
) -> torch.Tensor:
    """Rotate ``x`` ``[T, H, R]`` by per-token ``cos``/``sin`` ``[T, R/2]``, in x's dtype."""
    cos = cos.unsqueeze(-2).to(x.dtype)
    sin = sin.unsqueeze(-2).to(x.dtype)
    if is_neox_style:
        x1, x2 = x.chunk(2, dim=-1)
    else:
        x1, x2 = x[..., ::2], x[..., 1::2]
    o1 = x1 * cos - x2 * sin
    o2 = x2 * cos + x1 * sin
    if is_neox_style:
        return torch.cat((o1, o2), dim=-1)
    return torch.stack((o1, o2), dim=-1).flatten(-2)


def rotary_embedding(
    positions: torch.Tensor,
    query: torch.Tensor,
    key: torch.Tensor,
    cos_table: torch.Tensor,
    sin_table: torch.Tensor,
    head_size: int,
    rotary_dim: int,
    is_neox_style: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    positions = positions.flatten()
    cos = cos_table.index_select(0, positions)
    sin = sin_table.index_select(0, positions)
    return (
        _rotate_heads(query, cos, sin, head_size, rotary_dim, is_neox_style),
        _rotate_heads(key, cos, sin, head_size, rotary_dim, is_neox_style),
    )


def _rotate_heads(
    x: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    head_size: int,
    rotary_dim: int,
    is_neox_style: bool,
) -> torch.Tensor:
    shape = x.shape
    heads = x.reshape(cos.shape[0], -1, head_size)
    rotated = apply_rotary(heads[..., :rotary_dim], cos, sin, is_neox_style)
    if rotary_dim < head_size:
        rotated = torch.cat((rotated, heads[..., rotary_dim:]), dim=-1)
    return rotated.reshape(shape)
