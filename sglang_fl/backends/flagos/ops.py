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
from sglang_fl.ops.catalog import GEMMA_RMS_NORM, RMS_NORM, ROTARY_EMBEDDING, SILU_AND_MUL
from sglang_fl.ops.params import ActivationParams, NormParams, RotaryParams


def _kernels() -> ModuleType:
    from sglang_fl.backends.flagos import kernels

    return kernels


def _bind_silu_and_mul(params: ActivationParams):
    return _kernels().silu_and_mul  # width and row count are known per call; configs are cached


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


def _rotary_supported(params: RotaryParams) -> str | None:
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
    RMS_NORM: OpImpl(_bind_rms_norm, mutates_inputs=True),
    GEMMA_RMS_NORM: OpImpl(_bind_gemma_rms_norm, mutates_inputs=True),
    ROTARY_EMBEDDING: OpImpl(_bind_rotary, mutates_inputs=True, supports=_rotary_supported),
}
