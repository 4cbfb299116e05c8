"""The ``vendor.ascend`` backend: SGLang's fused ops on torch_npu's public kernels.

Each implementation follows the contracts in ``sglang_fl/ops/params.py`` and uses only public
torch_npu APIs (the ones SGLang's own ``forward_npu`` paths call):

  silu_and_mul      ``npu_swiglu(x)``: silu of the first half times the second half (dim -1).
  rms_norm          ``npu_rms_norm(x, w, eps)[0]``; with a residual
                    ``npu_add_rms_norm(x, residual, w, eps) -> (y, rstd, x + residual)``: the
                    third output is the new residual, in x's dtype (x is passed first).
  gemma_rms_norm    ``npu_gemma_rms_norm(x, w, eps)[0]`` (scale ``1 + w`` inside the kernel); with
                    a residual, ``x + residual`` in the input dtype first (the contract's
                    precision), then the same kernel. Fusing through ``npu_add_rms_norm`` would
                    need a copy of ``1 + w`` that goes stale when weights are reloaded in place.
  rotary_embedding  ``npu_mrope(positions, q, k, cos_sin_cache, head_size, mrope_section=[0, 0,
                    0], rotary_mode="half" | "interleave")``: plain RoPE (not M-RoPE) over the
                    flattened ``[tokens, heads * head_size]`` layout, gathering cos/sin by
                    position inside the kernel. It takes SGLang's cache layout as it is
                    (``[max_pos, rotary_dim]``, cos half then sin half); ``bind`` casts it once
                    to the query dtype, so no call concatenates or converts anything.

``npu_swiglu`` and ``npu_gemma_rms_norm`` take contiguous inputs only (documented), so a strided
view (a slice of a wider projection output) is made contiguous first, a no-op otherwise.

Cases torch_npu cannot express are refused per instance through ``OpImpl.supports`` (selection
then uses the next backend, e.g. the reference): dtypes other than fp16/bf16/fp32, a norm weight
whose dtype differs from the input (the kernels require gamma in the input dtype), a rotary_dim
that is not a multiple of 32 (fp16/bf16) or 16 (fp32), ``npu_mrope``'s documented constraint,
and any op missing from the installed torch_npu.

No implementation writes into its inputs (all these kernels are out of place), so none
declares ``mutates_inputs``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from sglang_fl.dispatch.backend import Availability, Backend, ImplKind, OpImpl
from sglang_fl.ops.catalog import GEMMA_RMS_NORM, RMS_NORM, ROTARY_EMBEDDING, SILU_AND_MUL
from sglang_fl.ops.params import ActivationParams, NormParams, RotaryParams

KERNEL_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
# npu_mrope: "rotary_dim must be a multiple of 32 for BF16/FP16 inputs, of 16 for FP32".
ROTARY_DIM_MULTIPLE = {torch.float16: 32, torch.bfloat16: 32, torch.float32: 16}
# mrope_section [0, 0, 0] selects plain RoPE mode (positions 1-D).
_ROPE_SECTION = (0, 0, 0)


def _torch_npu() -> Any:
    import torch_npu

    return torch_npu


def _missing_op(name: str) -> str | None:
    """Why ``torch_npu.<name>`` cannot be called here, or None."""
    try:
        torch_npu = _torch_npu()
    except ImportError as exc:
        return f"torch_npu cannot be imported: {exc}"
    if not callable(getattr(torch_npu, name, None)):
        version = getattr(torch_npu, "__version__", "?")
        return f"torch_npu {version} has no public {name}"
    return None


def _dtype_reason(dtype: torch.dtype, op: str) -> str | None:
    if dtype not in KERNEL_DTYPES:
        return f"{op} supports float16, bfloat16 and float32, not {dtype}"
    return None


# --------------------------------------------------------------------------- silu_and_mul


def _supports_silu_and_mul(params: ActivationParams) -> str | None:
    return _dtype_reason(params.dtype, "npu_swiglu") or _missing_op("npu_swiglu")


def _bind_silu_and_mul(params: ActivationParams) -> Callable[[torch.Tensor], torch.Tensor]:
    npu_swiglu = _torch_npu().npu_swiglu

    def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
        # npu_swiglu(x, dim=-1) is exactly silu(x[..., :d]) * x[..., d:], on a contiguous
        # input (its documented constraint; .contiguous() is free when x already is)
        return npu_swiglu(x.contiguous())

    return silu_and_mul


# --------------------------------------------------------------------------- norms


def _norm_reason(params: NormParams, *ops: str) -> str | None:
    reason = _dtype_reason(params.dtype, ops[0])
    if reason:
        return reason
    if params.weight.dtype != params.dtype:
        return (
            f"{ops[0]} needs the weight in the input dtype; weight is {params.weight.dtype}, "
            f"input is {params.dtype}"
        )
    for op in ops:
        missing = _missing_op(op)
        if missing:
            return missing
    return None


def _supports_rms_norm(params: NormParams) -> str | None:
    return _norm_reason(params, "npu_rms_norm", "npu_add_rms_norm")


def _bind_rms_norm(params: NormParams) -> Callable[..., Any]:
    torch_npu = _torch_npu()
    npu_rms_norm, npu_add_rms_norm = torch_npu.npu_rms_norm, torch_npu.npu_add_rms_norm
    weight, eps = params.weight, params.eps

    def rms_norm(x: torch.Tensor, residual: torch.Tensor | None):
        if residual is None:
            return npu_rms_norm(x, weight, eps)[0]
        # (y, rstd, x + residual): x first, so the new residual has x's dtype
        out, _, new_residual = npu_add_rms_norm(x, residual, weight, eps)
        return out, new_residual

    return rms_norm


def _supports_gemma_rms_norm(params: NormParams) -> str | None:
    return _norm_reason(params, "npu_gemma_rms_norm")


def _bind_gemma_rms_norm(params: NormParams) -> Callable[..., Any]:
    npu_gemma_rms_norm = _torch_npu().npu_gemma_rms_norm
    weight, eps = params.weight, params.eps

    def gemma_rms_norm(x: torch.Tensor, residual: torch.Tensor | None):
        if residual is None:  # the kernel takes contiguous input only (documented)
            return npu_gemma_rms_norm(x.contiguous(), weight, eps)[0]
        summed = x + residual  # GemmaRMSNorm adds in the input dtype
        return npu_gemma_rms_norm(summed, weight, eps)[0], summed

    return gemma_rms_norm


# --------------------------------------------------------------------------- rotary


def _supports_rotary(params: RotaryParams) -> str | None:
    reason = _dtype_reason(params.dtype, "npu_mrope")
    if reason:
        return reason
    cache = params.cos_sin_cache
    if cache.dim() != 2 or cache.shape[-1] != params.rotary_dim:
        return f"cos_sin_cache of shape {tuple(cache.shape)} is not [max_pos, rotary_dim]"
    if params.rotary_dim > params.head_size:
        return f"rotary_dim {params.rotary_dim} exceeds head_size {params.head_size}"
    multiple = ROTARY_DIM_MULTIPLE[params.dtype]
    if params.rotary_dim % multiple:
        return (
            f"npu_mrope needs rotary_dim to be a multiple of {multiple} for {params.dtype}; "
            f"got {params.rotary_dim}"
        )
    return _missing_op("npu_mrope")


def _bind_rotary(params: RotaryParams) -> Callable[..., Any]:
    npu_mrope = _torch_npu().npu_mrope
    # Once per instance: the cache in the query dtype on the query device (a no-op when SGLang
    # already stores it so, as it does on NPU).
    cache = params.cos_sin_cache.to(device=params.device, dtype=params.dtype).contiguous()
    head_size = params.head_size
    mode = "half" if params.is_neox_style else "interleave"
    section = list(_ROPE_SECTION)

    def rotary(positions: torch.Tensor, query: torch.Tensor, key: torch.Tensor):
        q_shape, k_shape = query.shape, key.shape
        q, k = npu_mrope(
            positions.flatten(), query.reshape(q_shape[0], -1), key.reshape(k_shape[0], -1),
            cache, head_size, mrope_section=section, rotary_mode=mode,
        )  # fmt: skip
        return q.reshape(q_shape), k.reshape(k_shape)

    return rotary


# --------------------------------------------------------------------------- the backend

IMPLEMENTATIONS: Mapping[str, OpImpl] = {
    SILU_AND_MUL: OpImpl(_bind_silu_and_mul, supports=_supports_silu_and_mul),
    RMS_NORM: OpImpl(_bind_rms_norm, supports=_supports_rms_norm),
    GEMMA_RMS_NORM: OpImpl(_bind_gemma_rms_norm, supports=_supports_gemma_rms_norm),
    ROTARY_EMBEDDING: OpImpl(_bind_rotary, supports=_supports_rotary),
}


class AscendBackend(Backend):
    """torch_npu kernels; available where torch_npu imports and an NPU is visible."""

    kind = ImplKind.VENDOR
    vendor = "ascend"

    def availability(self) -> Availability:
        try:
            _torch_npu()
        except ImportError as exc:
            return Availability.no(f"torch_npu cannot be imported: {exc}")
        npu = getattr(torch, "npu", None)
        if npu is None:
            return Availability.no("torch_npu imported but torch.npu is missing")
        if not npu.is_available():
            return Availability.no(
                "torch_npu imported but no NPU is visible (torch.npu.is_available() is False; "
                "check the driver mounts and ASCEND_RT_VISIBLE_DEVICES)"
            )
        return Availability.yes()

    def implementations(self) -> Mapping[str, OpImpl]:
        return IMPLEMENTATIONS
