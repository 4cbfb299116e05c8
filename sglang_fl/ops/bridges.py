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
from sglang_fl.ops.catalog import GEMMA_RMS_NORM, RMS_NORM, ROTARY_EMBEDDING, SILU_AND_MUL
from sglang_fl.ops.params import ActivationParams, NormParams, RotaryParams

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


BRIDGES: dict[str, Bridge] = {
    bridge.op: bridge
    for bridge in (
        SiluAndMulBridge(),
        RMSNormBridge(),
        GemmaRMSNormBridge(),
        RotaryEmbeddingBridge(),
    )
}
