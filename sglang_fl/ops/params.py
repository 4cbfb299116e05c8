"""Static per-instance parameters handed to ``OpImpl.bind``, and the callables bind returns.

Every backend implements the same small contracts, independent of SGLang's classes:

  silu_and_mul            bind(ActivationParams)  -> fn(x) -> out     silu(x[..., :d]) * x[..., d:]
  gelu_and_mul            bind(ActivationParams)  -> fn(x) -> out     gelu(x[..., :d]) * x[..., d:],
                                                                      ``approximate`` none | tanh
  new_gelu                bind(ActivationParams)  -> fn(x) -> out     tanh-approximated gelu(x)
  quick_gelu              bind(ActivationParams)  -> fn(x) -> out     x * sigmoid(1.702 x)
  rms_norm                bind(NormParams)        -> fn(x, residual) -> out | (out, new_residual)
  gemma_rms_norm          bind(NormParams)        -> same; the scale is (1 + weight)
  gemma3_rms_norm         bind(NormParams)        -> same as gemma_rms_norm
  rms_norm_without_scale  bind(NormParams)        -> fn(x, None) -> out; ``weight`` is None
  layer_norm              bind(LayerNormParams)   -> fn(x) -> out
  rotary_embedding        bind(RotaryParams)      -> fn(positions, query, key) -> (query, key)
  mrotary_embedding       bind(MRotaryParams)     -> fn(positions, query, key) -> (query, key)
  deepseek_scaling_rotary_embedding
                          bind(RotaryParams)      -> fn(positions, query, key) -> (query, key)

Activations take any leading dims. For the norms, ``residual=None`` means a plain norm;
otherwise ``x + residual`` is normalised and returned as the new residual; ``x`` may have
more than two dims (Gemma 3 normalises ``[tokens, heads, head_dim]`` q/k). Rotary
``query``/``key`` are ``[tokens, heads * head_size]`` (or any shape that views as
``[tokens, -1, head_size]``); ``positions`` already include any offsets, and for
``mrotary_embedding`` are ``[3, tokens]`` (t, h, w) or ``[tokens]`` (text only: plain rope).
Implementations may compute in place if they declare ``mutates_inputs``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

GELU_APPROXIMATIONS = ("none", "tanh")


@dataclass(frozen=True)
class ActivationParams:
    dtype: torch.dtype
    device: torch.device
    width: int | None = None  # the input's last dimension (2 * d for the gated ops), where known
    approximate: str = "none"  # gelu_and_mul only: "none" (erf) or "tanh"


@dataclass(frozen=True)
class NormParams:
    weight: torch.Tensor | None  # None: no scale (rms_norm_without_scale)
    eps: float
    hidden_size: int
    dtype: torch.dtype
    device: torch.device


@dataclass(frozen=True)
class LayerNormParams:
    weight: torch.Tensor | None  # None: no elementwise scale
    bias: torch.Tensor | None  # None: no bias
    eps: float
    hidden_size: int
    compute_dtype: torch.dtype  # SGLang normalises in its parameters' dtype (fp32 by default)
    dtype: torch.dtype  # the input's, which the output keeps
    device: torch.device


@dataclass(frozen=True)
class RotaryParams:
    cos_sin_cache: torch.Tensor  # [max_positions, rotary_dim]: cos half then sin half
    head_size: int
    rotary_dim: int
    is_neox_style: bool
    dtype: torch.dtype
    device: torch.device


@dataclass(frozen=True)
class MRotaryParams:
    """Multimodal rope: rotary frequency ``j`` (of ``rotary_dim / 2``) takes its position from
    the t, h or w row. Chunked (Qwen2-VL): the first ``mrope_section[0]`` frequencies from t,
    the next ``[1]`` from h, the rest from w. Interleaved (Qwen3-VL): ``j % 3 == 1`` and
    ``j < 3 * section[1]`` from h, ``j % 3 == 2`` and ``j < 3 * section[2]`` from w, the rest
    from t."""

    cos_sin_cache: torch.Tensor
    head_size: int
    rotary_dim: int
    is_neox_style: bool
    mrope_section: tuple[int, int, int] | None  # None: 1-D positions only
    interleaved: bool
    dtype: torch.dtype
    device: torch.device
