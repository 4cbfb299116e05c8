"""The ``reference`` backend: plain PyTorch, always available, priority 50."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

from sglang_fl.backends.reference import math
from sglang_fl.dispatch.backend import Availability, Backend, ImplKind, OpImpl
from sglang_fl.ops.catalog import GEMMA_RMS_NORM, RMS_NORM, ROTARY_EMBEDDING, SILU_AND_MUL
from sglang_fl.ops.params import ActivationParams, NormParams, RotaryParams


def _bind_silu_and_mul(params: ActivationParams):
    return math.silu_and_mul


def _bind_norm(fn, params: NormParams):
    weight, eps = params.weight, params.eps

    def norm(x, residual):
        return fn(x, residual, weight, eps)

    return norm


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


class ReferenceBackend(Backend):
    kind = ImplKind.REFERENCE

    def availability(self) -> Availability:
        return Availability.yes()

    def implementations(self) -> Mapping[str, OpImpl]:
        return {
            SILU_AND_MUL: OpImpl(_bind_silu_and_mul),
            RMS_NORM: OpImpl(partial(_bind_norm, math.rms_norm)),
            GEMMA_RMS_NORM: OpImpl(partial(_bind_norm, math.gemma_rms_norm)),
            ROTARY_EMBEDDING: OpImpl(_bind_rotary),
        }
