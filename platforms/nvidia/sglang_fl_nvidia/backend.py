"""The ``vendor.nvidia`` backend: SGLang's fused ops on NVIDIA's vendor kernels.

These are the kernels SGLang itself runs on CUDA, called the way SGLang's own ``forward_cuda``
paths call them (argument orders checked against sgl_kernel 0.4.4's Python wrappers and
flashinfer 0.6.12's, the GPU host's versions):

  silu_and_mul      ``sgl_kernel.silu_and_mul(x) -> out``
  gelu_and_mul      ``sgl_kernel.gelu_tanh_and_mul(x) -> out`` (``approximate="tanh"``) or
                    ``sgl_kernel.gelu_and_mul(x) -> out`` (``"none"``, erf), as SGLang's
                    ``GeluAndMul`` calls them (0.5.21+ prefers a JIT kernel for aligned widths)
  rms_norm          ``sgl_kernel.rmsnorm(x, w, eps) -> out``; with a residual
                    ``sgl_kernel.fused_add_rmsnorm(x, residual, w, eps)``, in place:
                    ``residual += x`` then ``x = norm(residual) * w``
  gemma_rms_norm    ``sgl_kernel.gemma_rmsnorm`` / ``gemma_fused_add_rmsnorm`` (scale ``1 + w``
                    inside the kernel, so the raw weight is passed)
  gemma3_rms_norm   the same two kernels, as ``Gemma3RMSNorm.forward_cuda`` calls them on
                    SGLang 0.5.21+ (0.5.15 has no kernel for it); 3-D input (Gemma 3's per-head
                    q/k norm), which SGLang leaves on ``forward_native``, goes through a 2-D
                    ``[-1, head_dim]`` reshape of the input (the output is a new tensor)
  rms_norm_without_scale
                    ``sgl_kernel.rmsnorm(x, ones, eps)``: SGLang's ``RMSNormWithoutScale`` has
                    no CUDA kernel (``forward_cuda`` is ``forward_native``), but multiplying by a
                    weight of ones is exact, and SGLang's ``Gemma4RMSNorm.forward_cuda`` makes
                    the same call for its unscaled (``with_scale=False``) norms
  layer_norm        ``flashinfer.norm.layernorm(x, gamma, beta, eps) -> out`` for bf16 input with
                    fp32 parameters, the one case ``LayerNorm.forward_cuda`` sends there (it
                    passes the weight and bias even when ``elementwise_affine`` / ``bias`` is
                    off, where they stay ones and zeros: bind makes such fp32 ones/zeros once)
  rotary_embedding  SGLang's CUDA rope kernel (``apply_rope_with_cos_sin_cache_inplace``, a
                    flashinfer-derived JIT kernel; sgl_kernel 0.4.4 only keeps the legacy
                    vLLM-style ``rotary_embedding``, which SGLang no longer calls), in place on
                    ``[tokens, heads, rotary_dim]`` views of q and k; it needs an fp32 cache,
                    made once per instance at bind.
  mrotary_embedding [3, T] positions: SGLang's Triton ``triton_mrope_fused(q, k, cache,
                    positions, mrope_section, head_size, rotary_dim, interleaved, False, is_neox,
                    None)`` in place on 2-D q/k (``MRotaryEmbedding.forward_triton``), with the
                    cache in the query dtype as SGLang casts it (bind does it once); [T]
                    positions (text only, which SGLang runs natively): the rope kernel above.
  deepseek_scaling_rotary_embedding
                    the rope kernel above, fp32 cache: DeepSeek's ``forward_cuda`` is the one it
                    inherits from RotaryEmbedding.

The norms go 2-D as SGLang does (``[-1, hidden]``). Cases the kernels do not take are refused
per instance through ``OpImpl.supports`` and selection moves on to the next backend: dtypes
other than fp16/bf16 for the norms (flashinfer's norm kernels), a norm weight in another dtype
than the input, a gated activation whose row is not a multiple of 16 bytes, a layer norm other
than bf16 input with fp32 parameters. Two ops have no vendor kernel at all and refuse every
instance: ``new_gelu`` (SGLang's ``NewGELU.forward_cuda`` runs ``forward_native``; sgl_kernel
has a tanh gelu only fused with the multiply) and ``quick_gelu`` (sgl_kernel 0.4.4 exports
``gelu_quick`` on ROCm builds only; its CUDA build registers no such op, and SGLang's
``QuickGELU.forward_cuda`` runs ``forward_native``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from sglang_fl.compat import fused_ops
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

NORM_DTYPES = (torch.float16, torch.bfloat16)
ACTIVATION_DTYPES = (torch.float16, torch.bfloat16, torch.float32)

NEW_GELU_REFUSAL = (
    "no vendor kernel: SGLang's NewGELU.forward_cuda runs forward_native, and sgl_kernel "
    "0.4.4 has the tanh gelu only fused with the multiply (gelu_tanh_and_mul)"
)
QUICK_GELU_REFUSAL = (
    "no vendor kernel: sgl_kernel 0.4.4 exports gelu_quick on ROCm builds only (its CUDA build "
    "registers no such op), and SGLang's QuickGELU.forward_cuda runs forward_native"
)


def _sgl_kernel() -> Any:
    import sgl_kernel

    return sgl_kernel


def _no_vendor_kernel(reason: str) -> OpImpl:
    """An op with no NVIDIA vendor kernel: every instance is refused with ``reason`` (selection
    moves on), so ``bind`` is never reached through the dispatcher."""

    def refuse(params: Any) -> str:
        return reason

    def bind(params: Any) -> Callable[..., Any]:
        raise RuntimeError(f"vendor.nvidia refuses every instance of this op: {reason}")

    return OpImpl(bind, supports=refuse)


# --------------------------------------------------------------------------- activations


def _gated_reason(kernel: str, params: ActivationParams) -> str | None:
    """sgl_kernel's gated activations: fp16/bf16/fp32, rows a multiple of 16 bytes (their
    wrappers raise otherwise)."""
    if params.dtype not in ACTIVATION_DTYPES:
        return f"sgl_kernel.{kernel} supports float16, bfloat16, float32, not {params.dtype}"
    itemsize = torch.empty((), dtype=params.dtype).element_size()
    if params.width is not None and params.width * itemsize % 16:
        return f"sgl_kernel.{kernel} needs rows of a multiple of 16 bytes (width {params.width})"
    return None


Activation = Callable[[torch.Tensor], torch.Tensor]


def _contiguous_input(kernel: Callable[..., torch.Tensor]) -> Activation:
    """sgl_kernel's gated activations address row ``i`` at ``i * width``: a strided view (a
    slice of a wider buffer) is made contiguous first, a no-op when it already is."""

    def activation(x: torch.Tensor) -> torch.Tensor:
        return kernel(x.contiguous())

    return activation


def _supports_silu_and_mul(params: ActivationParams) -> str | None:
    return _gated_reason("silu_and_mul", params)


def _bind_silu_and_mul(params: ActivationParams) -> Activation:
    return _contiguous_input(_sgl_kernel().silu_and_mul)


def _gelu_kernel_name(approximate: str) -> str:
    return "gelu_tanh_and_mul" if approximate == "tanh" else "gelu_and_mul"


def _supports_gelu_and_mul(params: ActivationParams) -> str | None:
    if params.approximate not in GELU_APPROXIMATIONS:
        return f"approximate={params.approximate!r} is not one of {GELU_APPROXIMATIONS}"
    return _gated_reason(_gelu_kernel_name(params.approximate), params)


def _bind_gelu_and_mul(params: ActivationParams) -> Activation:
    return _contiguous_input(getattr(_sgl_kernel(), _gelu_kernel_name(params.approximate)))


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
    """The kernels take ``[rows, hidden]``: other shapes go through 2-D views (the in-place
    residual form needs views, so its writes land in the caller's tensors) or, for the plain
    form, a reshape (the output is a new tensor anyway)."""
    weight, eps, hidden = params.weight, params.eps, params.hidden_size

    def rms_norm(x: torch.Tensor, residual: torch.Tensor | None):
        if residual is not None:
            if x.dim() == 2:
                fused_add(x, residual, weight, eps)  # in place on both
            else:
                fused_add(x.view(-1, hidden), residual.view(-1, hidden), weight, eps)
            return x, residual
        if x.dim() == 2:
            return norm(x, weight, eps)
        return norm(x.reshape(-1, hidden), weight, eps).view(x.shape)

    return rms_norm


def _bind_rms_norm(params: NormParams) -> Callable[..., Any]:
    sk = _sgl_kernel()
    return _bind_norm(sk.rmsnorm, sk.fused_add_rmsnorm, params)


def _bind_gemma_rms_norm(params: NormParams) -> Callable[..., Any]:
    sk = _sgl_kernel()
    return _bind_norm(sk.gemma_rmsnorm, sk.gemma_fused_add_rmsnorm, params)


def _supports_norm_without_scale(params: NormParams) -> str | None:
    if params.dtype not in NORM_DTYPES:
        return f"sgl_kernel.rmsnorm supports float16 and bfloat16, not {params.dtype}"
    return None


def _bind_norm_without_scale(params: NormParams) -> Callable[..., Any]:
    rmsnorm, eps, hidden = _sgl_kernel().rmsnorm, params.eps, params.hidden_size
    # made once per instance, in the input dtype as the kernel requires; x * 1 is exact
    ones = torch.ones(hidden, dtype=params.dtype, device=params.device)

    def norm_without_scale(x: torch.Tensor, residual: None = None) -> torch.Tensor:
        if x.dim() == 2:
            return rmsnorm(x, ones, eps)
        return rmsnorm(x.reshape(-1, hidden), ones, eps).view(x.shape)

    return norm_without_scale


# --------------------------------------------------------------------------- layer_norm


def _flashinfer_layernorm() -> Callable[..., torch.Tensor]:
    from flashinfer.norm import layernorm

    return layernorm


def _supports_layer_norm(params: LayerNormParams) -> str | None:
    if params.dtype != torch.bfloat16 or params.compute_dtype != torch.float32:
        return (
            f"flashinfer.norm.layernorm takes bfloat16 input with float32 parameters (the only "
            f"case SGLang's LayerNorm.forward_cuda sends to it), not {params.dtype} input with "
            f"{params.compute_dtype} parameters"
        )
    for name in ("weight", "bias"):
        tensor = getattr(params, name)
        if tensor is not None and (tensor.dtype != torch.float32 or tensor.dim() != 1):
            return (
                f"flashinfer.norm.layernorm needs a float32 {name} vector; got "
                f"{tensor.dtype} of shape {tuple(tensor.shape)}"
            )
    try:
        _flashinfer_layernorm()
    except Exception as exc:  # missing, or a broken CUDA extension
        return f"flashinfer.norm.layernorm cannot be imported: {type(exc).__name__}: {exc}"
    return None


def _bind_layer_norm(params: LayerNormParams) -> Callable[[torch.Tensor], torch.Tensor]:
    layernorm, eps, hidden = _flashinfer_layernorm(), params.eps, params.hidden_size
    fp32 = {"dtype": torch.float32, "device": params.device}
    # SGLang passes its always-present weight (ones) and bias (zeros) when they are switched
    # off; the contract passes None then, so the same neutral vectors are made once here.
    gamma = params.weight if params.weight is not None else torch.ones(hidden, **fp32)
    beta = params.bias if params.bias is not None else torch.zeros(hidden, **fp32)

    def layer_norm(x: torch.Tensor) -> torch.Tensor:
        # flashinfer takes a contiguous [rows, hidden] input: free when x already is one
        rows = x.reshape(-1, hidden).contiguous()
        return layernorm(rows, gamma, beta, eps).view(x.shape)

    return layer_norm


# --------------------------------------------------------------------------- rotary


def _supports_rotary(params: RotaryParams | MRotaryParams) -> str | None:
    if params.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        return f"SGLang's CUDA rope kernel supports fp16, bf16, fp32, not {params.dtype}"
    if params.rotary_dim % 2 or params.rotary_dim > params.head_size:
        return f"rotary_dim {params.rotary_dim} (head_size {params.head_size}) is not supported"
    return None


def _rope(params: RotaryParams | MRotaryParams) -> Callable[..., Any]:
    """SGLang's CUDA rope kernel over ``[tokens]`` positions, in place, with an fp32 copy of
    the instance's cache made here, once."""
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


def _bind_rotary(params: RotaryParams) -> Callable[..., Any]:
    return _rope(params)


def _bind_mrotary(params: MRotaryParams) -> Callable[..., Any]:
    rope = _rope(params)  # [tokens] positions: plain rope
    if params.mrope_section is None:  # an instance without sections only ever gets [tokens]
        return rope
    mrope = fused_ops.triton_mrope_kernel()
    # SGLang's forward_triton casts the cache to the query dtype (in which the kernel then
    # computes); once here, so SGLang 0.5.15's kernel finds it cast and never copies it per call
    cache = params.cos_sin_cache.to(device=params.device, dtype=params.dtype).contiguous()
    section, head_size, rotary_dim = list(params.mrope_section), params.head_size, params.rotary_dim
    interleaved, neox = params.interleaved, params.is_neox_style

    def mrotary(positions: torch.Tensor, query: torch.Tensor, key: torch.Tensor):
        if positions.dim() == 1:
            return rope(positions, query, key)
        tokens = positions.shape[1]
        if tokens:  # an empty grid is no launch (SGLang 0.5.23 returns early too)
            # 2-D [tokens, heads * head_size] views (row-strided slices of a fused qkv are
            # fine: the kernel takes the row stride); glm's layout is refused by the bridge
            mrope(query.view(tokens, -1), key.view(tokens, -1), cache, positions.contiguous(),
                  section, head_size, rotary_dim, interleaved, False, neox, None)  # fmt: skip
        return query, key

    return mrotary


# --------------------------------------------------------------------------- the backend

IMPLEMENTATIONS: Mapping[str, OpImpl] = {
    SILU_AND_MUL: OpImpl(_bind_silu_and_mul, supports=_supports_silu_and_mul),
    GELU_AND_MUL: OpImpl(_bind_gelu_and_mul, supports=_supports_gelu_and_mul),
    NEW_GELU: _no_vendor_kernel(NEW_GELU_REFUSAL),
    QUICK_GELU: _no_vendor_kernel(QUICK_GELU_REFUSAL),
    RMS_NORM: OpImpl(_bind_rms_norm, mutates_inputs=True, supports=_supports_norm),
    GEMMA_RMS_NORM: OpImpl(_bind_gemma_rms_norm, mutates_inputs=True, supports=_supports_norm),
    GEMMA3_RMS_NORM: OpImpl(_bind_gemma_rms_norm, mutates_inputs=True, supports=_supports_norm),
    RMS_NORM_WITHOUT_SCALE: OpImpl(_bind_norm_without_scale, supports=_supports_norm_without_scale),
    LAYER_NORM: OpImpl(_bind_layer_norm, supports=_supports_layer_norm),
    ROTARY_EMBEDDING: OpImpl(_bind_rotary, mutates_inputs=True, supports=_supports_rotary),
    MROTARY_EMBEDDING: OpImpl(_bind_mrotary, mutates_inputs=True, supports=_supports_rotary),
    DEEPSEEK_SCALING_ROTARY_EMBEDDING: OpImpl(
        _bind_rotary, mutates_inputs=True, supports=_supports_rotary
    ),
}


class NvidiaBackend(Backend):
    """sgl_kernel (and SGLang's CUDA rope kernels, flashinfer's layer norm); available with
    sgl_kernel and a CUDA GPU."""

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
