"""Bridges between SGLang's fused-op classes and the backend-neutral kernel contracts.

A bridge knows one op family's SGLang calling convention. At an instance's first call it
extracts the static parameters (or says why this instance must stay on SGLang's own path),
and it wraps a bound kernel into a forward with SGLang's exact signature and semantics.
The wrapped forward is what the model calls from then on: it does no lookups.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from sglang_fl.dispatch.backend import Refusal
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

Forward = Callable[..., Any]


def _arg(args: Sequence[Any], kwargs: dict[str, Any], index: int, name: str) -> Any:
    return args[index] if len(args) > index else kwargs.get(name)


class Bridge:
    """Base: one op family. Subclasses fill in the three hooks."""

    op: str

    def params(
        self, module: nn.Module, args: Sequence[Any], kwargs: dict[str, Any]
    ) -> Any | Refusal:
        """Static parameters of ``module`` for ``bind``, or why it stays on SGLang's own path."""
        raise NotImplementedError

    def forward(self, module: nn.Module, kernel: Callable[..., Any], own: Forward) -> Forward:
        """SGLang-signature forward around ``kernel``; ``own`` is SGLang's own path."""
        raise NotImplementedError

    def mutable_tensors(self, args: Sequence[Any], kwargs: dict[str, Any]) -> list[torch.Tensor]:
        """Input tensors an in-place kernel may write (snapshotted for a safe fallback)."""
        return []


class SiluAndMulBridge(Bridge):
    op = SILU_AND_MUL

    def params(self, module, args, kwargs):
        x = _arg(args, kwargs, 0, "x")
        return ActivationParams(dtype=x.dtype, device=x.device, width=int(x.shape[-1]))

    def forward(self, module, kernel, own):
        return kernel  # same signature: forward(x) -> out

    def mutable_tensors(self, args, kwargs):
        return [_arg(args, kwargs, 0, "x")]


class GeluAndMulBridge(SiluAndMulBridge):
    """``forward(x)``, with the instance's ``approximate`` ("none" or "tanh")."""

    op = GELU_AND_MUL

    def params(self, module, args, kwargs):
        approximate = getattr(module, "approximate", "tanh")
        if approximate not in GELU_APPROXIMATIONS:  # SGLang itself raises for these
            return Refusal(f"approximate={approximate!r} is not one of {GELU_APPROXIMATIONS}")
        x = _arg(args, kwargs, 0, "x")
        return ActivationParams(dtype=x.dtype, device=x.device, width=int(x.shape[-1]),
                                approximate=approximate)  # fmt: skip


class NewGeluBridge(SiluAndMulBridge):
    op = NEW_GELU


class QuickGeluBridge(SiluAndMulBridge):
    op = QUICK_GELU


class _NormBridge(Bridge):
    """RMSNorm and GemmaRMSNorm: ``forward(x, residual=None, post_residual_addition=None)``,
    plus RMSNorm's ``quant_linear=None`` on SGLang 0.5.18+.

    Semantics kept from SGLang's kernel paths (CUDA, NPU, CPU-AMX, MUSA, HIP):
    ``post_residual_addition`` is first added to the residual in the input dtype, then fused
    into the add + norm; with a residual the result is ``(normed, x + residual)``, otherwise
    ``normed``. (SGLang's ``forward_native`` instead sums all three in fp32; the results differ
    by at most one rounding of ``residual + post``, see tests/backends.)

    A call with ``quant_linear`` (the projection whose FP8 input quantization SGLang may fuse
    into the norm, which then returns the quantized activation) is handed to SGLang's own path
    unchanged: the kernel contract has no quantized output.
    """

    def params(self, module, args, kwargs):
        refusal = self.unsupported(module)
        if refusal is not None:
            return refusal
        x = _arg(args, kwargs, 0, "x")
        return NormParams(
            weight=module.weight,
            eps=float(module.variance_epsilon),
            hidden_size=int(module.weight.shape[-1]),
            dtype=x.dtype,
            device=x.device,
        )

    def unsupported(self, module: nn.Module) -> Refusal | None:
        """Why this instance's configuration is outside the norm contract, or None."""
        return None

    def forward(self, module, kernel, own):
        def forward(x, residual=None, post_residual_addition=None, quant_linear=None):
            if quant_linear is not None:
                return own(x, residual, post_residual_addition, quant_linear=quant_linear)
            if residual is not None and post_residual_addition is not None:
                residual = residual + post_residual_addition
            return kernel(x, residual)

        return forward

    def mutable_tensors(self, args, kwargs):
        found = [_arg(args, kwargs, 0, "x"), _arg(args, kwargs, 1, "residual")]
        return [t for t in found if t is not None]


