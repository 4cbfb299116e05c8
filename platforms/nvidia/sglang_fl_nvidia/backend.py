"""The ``vendor.nvidia`` backend: SGLang's fused ops on NVIDIA's vendor kernels.

These are the kernels SGLang itself runs on CUDA, called the way SGLang's own ``forward_cuda``
paths call them (argument orders checked against sgl_kernel 0.4.4's Python wrappers):

  silu_and_mul      ``sgl_kernel.silu_and_mul(x) -> out``
  rms_norm          ``sgl_kernel.rmsnorm(x, w, eps) -> out``; with a residual
                    ``sgl_kernel.fused_add_rmsnorm(x, residual, w, eps)``, in place:
                    ``residual += x`` then ``x = norm(residual) * w``
  gemma_rms_norm    ``sgl_kernel.gemma_rmsnorm`` / ``gemma_fused_add_rmsnorm`` (scale ``1 + w``
                    inside the kernel, so the raw weight is passed)
  rotary_embedding  SGLang's CUDA rope kernel (``apply_rope_with_cos_sin_cache_inplace``, a
                    flashinfer-derived JIT kernel; sgl_kernel 0.4.4 only keeps the legacy
                    vLLM-style ``rotary_embedding``, which SGLang no longer calls), in place on
                    ``[tokens, heads, rotary_dim]`` views of q and k; it needs an fp32 cache,
                    made once per instance at bind.

The norms go 2-D as SGLang does (``[-1, hidden]``). Cases the kernels do not take are refused
per instance through ``OpImpl.supports`` and selection moves on to the next backend: dtypes
other than fp16/bf16 for the norms (flashinfer's norm kernels), a norm weight in another dtype
than the input, and a ``silu_and_mul`` width whose row is not a multiple of 16 bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from sglang_fl.compat import fused_ops
from sglang_fl.dispatch.backend import Availability, Backend, ImplKind, OpImpl
from sglang_fl.ops.catalog import GEMMA_RMS_NORM, RMS_NORM, ROTARY_EMBEDDING, SILU_AND_MUL
from sglang_fl.ops.params import ActivationParams, NormParams, RotaryParams

NORM_DTYPES = (torch.float16, torch.bfloat16)
ACTIVATION_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def _sgl_kernel() -> Any:
    import sgl_kernel

    return sgl_kernel


# --------------------------------------------------------------------------- silu_and_mul


def _supports_silu_and_mul(params: ActivationParams) -> str | None:
    if params.dtype not in ACTIVATION_DTYPES:
        return f"sgl_kernel.silu_and_mul supports float16, bfloat16, float32, not {params.dtype}"
    itemsize = torch.empty((), dtype=params.dtype).element_size()
    if params.width is not None and params.width * itemsize % 16:
        return (
            f"sgl_kernel.silu_and_mul needs rows of a multiple of 16 bytes (width {params.width})"
        )
    return None


def _bind_silu_and_mul(params: ActivationParams) -> Callable[[torch.Tensor], torch.Tensor]:
    return _sgl_kernel().silu_and_mul


# --------------------------------------------------------------------------- norms


def _supports_norm(params: NormParams) -> str | None:
    if params.dtype not in NORM_DTYPES:
        return f"sgl_kernel's norms support float16 and bfloat16, not {params.dtype}"
    if params.weight.dtype != params.dtype:
        return (
            f"sgl_kernel's norms need the weight in the input dtype; weight is "
            f"{params.weight.dtype}, input is {params.dtype}"
        )
    return None


def _bind_norm(norm: Callable, fused_add: Callable, params: NormParams) -> Callable[..., Any]:
    weight, eps = params.weight, params.eps

    def rms_norm(x: torch.Tensor, residual: torch.Tensor | None):
        if residual is not None:
            fused_add(x, residual, weight, eps)  # in place on both
            return x, residual
        if x.dim() == 2:
            return norm(x, weight, eps)
        return norm(x.reshape(-1, x.shape[-1]), weight, eps).view(x.shape)

    return rms_norm


def _bind_rms_norm(params: NormParams) -> Callable[..., Any]:
    sk = _sgl_kernel()
    return _bind_norm(sk.rmsnorm, sk.fused_add_rmsnorm, params)


def _bind_gemma_rms_norm(params: NormParams) -> Callable[..., Any]:
    sk = _sgl_kernel()
    return _bind_norm(sk.gemma_rmsnorm, sk.gemma_fused_add_rmsnorm, params)


# --------------------------------------------------------------------------- rotary


def _supports_rotary(params: RotaryParams) -> str | None:
    if params.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        return f"SGLang's CUDA rope kernel supports fp16, bf16, fp32, not {params.dtype}"
    if params.rotary_dim % 2 or params.rotary_dim > params.head_size:
        return f"rotary_dim {params.rotary_dim} (head_size {params.head_size}) is not supported"
    return None


def _bind_rotary(params: RotaryParams) -> Callable[..., Any]:
    rope = fused_ops.cuda_rope_kernel()
    cache = params.cos_sin_cache.to(device=params.device, dtype=torch.float32).contiguous()
    head_size, rotary_dim, neox = params.head_size, params.rotary_dim, params.is_neox_style
    partial = rotary_dim != head_size

    def rotary(positions: torch.Tensor, query: torch.Tensor, key: torch.Tensor):
        tokens = positions.shape[0]
        q = query.view(tokens, -1, head_size)
        k = key.view(tokens, -1, head_size)
        if partial:
            q, k = q[..., :rotary_dim], k[..., :rotary_dim]
        rope(q, k, cache, positions, is_neox=neox)
        return query, key

    return rotary


# --------------------------------------------------------------------------- the backend

IMPLEMENTATIONS: Mapping[str, OpImpl] = {
    SILU_AND_MUL: OpImpl(_bind_silu_and_mul, supports=_supports_silu_and_mul),
    RMS_NORM: OpImpl(_bind_rms_norm, mutates_inputs=True, supports=_supports_norm),
    GEMMA_RMS_NORM: OpImpl(_bind_gemma_rms_norm, mutates_inputs=True, supports=_supports_norm),
    ROTARY_EMBEDDING: OpImpl(_bind_rotary, mutates_inputs=True, supports=_supports_rotary),
}


class NvidiaBackend(Backend):
    """sgl_kernel (and SGLang's CUDA rope kernel); available with sgl_kernel and a CUDA GPU."""

    kind = ImplKind.VENDOR
    vendor = "nvidia"

    def availability(self) -> Availability:
        if torch.version.cuda is None or not torch.cuda.is_available():
            return Availability.no("no NVIDIA GPU visible to torch (torch.cuda.is_available())")
        try:
            _sgl_kernel()
        except Exception as exc:  # a broken CUDA extension raises OSError/RuntimeError too
            return Availability.no(f"sgl_kernel cannot be imported: {type(exc).__name__}: {exc}")
        return Availability.yes()

    def implementations(self) -> Mapping[str, OpImpl]:
        return IMPLEMENTATIONS
