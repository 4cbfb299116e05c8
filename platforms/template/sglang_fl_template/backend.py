"""The ``vendor.template`` backend: SGLang's fused ops behind sglang-fl's op contracts.

This is where a vendor's kernels go. Each op is an ``OpImpl`` whose ``bind(params)`` runs once
per op instance (with the static parameters of ``sglang_fl/ops/params.py``) and returns the
callable the model then calls directly, on the hot path:

  silu_and_mul      fn(x) -> silu(x[..., :d]) * x[..., d:]
  rms_norm          fn(x, residual) -> out, or (out, x + residual) when residual is given
  gemma_rms_norm    the same with the scale (1 + weight)
  rotary_embedding  fn(positions, query, key) -> (query, key)

As shipped, every kernel is plain PyTorch that computes in float32 and rounds once, the way a
fused device kernel does; the rms_norm with a residual works in place, like sgl_kernel's
``fused_add_rmsnorm``, to show how an in-place kernel is declared. Replace each marked body
with your kernel call (``VENDOR:``). Keep in ``bind`` whatever can be done once per instance
(casting a cache, picking a kernel variant) and keep the returned function free of lookups.

Rules the conformance suite (``sglang-fl conformance``) checks for every kernel:
- same shapes, dtypes and device as the reference backend, values within a few roundings;
- any input layout SGLang passes: 1 token, odd sizes, strided views, 3-D (call
  ``.contiguous()`` first if your kernel needs it: it costs nothing when already contiguous);
- a kernel that writes into its inputs declares ``mutates_inputs=True``;
- an instance your kernel cannot handle (a dtype, a head size) is refused in ``supports``
  with the reason, so sglang-fl falls back for that instance instead of failing mid-serving.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from sglang_fl.dispatch.backend import Availability, Backend, ImplKind, OpImpl
from sglang_fl.ops.catalog import GEMMA_RMS_NORM, RMS_NORM, ROTARY_EMBEDDING, SILU_AND_MUL
from sglang_fl.ops.params import ActivationParams, NormParams, RotaryParams
from sglang_fl_template import DEVICE_TYPE

# VENDOR: the dtypes your kernels take; other instances are refused (and fall back).
KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _dtype_reason(dtype: torch.dtype) -> str | None:
    if dtype not in KERNEL_DTYPES:
        return f"the template kernels take {', '.join(map(str, KERNEL_DTYPES))}, not {dtype}"
    return None


def _supports_activation(params: ActivationParams) -> str | None:
    return _dtype_reason(params.dtype)


def _supports_norm(params: NormParams) -> str | None:
    return _dtype_reason(params.dtype)


def _supports_rotary(params: RotaryParams) -> str | None:
    # VENDOR: refuse what your rotary kernel cannot do, e.g. a rotary_dim it does not support.
    if params.rotary_dim > params.head_size or params.rotary_dim % 2:
        return f"rotary_dim {params.rotary_dim} with head_size {params.head_size}"
    return _dtype_reason(params.dtype)


# --------------------------------------------------------------------------- silu_and_mul


def _bind_silu_and_mul(params: ActivationParams) -> Callable[[torch.Tensor], torch.Tensor]:
    def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
        # VENDOR: return your_kernels.silu_and_mul(x)
        half = x.shape[-1] // 2
        gate, up = x[..., :half].float(), x[..., half:].float()
        return (gate * torch.sigmoid(gate) * up).to(x.dtype)

    return silu_and_mul


# --------------------------------------------------------------------------- norms


def _normalized(h: torch.Tensor, eps: float) -> torch.Tensor:
    """float32 ``h / rms(h)`` over the last dim."""
    return h * torch.rsqrt(h.pow(2).mean(dim=-1, keepdim=True) + eps)


def _bind_rms_norm(params: NormParams) -> Callable[..., Any]:
    weight, eps = params.weight, params.eps  # the live parameter: SGLang reloads it in place

    def rms_norm(x: torch.Tensor, residual: torch.Tensor | None):
        if residual is None:
            # VENDOR: return your_kernels.rms_norm(x, weight, eps)
            return (_normalized(x.float(), eps) * weight.float()).to(x.dtype)
        # VENDOR: your_kernels.fused_add_rms_norm(x, residual, weight, eps) (in place)
        summed = x.float() + residual.float()
        residual.copy_(summed)  # the new residual, into the residual's storage
        x.copy_(_normalized(summed, eps) * weight.float())  # the output, into x's storage
        return x, residual

    return rms_norm


def _bind_gemma_rms_norm(params: NormParams) -> Callable[..., Any]:
    weight, eps = params.weight, params.eps

    def gemma_rms_norm(x: torch.Tensor, residual: torch.Tensor | None):
        # VENDOR: your_kernels.gemma_rms_norm(x, weight, eps); the scale is (1 + weight)
        if residual is not None:
            x = x + residual  # GemmaRMSNorm adds in the input dtype
        out = (_normalized(x.float(), eps) * (1.0 + weight.float())).to(x.dtype)
        return out if residual is None else (out, x)

    return gemma_rms_norm


# --------------------------------------------------------------------------- rotary


def _bind_rotary(params: RotaryParams) -> Callable[..., Any]:
    # Once per instance: the cos and sin tables, [max_positions, rotary_dim / 2] each, in fp32.
    # VENDOR: convert SGLang's cache ([max_pos, rotary_dim], cos half then sin half) here into
    # whatever layout and dtype your kernel takes.
    cos_table, sin_table = params.cos_sin_cache.float().chunk(2, dim=-1)
    cos_table, sin_table = cos_table.contiguous(), sin_table.contiguous()
    head_size, rotary_dim, neox = params.head_size, params.rotary_dim, params.is_neox_style

    def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        heads = x.reshape(x.shape[0], -1, head_size).float()
        rot, rest = heads[..., :rotary_dim], heads[..., rotary_dim:]
        if neox:  # GPT-NeoX: rotate the two halves
            first, second = rot.chunk(2, dim=-1)
        else:  # GPT-J: rotate (even, odd) pairs
            first, second = rot[..., 0::2], rot[..., 1::2]
        out1, out2 = first * cos - second * sin, second * cos + first * sin
        rotated = torch.cat((out1, out2), -1) if neox else torch.stack((out1, out2), -1).flatten(-2)
        return torch.cat((rotated, rest), dim=-1).to(x.dtype).reshape(x.shape)

    def rotary(positions: torch.Tensor, query: torch.Tensor, key: torch.Tensor):
        # VENDOR: return your_kernels.rotary(positions, query, key, cache, head_size, neox)
        flat = positions.flatten()
        cos, sin = cos_table[flat].unsqueeze(1), sin_table[flat].unsqueeze(1)
        return rotate(query, cos, sin), rotate(key, cos, sin)

    return rotary


# --------------------------------------------------------------------------- the backend

IMPLEMENTATIONS: Mapping[str, OpImpl] = {
    SILU_AND_MUL: OpImpl(_bind_silu_and_mul, supports=_supports_activation),
    # writes its output into x and the new residual into residual: declared, so a failing first
    # call is rolled back before sglang-fl falls back to another implementation
    RMS_NORM: OpImpl(_bind_rms_norm, mutates_inputs=True, supports=_supports_norm),
    GEMMA_RMS_NORM: OpImpl(_bind_gemma_rms_norm, supports=_supports_norm),
    ROTARY_EMBEDDING: OpImpl(_bind_rotary, supports=_supports_rotary),
}


class TemplateBackend(Backend):
    """Available where torch can allocate on DEVICE_TYPE (the CPU, as shipped)."""

    kind = ImplKind.VENDOR
    vendor = "template"  # VENDOR: your vendor name, the same as the bundle's

    def availability(self) -> Availability:
        # VENDOR: import your kernel package here (never at module level) and say precisely
        # why it cannot run: `sglang-fl ops` and the fallback warnings show this reason.
        try:
            torch.empty(1, device=DEVICE_TYPE)
        except Exception as exc:
            return Availability.no(f"torch cannot allocate on {DEVICE_TYPE!r}: {exc}")
        return Availability.yes()

    def implementations(self) -> Mapping[str, OpImpl]:
        return IMPLEMENTATIONS