class RMSNormBridge(_NormBridge):
    op = RMS_NORM

    def unsupported(self, module):
        # Variants whose numerics differ from the plain contract stay on SGLang's path.
        if getattr(module, "variance_size_override", None) is not None:
            return Refusal("var_hidden_size differs from hidden_size")
        if getattr(module, "cast_x_before_out_mul", False):
            return Refusal("cast_x_before_out_mul=True")
        if getattr(module, "fp32_residual", False):
            return Refusal("fp32_residual=True")
        if getattr(module, "override_orig_dtype", None) is not None:
            return Refusal("override_orig_dtype is set")
        return None


class GemmaRMSNormBridge(_NormBridge):
    op = GEMMA_RMS_NORM


class Gemma3RMSNormBridge(Bridge):
    """``forward(x)`` (SGLang 0.5.15) or ``forward(x, residual=None)`` (0.5.21+); the raw
    ``weight`` (scale ``1 + weight``) and ``eps``. With a residual the result is
    ``(normed, x + residual)``, the sum in the input dtype, as SGLang's paths compute it."""

    op = GEMMA3_RMS_NORM

    def params(self, module, args, kwargs):
        x = _arg(args, kwargs, 0, "x")
        return NormParams(weight=module.weight, eps=float(module.eps),
                          hidden_size=int(module.weight.shape[-1]), dtype=x.dtype,
                          device=x.device)  # fmt: skip

    def forward(self, module, kernel, own):
        def forward(x, residual=None):
            return kernel(x, residual)

        return forward

    def mutable_tensors(self, args, kwargs):
        found = [_arg(args, kwargs, 0, "x"), _arg(args, kwargs, 1, "residual")]
        return [t for t in found if t is not None]


class RMSNormWithoutScaleBridge(Bridge):
    """``forward(x)``: normalised, no scale."""

    op = RMS_NORM_WITHOUT_SCALE

    def params(self, module, args, kwargs):
        x = _arg(args, kwargs, 0, "x")
        return NormParams(weight=None, eps=float(module.eps), hidden_size=int(x.shape[-1]),
                          dtype=x.dtype, device=x.device)  # fmt: skip

    def forward(self, module, kernel, own):
        def forward(x):
            return kernel(x, None)

        return forward


class LayerNormBridge(Bridge):
    """``forward(x)``; SGLang's LayerNorm always holds a weight and a bias and uses them only
    when ``elementwise_affine`` / ``use_bias``, computing in its parameters' dtype."""

    op = LAYER_NORM

    def params(self, module, args, kwargs):
        x = _arg(args, kwargs, 0, "x")
        return LayerNormParams(
            weight=module.weight if module.elementwise_affine else None,
            bias=module.bias if module.use_bias else None,
            eps=float(module.variance_epsilon),
            hidden_size=int(module.hidden_size),
            compute_dtype=module.dtype,
            dtype=x.dtype,
            device=x.device,
        )

    def forward(self, module, kernel, own):
        return kernel  # same signature: forward(x) -> out


