"""Static per-instance parameters handed to ``OpImpl.bind``, and the callables bind returns.

Every backend implements the same small contracts, independent of SGLang's classes:

  silu_and_mul      bind(ActivationParams) -> fn(x) -> out
  rms_norm          bind(NormParams)       -> fn(x, residual) -> out | (out, new_residual)
  gemma_rms_norm    bind(NormParams)       -> same; the scale is (1 + weight)
  rotary_embedding  bind(RotaryParams)     -> fn(positions, query, key) -> (query, key)

For the norms, ``residual=None`` means a plain norm; otherwise ``x + residual`` is normalised
and returned as the new residual. Rotary ``query``/``key`` are ``[tokens, heads * head_size]``
(or any shape that views as ``[tokens, -1, head_size]``); ``positions`` already include
any offsets. Implementations may compute in place if they declare ``mutates_inputs``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ActivationParams:
    dtype: torch.dtype
    device: torch.device
    width: int | None = None  # the input's last dimension (2 * d), where known


@dataclass(frozen=True)
class NormParams:
    weight: torch.Tensor
    eps: float
    hidden_size: int
    dtype: torch.dtype
    device: torch.device


@dataclass(frozen=True)
class RotaryParams:
    cos_sin_cache: torch.Tensor  # [max_positions, rotary_dim]: cos half then sin half
    head_size: int
    rotary_dim: int
    is_neox_style: bool
    dtype: torch.dtype
    device: torch.device
