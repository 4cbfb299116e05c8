"""FlagGems-backed implementations of the op contracts in ``sglang_fl.ops.params``.

Imported only when FlagGems is available. Written against the FlagGems 5.0.x public API
(``flag_gems.silu_and_mul(a, b)``, ``flag_gems.rms_norm``, ``flag_gems.fused_add_rms_norm``,
``flag_gems.apply_rotary_pos_emb``).
"""

from __future__ import annotations

from sglang_fl.dispatch.backend import OpImpl
from sglang_fl.ops.params import ActivationParams, NormParams, RotaryParams


def _bind_silu_and_mul(params: ActivationParams):
    import flag_gems

    def silu_and_mul(x):
        d = x.shape[-1] // 2
        return flag_gems.silu_and_mul(x[..., :d], x[..., d:])

    return silu_and_mul


def _bind_rms_norm(params: NormParams):
    import flag_gems

    weight, eps, shape = params.weight, params.eps, (params.hidden_size,)

    def rms_norm(x, residual):
        if residual is None:
            return flag_gems.rms_norm(x, shape, weight, eps)
        flag_gems.fused_add_rms_norm(x, residual, shape, weight, eps)  # in place on both
        return x, residual

    return rms_norm


def _bind_rotary(params: RotaryParams):
    import flag_gems

    cos, sin = (t.contiguous() for t in params.cos_sin_cache.chunk(2, dim=-1))
    head_size, rotary_dim = params.head_size, params.rotary_dim
    interleaved = not params.is_neox_style

    def rotary(positions, query, key):
        tokens = positions.shape[0]
        q = query.view(tokens, -1, head_size)[..., :rotary_dim]
        k = key.view(tokens, -1, head_size)[..., :rotary_dim]
        q_out, k_out = flag_gems.apply_rotary_pos_emb(
            q, k, cos, sin, position_ids=positions, rotary_interleaved=interleaved
        )
        q[...] = q_out
        k[...] = k_out
        return query, key

    return rotary


def _rotary_supported(params: RotaryParams) -> str | None:
    if params.rotary_dim % 2:
        return f"odd rotary_dim {params.rotary_dim}"
    return None


IMPLEMENTATIONS = {
    "silu_and_mul": OpImpl(_bind_silu_and_mul),
    "rms_norm": OpImpl(_bind_rms_norm, mutates_inputs=True),
    "rotary_embedding": OpImpl(_bind_rotary, mutates_inputs=True, supports=_rotary_supported),
}
