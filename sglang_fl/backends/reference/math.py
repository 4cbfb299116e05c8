"""The reference math in plain PyTorch: the numerical ground truth for every other backend.

Precision follows SGLang's own ``forward_native`` for each op, so the reference backend and
SGLang without the plugin agree: RMSNorm upcasts to fp32 (including the residual add),
GemmaRMSNorm (and Gemma3RMSNorm) adds the residual in the input dtype and normalises in fp32,
RMSNormWithoutScale normalises in fp32, LayerNorm computes in its parameters' dtype, the
activations and rotary embedding compute in the input dtype, DeepSeek's rope in the promoted
dtype of the query and its cache. Nothing here mutates its inputs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

NEW_GELU_C = math.sqrt(2.0 / math.pi)


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    d = x.shape[-1] // 2
    return F.silu(x[..., :d]) * x[..., d:]


def gelu_and_mul(x: torch.Tensor, approximate: str) -> torch.Tensor:
    d = x.shape[-1] // 2
    return F.gelu(x[..., :d], approximate=approximate) * x[..., d:]


def new_gelu(x: torch.Tensor) -> torch.Tensor:
    """GPT-2's gelu, written as SGLang's NewGELU writes it (the same tanh approximation as
    ``F.gelu(approximate="tanh")``, rounded differently)."""
    return 0.5 * x * (1.0 + torch.tanh(NEW_GELU_C * (x + 0.044715 * torch.pow(x, 3.0))))


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


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


def rms_norm_without_scale(x: torch.Tensor, eps: float) -> torch.Tensor:
    return _normalize_fp32(x.float(), eps).to(x.dtype)


def layer_norm(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float,
    compute_dtype: torch.dtype,
) -> torch.Tensor:
    return F.layer_norm(x.to(compute_dtype), (x.shape[-1],), weight, bias, eps).to(x.dtype)


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
    return _rotate_query_key(query, key, cos, sin, head_size, rotary_dim, is_neox_style)


def _rotate_query_key(query, key, cos, sin, head_size, rotary_dim, is_neox_style):
    """Both of ``query`` and ``key`` rotated by the per-token ``cos``/``sin`` ``[T, R/2]``."""
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


def mrope_axes(
    half: int, section: tuple[int, int, int], interleaved: bool, device: torch.device
) -> torch.Tensor:
    """For each of ``half`` rotary frequencies, the row of ``[3, T]`` positions it takes
    (0 t, 1 h, 2 w): SGLang's chunked (Qwen2-VL) or interleaved (Qwen3-VL) mrope layout."""
    j = torch.arange(half, device=device)
    if interleaved:
        axes = torch.zeros(half, dtype=torch.long, device=device)
        axes[(j % 3 == 1) & (j < 3 * section[1])] = 1
        axes[(j % 3 == 2) & (j < 3 * section[2])] = 2
        return axes
    return (j >= section[0]).long() + (j >= section[0] + section[1]).long()


def mrotary_embedding(
    positions: torch.Tensor,
    query: torch.Tensor,
    key: torch.Tensor,
    cos_table: torch.Tensor,
    sin_table: torch.Tensor,
    axes: torch.Tensor | None,
    head_size: int,
    rotary_dim: int,
    is_neox_style: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multimodal rope: ``positions`` ``[3, T]`` pick each frequency's position by ``axes``
    (``mrope_axes``); ``[T]`` positions are plain rope."""
    if positions.dim() == 1:
        return rotary_embedding(positions, query, key, cos_table, sin_table, head_size,
                                rotary_dim, is_neox_style)  # fmt: skip
    assert axes is not None, "[3, T] positions need the mrope sections"
    frequency = torch.arange(axes.shape[0], device=axes.device)[:, None]
    cos = cos_table[positions[axes], frequency]  # [half, T]: frequency j at position axes[j]
    sin = sin_table[positions[axes], frequency]
    cos, sin = cos.transpose(0, 1), sin.transpose(0, 1)  # [T, half]
    return _rotate_query_key(query, key, cos, sin, head_size, rotary_dim, is_neox_style)


def deepseek_rotary_embedding(
    positions: torch.Tensor,
    query: torch.Tensor,
    key: torch.Tensor,
    cos_sin_cache: torch.Tensor,
    head_size: int,
    rotary_dim: int,
    is_neox_style: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepSeek's YaRN rope as SGLang's ``DeepseekScalingRotaryEmbedding.forward_native``
    computes it: in the promoted dtype of the query and the cache (fp32 with an fp32 cache),
    rounded to the query dtype at the end. Shapes are kept (SGLang's native path gains a
    leading dimension in the neox style; its CUDA path, like this, does not)."""
    cos, sin = cos_sin_cache.index_select(0, positions.flatten()).chunk(2, dim=-1)
    if is_neox_style:
        cos, sin = cos.repeat(1, 2), sin.repeat(1, 2)
    else:
        cos, sin = cos.repeat_interleave(2, -1), sin.repeat_interleave(2, -1)
    cos, sin = cos.unsqueeze(-2), sin.unsqueeze(-2)  # [T, 1, R]
    return (
        _deepseek_rotate(query, cos, sin, head_size, rotary_dim, is_neox_style),
        _deepseek_rotate(key, cos, sin, head_size, rotary_dim, is_neox_style),
    )


def _deepseek_rotate(x, cos, sin, head_size, rotary_dim, is_neox_style):
    shape, dtype = x.shape, x.dtype
    heads = x.reshape(cos.shape[0], -1, head_size)
    rot = heads[..., :rotary_dim]
    if is_neox_style:
        x1, x2 = rot.chunk(2, dim=-1)
        rotated_half = torch.cat((-x2, x1), dim=-1)
    else:
        rotated_half = torch.stack((-rot[..., 1::2], rot[..., ::2]), dim=-1).flatten(-2)
    out = rot * cos + rotated_half * sin
    if rotary_dim < head_size:
        out = torch.cat((out, heads[..., rotary_dim:]), dim=-1)
    return out.to(dtype).reshape(shape)
