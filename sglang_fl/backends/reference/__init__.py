"""The ``reference`` backend: plain PyTorch, always available, priority 50."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

from sglang_fl.backends.reference import math
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
    ActivationParams,
    LayerNormParams,
    MRotaryParams,
    NormParams,
    RotaryParams,
)


def _bind_silu_and_mul(params: ActivationParams):
    return math.silu_and_mul


def _bind_gelu_and_mul(params: ActivationParams):
    return partial(math.gelu_and_mul, approximate=params.approximate)


def _bind_elementwise(fn, params: ActivationParams):
    return fn


def _bind_norm(fn, params: NormParams):
    weight, eps = params.weight, params.eps

    def norm(x, residual):
        return fn(x, residual, weight, eps)

    return norm


def _bind_norm_without_scale(params: NormParams):
    eps = params.eps

    def norm(x, residual):
        return math.rms_norm_without_scale(x, eps)

    return norm


def _bind_layer_norm(params: LayerNormParams):
    return partial(
        math.layer_norm, weight=params.weight, bias=params.bias, eps=params.eps,
        compute_dtype=params.compute_dtype,
    )  # fmt: skip


def _bind_rotary(params: RotaryParams):
    cos_table, sin_table = math.split_cos_sin(params.cos_sin_cache)
    return partial(
        _rotary_call, cos_table, sin_table, params.head_size, params.rotary_dim,
        params.is_neox_style,
    )  # fmt: skip


def _rotary_call(cos_table, sin_table, head_size, rotary_dim, is_neox, positions, query, key):
    return math.rotary_embedding(
        positions, query, key, cos_table, sin_table, head_size, rotary_dim, is_neox
    )


def _bind_mrotary(params: MRotaryParams):
    cos_table, sin_table = math.split_cos_sin(params.cos_sin_cache)
    axes = None
    if params.mrope_section is not None:
        axes = math.mrope_axes(params.rotary_dim // 2, params.mrope_section, params.interleaved,
                               cos_table.device)  # fmt: skip
    head_size, rotary_dim, is_neox = params.head_size, params.rotary_dim, params.is_neox_style

    def mrotary(positions, query, key):
        return math.mrotary_embedding(positions, query, key, cos_table, sin_table, axes,
                                      head_size, rotary_dim, is_neox)  # fmt: skip

    return mrotary


def _bind_deepseek_rotary(params: RotaryParams):
    return partial(
        _deepseek_call, params.cos_sin_cache, params.head_size, params.rotary_dim,
        params.is_neox_style,
    )  # fmt: skip


def _deepseek_call(cache, head_size, rotary_dim, is_neox, positions, query, key):
    return math.deepseek_rotary_embedding(positions, query, key, cache, head_size, rotary_dim,
                                          is_neox)  # fmt: skip


class ReferenceBackend(Backend):
    kind = ImplKind.REFERENCE

    def availability(self) -> Availability:
        return Availability.yes()

    def implementations(self) -> Mapping[str, OpImpl]:
        return {
            SILU_AND_MUL: OpImpl(_bind_silu_and_mul),
            GELU_AND_MUL: OpImpl(_bind_gelu_and_mul),
            NEW_GELU: OpImpl(partial(_bind_elementwise, math.new_gelu)),
            QUICK_GELU: OpImpl(partial(_bind_elementwise, math.quick_gelu)),
            RMS_NORM: OpImpl(partial(_bind_norm, math.rms_norm)),
            GEMMA_RMS_NORM: OpImpl(partial(_bind_norm, math.gemma_rms_norm)),
            GEMMA3_RMS_NORM: OpImpl(partial(_bind_norm, math.gemma_rms_norm)),
            RMS_NORM_WITHOUT_SCALE: OpImpl(_bind_norm_without_scale),
            LAYER_NORM: OpImpl(_bind_layer_norm),
            ROTARY_EMBEDDING: OpImpl(_bind_rotary),
            MROTARY_EMBEDDING: OpImpl(_bind_mrotary),
            DEEPSEEK_SCALING_ROTARY_EMBEDDING: OpImpl(_bind_deepseek_rotary),
        }
