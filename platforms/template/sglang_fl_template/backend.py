"""The ``vendor.template`` backend: SGLang's fused ops behind sglang-fl's op contracts.

This is where a vendor's kernels go. Each op is an ``OpImpl`` whose ``bind(params)`` runs once
per op instance (with the static parameters of ``sglang_fl/ops/params.py``) and returns the
callable the model then calls directly, on the hot path:

  silu_and_mul      fn(x) -> silu(x[..., :d]) * x[..., d:]
  gelu_and_mul      fn(x) -> gelu(x[..., :d]) * x[..., d:], the instance's ``approximate``
  new_gelu          fn(x) -> the tanh-approximated gelu of x
  quick_gelu        fn(x) -> x * sigmoid(1.702 x)
  rms_norm          fn(x, residual) -> out, or (out, x + residual) when residual is given
  gemma_rms_norm    the same with the scale (1 + weight)
  gemma3_rms_norm   the same as gemma_rms_norm
  rms_norm_without_scale
                    fn(x, None) -> x / rms(x), no weight
  layer_norm        fn(x) -> layer norm of x (weight and bias optional)
  rotary_embedding  fn(positions, query, key) -> (query, key)
  mrotary_embedding the same with [3, tokens] positions (t, h, w) over mrope sections, or
                    [tokens] positions (plain rope)
  deepseek_scaling_rotary_embedding
                    the same as rotary_embedding (DeepSeek's scaling is in the cache)

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
import torch.nn.functional as F

from sglang_fl.dispatch.backend import Availability, Backend, ImplKind, OpImpl
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
from sglang_fl_template import DEVICE_TYPE

# VENDOR: the dtypes your kernels take; other instances are refused (and fall back).
KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _dtype_reason(dtype: torch.dtype) -> str | None:
    if dtype not in KERNEL_DTYPES:
        return f"the template kernels take {', '.join(map(str, KERNEL_DTYPES))}, not {dtype}"
    return None


def _supports_activation(params: ActivationParams) -> str | None:
    return _dtype_reason(params.dtype)


def _supports_gelu_and_mul(params: ActivationParams) -> str | None:
    if params.approximate not in GELU_APPROXIMATIONS:
        return f"approximate={params.approximate!r} is not one of {GELU_APPROXIMATIONS}"
    return _dtype_reason(params.dtype)


def _supports_norm(params: NormParams) -> str | None:
    return _dtype_reason(params.dtype)


def _supports_layer_norm(params: LayerNormParams) -> str | None:
    return _dtype_reason(params.dtype) or _dtype_reason(params.compute_dtype)


def _supports_rotary(params: RotaryParams | MRotaryParams) -> str | None:
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


def _bind_gelu_and_mul(params: ActivationParams) -> Callable[[torch.Tensor], torch.Tensor]:
    approximate = params.approximate  # "tanh" (Gemma 2/3) or "none" (erf, Gemma 1)

    def gelu_and_mul(x: torch.Tensor) -> torch.Tensor:
        # VENDOR: return your_kernels.gelu_and_mul(x, approximate)
        half = x.shape[-1] // 2
        gate, up = x[..., :half].float(), x[..., half:].float()
        return (F.gelu(gate, approximate=approximate) * up).to(x.dtype)

    return gelu_and_mul


def _bind_new_gelu(params: ActivationParams) -> Callable[[torch.Tensor], torch.Tensor]:
    def new_gelu(x: torch.Tensor) -> torch.Tensor:
        # VENDOR: return your_kernels.gelu_tanh(x)
        return F.gelu(x.float(), approximate="tanh").to(x.dtype)

    return new_gelu


def _bind_quick_gelu(params: ActivationParams) -> Callable[[torch.Tensor], torch.Tensor]:
    def quick_gelu(x: torch.Tensor) -> torch.Tensor:
        # VENDOR: return your_kernels.quick_gelu(x)
        h = x.float()
        return (h * torch.sigmoid(1.702 * h)).to(x.dtype)

    return quick_gelu


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


def _bind_norm_without_scale(params: NormParams) -> Callable[..., Any]:
    eps = params.eps  # params.weight is None: there is no scale

    def norm_without_scale(x: torch.Tensor, residual: None = None) -> torch.Tensor:
        # VENDOR: return your_kernels.rms_norm(x, None, eps)
        return _normalized(x.float(), eps).to(x.dtype)

    return norm_without_scale


def _bind_layer_norm(params: LayerNormParams) -> Callable[[torch.Tensor], torch.Tensor]:
    # weight / bias are None where SGLang's LayerNorm switches them off
    weight, bias, eps, hidden = params.weight, params.bias, params.eps, params.hidden_size

    def layer_norm(x: torch.Tensor) -> torch.Tensor:
        # VENDOR: return your_kernels.layer_norm(x, weight, bias, eps)
        w = None if weight is None else weight.float()
        b = None if bias is None else bias.float()
        return F.layer_norm(x.float(), (hidden,), w, b, eps).to(x.dtype)

    return layer_norm


# --------------------------------------------------------------------------- rotary


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, head_size: int,
            rotary_dim: int, neox: bool) -> torch.Tensor:  # fmt: skip
    """``x`` (any shape viewing as [tokens, -1, head_size]) rotated by per-token ``cos``/``sin``
    ``[tokens, 1, rotary_dim / 2]``, in fp32, rounded once."""
    heads = x.reshape(x.shape[0], -1, head_size).float()
    rot, rest = heads[..., :rotary_dim], heads[..., rotary_dim:]
    if neox:  # GPT-NeoX: rotate the two halves
        first, second = rot.chunk(2, dim=-1)
    else:  # GPT-J: rotate (even, odd) pairs
        first, second = rot[..., 0::2], rot[..., 1::2]
    out1, out2 = first * cos - second * sin, second * cos + first * sin
    rotated = torch.cat((out1, out2), -1) if neox else torch.stack((out1, out2), -1).flatten(-2)
    return torch.cat((rotated, rest), dim=-1).to(x.dtype).reshape(x.shape)


def _cos_sin_tables(params: RotaryParams | MRotaryParams) -> tuple[torch.Tensor, torch.Tensor]:
    """Once per instance: the cos and sin tables, [max_positions, rotary_dim / 2] each, fp32.
    VENDOR: convert SGLang's cache ([max_pos, rotary_dim], cos half then sin half) here into
    whatever layout and dtype your kernel takes."""
    cos_table, sin_table = params.cos_sin_cache.float().chunk(2, dim=-1)
    return cos_table.contiguous(), sin_table.contiguous()


def _bind_rotary(params: RotaryParams) -> Callable[..., Any]:
    cos_table, sin_table = _cos_sin_tables(params)
    head_size, rotary_dim, neox = params.head_size, params.rotary_dim, params.is_neox_style

    def rotary(positions: torch.Tensor, query: torch.Tensor, key: torch.Tensor):
        # VENDOR: return your_kernels.rotary(positions, query, key, cache, head_size, neox)
        flat = positions.flatten()
        cos, sin = cos_table[flat].unsqueeze(1), sin_table[flat].unsqueeze(1)
        return (_rotate(query, cos, sin, head_size, rotary_dim, neox),
                _rotate(key, cos, sin, head_size, rotary_dim, neox))  # fmt: skip

    return rotary


def _frequency_rows(params: MRotaryParams) -> torch.Tensor:
    """For each of the rotary_dim / 2 frequencies, the row of [3, T] positions (0 t, 1 h, 2 w)
    it takes: chunked sections (Qwen2-VL) are consecutive t | h | w runs; interleaved ones
    (Qwen3-VL) cycle t, h, w over the first 3 * section frequencies of h and w."""
    t, h, w = params.mrope_section
    rows = []
    for j in range(params.rotary_dim // 2):
        if params.interleaved:
            rows.append(1 if j % 3 == 1 and j < 3 * h else 2 if j % 3 == 2 and j < 3 * w else 0)
        else:
            rows.append(0 if j < t else 1 if j < t + h else 2)
    return torch.tensor(rows, device=params.cos_sin_cache.device)


def _bind_mrotary(params: MRotaryParams) -> Callable[..., Any]:
    cos_table, sin_table = _cos_sin_tables(params)
    head_size, rotary_dim, neox = params.head_size, params.rotary_dim, params.is_neox_style
    rows = _frequency_rows(params) if params.mrope_section is not None else None
    frequencies = torch.arange(rotary_dim // 2, device=cos_table.device)

    def mrotary(positions: torch.Tensor, query: torch.Tensor, key: torch.Tensor):
        # VENDOR: return your_kernels.mrope(positions, query, key, cache, sections, ...)
        if positions.dim() == 1:  # text only: plain rope
            cos, sin = cos_table[positions], sin_table[positions]
        else:  # frequency j at the position of its row: [T, rotary_dim / 2]
            per_frequency = positions[rows].transpose(0, 1)
            cos, sin = cos_table[per_frequency, frequencies], sin_table[per_frequency, frequencies]
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        return (_rotate(query, cos, sin, head_size, rotary_dim, neox),
                _rotate(key, cos, sin, head_size, rotary_dim, neox))  # fmt: skip

    return mrotary


# --------------------------------------------------------------------------- the backend

IMPLEMENTATIONS: Mapping[str, OpImpl] = {
    SILU_AND_MUL: OpImpl(_bind_silu_and_mul, supports=_supports_activation),
    GELU_AND_MUL: OpImpl(_bind_gelu_and_mul, supports=_supports_gelu_and_mul),
    NEW_GELU: OpImpl(_bind_new_gelu, supports=_supports_activation),
    QUICK_GELU: OpImpl(_bind_quick_gelu, supports=_supports_activation),
    # writes its output into x and the new residual into residual: declared, so a failing first
    # call is rolled back before sglang-fl falls back to another implementation
    RMS_NORM: OpImpl(_bind_rms_norm, mutates_inputs=True, supports=_supports_norm),
    GEMMA_RMS_NORM: OpImpl(_bind_gemma_rms_norm, supports=_supports_norm),
    GEMMA3_RMS_NORM: OpImpl(_bind_gemma_rms_norm, supports=_supports_norm),
    RMS_NORM_WITHOUT_SCALE: OpImpl(_bind_norm_without_scale, supports=_supports_norm),
    LAYER_NORM: OpImpl(_bind_layer_norm, supports=_supports_layer_norm),
    ROTARY_EMBEDDING: OpImpl(_bind_rotary, supports=_supports_rotary),
    MROTARY_EMBEDDING: OpImpl(_bind_mrotary, supports=_supports_rotary),
    # DeepSeek's YaRN scaling (mscale) is already in its cache: the rotary kernel serves it
    DEEPSEEK_SCALING_ROTARY_EMBEDDING: OpImpl(_bind_rotary, supports=_supports_rotary),
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
