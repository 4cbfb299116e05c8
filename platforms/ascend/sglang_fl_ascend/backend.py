"""The ``vendor.ascend`` backend: SGLang's fused ops on torch_npu's public kernels.

Each implementation follows the contracts in ``sglang_fl/ops/params.py`` and uses only public
torch_npu APIs (where SGLang's own ``forward_npu`` paths have one, the one they call):

  silu_and_mul      ``npu_swiglu(x)``: silu of the first half times the second half (dim -1).
  gelu_and_mul      ``npu_geglu(x, dim=-1, approximate=1 | 0, activate_left=True)[0]``: gelu
                    (tanh: 1, erf: 0) of the first half times the second half, as SGLang's
                    ``GeluAndMul.forward_npu`` calls it; the second output (the gelu alone)
                    is dropped.
  new_gelu          ``npu_gelu(x, approximate="tanh")``: GPT-2's tanh-approximated gelu.
                    SGLang's ``NewGELU`` has no NPU path (it runs ``forward_native`` there).
  quick_gelu        ``npu_fast_gelu(x)``, as ``QuickGELU.forward_npu`` calls it: its documented
                    formula on Atlas A2/A3 (the 910B class) is ``x / (1 + exp(-1.702 x))``,
                    i.e. ``x * sigmoid(1.702 x)``, quick gelu itself; the formula given for the
                    older Atlas products, ``x / (1 + exp(-1.702 |x|)) * exp(0.851 (x - |x|))``,
                    is the overflow-safe form of the same function (the docstring prints the
                    exponent as ``0.851 x (x - |x|)``, which would grow without bound for x < 0
                    and can only be a typo).
  rms_norm          ``npu_rms_norm(x, w, eps)[0]``; with a residual
                    ``npu_add_rms_norm(x, residual, w, eps) -> (y, rstd, x + residual)``: the
                    third output is the new residual, in x's dtype (x is passed first).
  gemma_rms_norm    ``npu_gemma_rms_norm(x, w, eps)[0]`` (scale ``1 + w`` inside the kernel); with
                    a residual, ``x + residual`` in the input dtype first (the contract's
                    precision), then the same kernel. Fusing through ``npu_add_rms_norm`` would
                    need a copy of ``1 + w`` that goes stale when weights are reloaded in place.
  gemma3_rms_norm   the same as gemma_rms_norm (``Gemma3RMSNorm.forward_npu`` calls
                    ``npu_gemma_rms_norm`` too; SGLang 0.5.21+ sends its residual form to
                    ``forward_native``, which adds in the input dtype as we do).
  rms_norm_without_scale
                    ``npu_rms_norm(x, ones, eps)[0]``: a gamma of ones in the input dtype, made
                    once at bind (multiplying by one is exact). SGLang's ``RMSNormWithoutScale``
                    has no NPU path.
  layer_norm        ``npu_layer_norm_eval(x.to(p), [hidden], w, b, eps).to(x.dtype)``, ``p`` the
                    parameters' dtype SGLang's LayerNorm computes in (fp32 by default);
                    documented as F.layer_norm, NPU-optimised. SGLang's ``LayerNorm.forward_npu``
                    is its native path (the same math through F.layer_norm).
  rotary_embedding  ``npu_mrope(positions, q, k, cos_sin_cache, head_size, mrope_section=[0, 0,
                    0], rotary_mode="half" | "interleave")``: plain RoPE (not M-RoPE) over the
                    flattened ``[tokens, heads * head_size]`` layout, gathering cos/sin by
                    position inside the kernel. It takes SGLang's cache layout as it is
                    (``[max_pos, rotary_dim]``, cos half then sin half); ``bind`` casts it once
                    to the query dtype, so no call concatenates or converts anything.
  mrotary_embedding ``npu_mrope`` as above for ``[T]`` positions (rope mode, as SGLang's
                    ``MRotaryEmbedding.forward_npu`` calls it); ``[3, T]`` positions in its
                    documented mrope mode, ``mrope_section=`` the instance's chunked t | h | w
                    sections (SGLang 0.5.15-0.5.22 pass ``[3, T]`` positions with ``[0, 0, 0]``,
                    which the documentation does not define; 0.5.23 sends them to
                    ``forward_native`` instead).
  deepseek_scaling_rotary_embedding
                    ``npu_mrope`` in rope mode, as rotary_embedding (DeepSeek's ``interleave``
                    style included); see below for ``npu_interleave_rope``.

``npu_swiglu`` and ``npu_gemma_rms_norm`` take contiguous inputs only (documented), so a strided
view (a slice of a wider projection output) is made contiguous first, a no-op otherwise.

What falls back (per instance, through ``OpImpl.supports``; selection then uses the next
backend, e.g. the reference) and why: dtypes other than fp16/bf16/fp32; a norm weight whose
dtype differs from the input (the kernels require gamma in the input dtype); a rotary_dim that
is not a multiple of 32 (fp16/bf16) or 16 (fp32), ``npu_mrope``'s documented constraint; mrope
with Qwen3-VL's interleaved sections (``npu_mrope`` documents only the chunked layout) or with
sections that do not sum to rotary_dim / 2 (its documented constraint); a layer norm whose
weight or bias is in another dtype than its compute dtype; and any op missing from the
installed torch_npu. DeepSeek's rope does not use SGLang's ``npu_interleave_rope``: torch_npu
2.13.0 documents nothing of it (a schema, and a graph lowering that lists fp16 only), and
SGLang feeds it cos/sin in the rotate-half layout (``cos(cat(freqs, freqs))``), which fits only
an output in rotate-half order, a permutation of the contract's interleaved result;
``npu_mrope``'s documented ``interleave`` mode computes the contract's layout itself.

No implementation writes into its inputs (all these kernels are out of place), so none
declares ``mutates_inputs``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

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


# --------------------------------------------------------------------------- gelus

# npu_geglu's ``approximate``: an index, 0 = none (erf), 1 = tanh
GEGLU_APPROXIMATE = {"none": 0, "tanh": 1}


def _supports_gelu_and_mul(params: ActivationParams) -> str | None:
    if params.approximate not in GELU_APPROXIMATIONS:
        return f"approximate={params.approximate!r} is not one of {GELU_APPROXIMATIONS}"
    return _dtype_reason(params.dtype, "npu_geglu") or _missing_op("npu_geglu")


def _bind_gelu_and_mul(params: ActivationParams) -> Callable[[torch.Tensor], torch.Tensor]:
    npu_geglu = _torch_npu().npu_geglu
    approximate = GEGLU_APPROXIMATE[params.approximate]

    def gelu_and_mul(x: torch.Tensor) -> torch.Tensor:
        # (gelu(a) * b, gelu(a)); activate_left: the gelu'd half is the first (the schema's
        # default activates the second); non-contiguous input is documented as supported
        return npu_geglu(x, dim=-1, approximate=approximate, activate_left=True)[0]

    return gelu_and_mul


def _supports_new_gelu(params: ActivationParams) -> str | None:
    return _dtype_reason(params.dtype, "npu_gelu") or _missing_op("npu_gelu")


def _bind_new_gelu(params: ActivationParams) -> Callable[[torch.Tensor], torch.Tensor]:
    npu_gelu = _torch_npu().npu_gelu

    def new_gelu(x: torch.Tensor) -> torch.Tensor:
        return npu_gelu(x, approximate="tanh")

    return new_gelu


def _supports_quick_gelu(params: ActivationParams) -> str | None:
    return _dtype_reason(params.dtype, "npu_fast_gelu") or _missing_op("npu_fast_gelu")


def _bind_quick_gelu(params: ActivationParams) -> Callable[[torch.Tensor], torch.Tensor]:
    return _torch_npu().npu_fast_gelu  # same signature: fn(x) -> x * sigmoid(1.702 x)


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


def _supports_norm_without_scale(params: NormParams) -> str | None:
    return _dtype_reason(params.dtype, "npu_rms_norm") or _missing_op("npu_rms_norm")


def _bind_norm_without_scale(params: NormParams) -> Callable[..., Any]:
    npu_rms_norm, eps = _torch_npu().npu_rms_norm, params.eps
    # once per instance: gamma must be in the input dtype; x * 1 is exact
    ones = torch.ones(params.hidden_size, dtype=params.dtype, device=params.device)

    def norm_without_scale(x: torch.Tensor, residual: None = None) -> torch.Tensor:
        return npu_rms_norm(x, ones, eps)[0]

    return norm_without_scale


# --------------------------------------------------------------------------- layer_norm


def _supports_layer_norm(params: LayerNormParams) -> str | None:
    reason = _dtype_reason(params.dtype, "npu_layer_norm_eval") or _dtype_reason(
        params.compute_dtype, "npu_layer_norm_eval"
    )
    if reason:
        return reason
    for name in ("weight", "bias"):
        tensor = getattr(params, name)
        if tensor is not None and tensor.dtype != params.compute_dtype:
            return (
                f"npu_layer_norm_eval needs the {name} in the compute dtype "
                f"{params.compute_dtype}; it is {tensor.dtype}"
            )
    return _missing_op("npu_layer_norm_eval")


def _bind_layer_norm(params: LayerNormParams) -> Callable[[torch.Tensor], torch.Tensor]:
    npu_layer_norm_eval = _torch_npu().npu_layer_norm_eval
    weight, bias, eps, compute = params.weight, params.bias, params.eps, params.compute_dtype
    shape = [params.hidden_size]

    def layer_norm(x: torch.Tensor) -> torch.Tensor:
        # SGLang's LayerNorm computes in its parameters' dtype (fp32 by default); the casts
        # are no-ops when x already has that dtype
        out = npu_layer_norm_eval(x.to(compute), shape, weight=weight, bias=bias, eps=eps)
        return out.to(x.dtype)

    return layer_norm


# --------------------------------------------------------------------------- rotary


def _supports_rotary(params: RotaryParams | MRotaryParams) -> str | None:
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


def _npu_mrope_call(params: RotaryParams | MRotaryParams) -> Callable[..., Any]:
    """``fn(positions, query, key, section)`` over ``npu_mrope``: the 2-D layout it takes, the
    cache cast once here to the query dtype on the query device (a no-op when SGLang already
    stores it so, as it does on NPU), the rotary mode of the instance."""
    npu_mrope = _torch_npu().npu_mrope
    cache = params.cos_sin_cache.to(device=params.device, dtype=params.dtype).contiguous()
    head_size = params.head_size
    mode = "half" if params.is_neox_style else "interleave"

    def call(positions: torch.Tensor, query: torch.Tensor, key: torch.Tensor, section: list):
        q_shape, k_shape = query.shape, key.shape
        q, k = npu_mrope(
            positions, query.reshape(q_shape[0], -1), key.reshape(k_shape[0], -1),
            cache, head_size, mrope_section=section, rotary_mode=mode,
        )  # fmt: skip
        return q.reshape(q_shape), k.reshape(k_shape)

    return call


def _bind_rotary(params: RotaryParams) -> Callable[..., Any]:
    call = _npu_mrope_call(params)
    section = list(_ROPE_SECTION)

    def rotary(positions: torch.Tensor, query: torch.Tensor, key: torch.Tensor):
        return call(positions.flatten(), query, key, section)

    return rotary


def _supports_mrotary(params: MRotaryParams) -> str | None:
    reason = _supports_rotary(params)
    if reason or params.mrope_section is None:
        return reason
    if params.interleaved:
        return (
            "npu_mrope documents only the chunked t | h | w sections (mrope_section); "
            "Qwen3-VL's interleaved layout is none of its modes"
        )
    if sum(params.mrope_section) != params.rotary_dim // 2:
        return (
            f"npu_mrope needs the mrope sections to sum to rotary_dim / 2 = "
            f"{params.rotary_dim // 2}; got {list(params.mrope_section)}"
        )
    return None


def _bind_mrotary(params: MRotaryParams) -> Callable[..., Any]:
    call = _npu_mrope_call(params)
    rope = list(_ROPE_SECTION)  # [T] positions (text only): rope mode
    mrope = list(params.mrope_section) if params.mrope_section is not None else rope

    def mrotary(positions: torch.Tensor, query: torch.Tensor, key: torch.Tensor):
        return call(positions, query, key, mrope if positions.dim() == 2 else rope)

    return mrotary


# --------------------------------------------------------------------------- the backend

IMPLEMENTATIONS: Mapping[str, OpImpl] = {
    SILU_AND_MUL: OpImpl(_bind_silu_and_mul, supports=_supports_silu_and_mul),
    GELU_AND_MUL: OpImpl(_bind_gelu_and_mul, supports=_supports_gelu_and_mul),
    NEW_GELU: OpImpl(_bind_new_gelu, supports=_supports_new_gelu),
    QUICK_GELU: OpImpl(_bind_quick_gelu, supports=_supports_quick_gelu),
    RMS_NORM: OpImpl(_bind_rms_norm, supports=_supports_rms_norm),
    GEMMA_RMS_NORM: OpImpl(_bind_gemma_rms_norm, supports=_supports_gemma_rms_norm),
    GEMMA3_RMS_NORM: OpImpl(_bind_gemma_rms_norm, supports=_supports_gemma_rms_norm),
    RMS_NORM_WITHOUT_SCALE: OpImpl(_bind_norm_without_scale, supports=_supports_norm_without_scale),
    LAYER_NORM: OpImpl(_bind_layer_norm, supports=_supports_layer_norm),
    ROTARY_EMBEDDING: OpImpl(_bind_rotary, supports=_supports_rotary),
    MROTARY_EMBEDDING: OpImpl(_bind_mrotary, supports=_supports_mrotary),
    DEEPSEEK_SCALING_ROTARY_EMBEDDING: OpImpl(_bind_rotary, supports=_supports_rotary),
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
