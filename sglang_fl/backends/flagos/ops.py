"""The flagos implementations of the op contracts in ``sglang_fl.ops.params``.

Each ``bind`` does the one-off work for an op instance (the launch heuristics for its hidden
size or rotary dim; nothing is copied or cast: weights and the cos/sin cache are used as they
are, so a later weight reload is seen) and returns a closure over our Triton launchers
(``kernels.py``). Triton is imported by the first ``bind``, not here: the registry lists every
backend's implementations at registration, on hosts without Triton too.
"""

from __future__ import annotations

from types import ModuleType

from sglang_fl.dispatch.backend import OpImpl
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
    ActivationParams,
    LayerNormParams,
    MRotaryParams,
    NormParams,
    RotaryParams,
)


def _kernels() -> ModuleType:
    from sglang_fl.backends.flagos import kernels

    return kernels


def _bind_silu_and_mul(params: ActivationParams):
    return _kernels().silu_and_mul  # width and row count are known per call; configs are cached


def _bind_gelu_and_mul(params: ActivationParams):
    gelu_and_mul, approximate = _kernels().gelu_and_mul, params.approximate

    def gelu_and_mul_call(x):
        return gelu_and_mul(x, approximate)

    return gelu_and_mul_call


def _bind_new_gelu(params: ActivationParams):
    return _kernels().new_gelu


def _bind_quick_gelu(params: ActivationParams):
    return _kernels().quick_gelu


def _bind_norm(gemma: bool, params: NormParams):
    kernels = _kernels()
    weight, eps = params.weight, params.eps
    config = kernels.norm_config(params.hidden_size, params.dtype.itemsize)
    norm, add_norm = kernels.norm, kernels.add_norm

    def norm_call(x, residual):
        if residual is None:
            return norm(x, weight, eps, gemma, config=config)
        add_norm(x, residual, weight, eps, gemma, config=config)
        return x, residual

    return norm_call


def _bind_rms_norm(params: NormParams):
    return _bind_norm(False, params)


def _bind_gemma_rms_norm(params: NormParams):
    return _bind_norm(True, params)


def _bind_norm_without_scale(params: NormParams):
    kernels = _kernels()
    eps, norm = params.eps, kernels.norm
    config = kernels.norm_config(params.hidden_size, params.dtype.itemsize)

    def norm_call(x, residual):
        return norm(x, None, eps, config=config)

    return norm_call


def _bind_layer_norm(params: LayerNormParams):
    kernels = _kernels()
    weight, bias, eps, layer_norm = params.weight, params.bias, params.eps, kernels.layer_norm
    config = kernels.norm_config(params.hidden_size, params.dtype.itemsize)

    def layer_norm_call(x):
        return layer_norm(x, weight, bias, eps, config=config)

    return layer_norm_call


def _layer_norm_supported(params: LayerNormParams) -> str | None:
    """The kernel computes in fp32; SGLang computes in the parameters' dtype, which is fp32
    unless a model asks otherwise (then fp32 is closer to exact, not equal to SGLang)."""
    for name in ("weight", "bias"):
        tensor = getattr(params, name)
        if tensor is not None and (tensor.dim() != 1 or tensor.stride(0) != 1):
            return f"{name} of shape {tuple(tensor.shape)} is not a contiguous vector"
    return None


def _bind_rotary(params: RotaryParams):
    cache, head_size, is_neox = params.cos_sin_cache, params.head_size, params.is_neox_style
    kernels = _kernels()
    half = params.rotary_dim // 2
    config = kernels.rotary_config(params.rotary_dim, params.dtype.itemsize)
    rotary = kernels.rotary

    def rotary_embedding(positions, query, key):
        rotary(positions, query, key, cache, head_size, half, is_neox, config)
        return query, key

    return rotary_embedding


def _bind_mrotary(params: MRotaryParams):
    cache, head_size, is_neox = params.cos_sin_cache, params.head_size, params.is_neox_style
    kernels = _kernels()
    half = params.rotary_dim // 2
    config = kernels.rotary_config(params.rotary_dim, params.dtype.itemsize)
    rotary = kernels.rotary
    mrope = None if params.mrope_section is None else (*params.mrope_section, params.interleaved)

    def mrotary_embedding(positions, query, key):
        sections = mrope if positions.dim() == 2 else None
        rotary(positions, query, key, cache, head_size, half, is_neox, config, sections)
        return query, key

    return mrotary_embedding


def _rotary_supported(params: RotaryParams | MRotaryParams) -> str | None:
    if params.rotary_dim % 2:
        return f"odd rotary_dim {params.rotary_dim}"
    cache = params.cos_sin_cache
    if cache.dim() != 2 or cache.shape[-1] != params.rotary_dim:
        return (
            f"cos_sin_cache of shape {tuple(cache.shape)} is not [max_positions, rotary_dim="
            f"{params.rotary_dim}]"
        )
    return None


IMPLEMENTATIONS = {
    SILU_AND_MUL: OpImpl(_bind_silu_and_mul),
    GELU_AND_MUL: OpImpl(_bind_gelu_and_mul),
    NEW_GELU: OpImpl(_bind_new_gelu),
    QUICK_GELU: OpImpl(_bind_quick_gelu),
    RMS_NORM: OpImpl(_bind_rms_norm, mutates_inputs=True),
    GEMMA_RMS_NORM: OpImpl(_bind_gemma_rms_norm, mutates_inputs=True),
    GEMMA3_RMS_NORM: OpImpl(_bind_gemma_rms_norm, mutates_inputs=True),
    RMS_NORM_WITHOUT_SCALE: OpImpl(_bind_norm_without_scale),
    LAYER_NORM: OpImpl(_bind_layer_norm, supports=_layer_norm_supported),
    ROTARY_EMBEDDING: OpImpl(_bind_rotary, mutates_inputs=True, supports=_rotary_supported),
    MROTARY_EMBEDDING: OpImpl(_bind_mrotary, mutates_inputs=True, supports=_rotary_supported),
    DEEPSEEK_SCALING_ROTARY_EMBEDDING: OpImpl(
        _bind_rotary, mutates_inputs=True, supports=_rotary_supported
    ),
}