class RotaryEmbeddingBridge(Bridge):
    """``forward(positions, query, key, offsets=None, fused_set_kv_buffer_arg=None)``.

    A call with ``fused_set_kv_buffer_arg`` (rope fused with the KV-cache write, a CUDA
    attention-backend feature) is handed to SGLang's own path unchanged.
    """

    op = ROTARY_EMBEDDING

    def params(self, module, args, kwargs):
        if hasattr(module, "sin_cos_cache"):
            return Refusal("instance carries a precomputed sin_cos_cache")
        query = _arg(args, kwargs, 1, "query")
        return RotaryParams(
            cos_sin_cache=module.cos_sin_cache,
            head_size=int(module.head_size),
            rotary_dim=int(module.rotary_dim),
            is_neox_style=bool(module.is_neox_style),
            dtype=query.dtype,
            device=query.device,
        )

    def forward(self, module, kernel, own):
        def forward(positions, query, key, offsets=None, fused_set_kv_buffer_arg=None):
            if fused_set_kv_buffer_arg is not None:
                return own(positions, query, key, offsets, fused_set_kv_buffer_arg)
            if offsets is not None:
                positions = positions + offsets
            return kernel(positions, query, key)

        return forward

    def mutable_tensors(self, args, kwargs):
        return [_arg(args, kwargs, 1, "query"), _arg(args, kwargs, 2, "key")]


class MRotaryEmbeddingBridge(Bridge):
    """``forward(positions, query, key, fused_set_kv_buffer_arg=None)``: ``positions`` ``[3, T]``
    or ``[T]``. A call with ``fused_set_kv_buffer_arg`` goes to SGLang's own path, as for
    RotaryEmbedding. GLM's interleaving (``mrope_interleaved_glm``) is honoured only by
    SGLang's CUDA kernel, not by its own ``forward_native``: such instances stay on SGLang's
    path."""

    op = MROTARY_EMBEDDING

    def params(self, module, args, kwargs):
        if getattr(module, "mrope_interleaved_glm", False):
            return Refusal("mrope_interleaved_glm=True (GLM's layout, SGLang's CUDA kernel only)")
        query = _arg(args, kwargs, 1, "query")
        section = getattr(module, "mrope_section", None)
        return MRotaryParams(
            cos_sin_cache=module.cos_sin_cache,
            head_size=int(module.head_size),
            rotary_dim=int(module.rotary_dim),
            is_neox_style=bool(module.is_neox_style),
            mrope_section=tuple(int(s) for s in section) if section else None,
            interleaved=bool(getattr(module, "mrope_interleaved", False)),
            dtype=query.dtype,
            device=query.device,
        )

    def forward(self, module, kernel, own):
        def forward(positions, query, key, fused_set_kv_buffer_arg=None):
            if fused_set_kv_buffer_arg is not None:
                return own(positions, query, key, fused_set_kv_buffer_arg)
            return kernel(positions, query, key)

        return forward

    def mutable_tensors(self, args, kwargs):
        return [_arg(args, kwargs, 1, "query"), _arg(args, kwargs, 2, "key")]


class DeepseekScalingRotaryEmbeddingBridge(RotaryEmbeddingBridge):
    """``forward(positions, query, key, offsets=None)``: its ``forward_native`` takes no
    ``fused_set_kv_buffer_arg``; its CUDA path (RotaryEmbedding's) does, and then goes to
    SGLang's own path as for RotaryEmbedding."""

    op = DEEPSEEK_SCALING_ROTARY_EMBEDDING


BRIDGES: dict[str, Bridge] = {
    bridge.op: bridge
    for bridge in (
        SiluAndMulBridge(),
        GeluAndMulBridge(),
        NewGeluBridge(),
        QuickGeluBridge(),
        RMSNormBridge(),
        GemmaRMSNormBridge(),
        Gemma3RMSNormBridge(),
        RMSNormWithoutScaleBridge(),
        LayerNormBridge(),
        RotaryEmbeddingBridge(),
        MRotaryEmbeddingBridge(),
        DeepseekScalingRotaryEmbeddingBridge(),
    )
}
