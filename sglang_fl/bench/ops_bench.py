"""``sglang-fl bench ops``: each fused op, per backend, at serving sizes, against a baseline.

Every implementation is bound exactly as the dispatcher binds it (``OpImpl.bind(params)``)
and timed two ways (``sglang_fl.bench.timing``): ``triton.testing.do_bench`` (median of
event-timed runs, L2 flushed between runs; at small sizes a launch's host cost can show) and
CUDA-graph replay (device time only, what decode pays). FlagGems' own kernels are timed too
(column ``flaggems``): they show where our own Triton kernels were needed. Bandwidth counts
each byte read and written once, against the device's copy bandwidth measured in the same run
(1 GiB) and against a copy moving the same bytes as the op (column ``of same-size copy``).

The baseline of a case (every ratio is against it, and each row names it) is the vendor
kernel where a vendor backend takes the case; where none does (SGLang's CUDA path has no
kernel for NewGELU or QuickGELU, or no vendor backend is available here) it is SGLang's own
``forward_native`` of the real layer class, timed as ``sglang.forward_native``.

Shapes follow the serving models: hidden 4096; SiluAndMul intermediate 11008 (the fused
``[T, 2I]`` layout); rotary with 32 query / 8 KV heads of 128 as strided views of a fused QKV
tensor, neox style, fp32 cache (as SGLang keeps it on CUDA); GeluAndMul (tanh) and
Gemma3RMSNorm at Gemma-like sizes (hidden 2304 / 3072 / 3584 with the intermediate sizes of
Gemma-2 2B, Gemma 7B and Gemma-2 9B); NewGELU at Phi-2's MLP width (10240); QuickGELU at
SigLIP's MLP width (4304) and LayerNorm at its hidden size (1152; bf16 input, fp32 parameters);
mrope with Qwen2.5-VL-7B's 28 query / 4 KV heads of 128 and sections [16, 24, 24] on ``[3, T]``
positions; DeepSeek's rope on MLA's 64-dim ``q_pe`` of 16 heads and its single ``k_pe`` head,
sliced out of the wider q and latent tensors, interleaved style, fp32 cache.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from sglang_fl.bench.timing import copy_bandwidth_gbps, device_us, graph_us, same_size_copy_us
from sglang_fl.flaggems import flaggems_import_error
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

TOKENS = (1, 64, 1024, 8192, 32768)
HIDDEN = 4096
INTERMEDIATE = 11008
Q_HEADS, KV_HEADS, HEAD_DIM = 32, 8, 128
MAX_POSITIONS = 32768
ROPE_BASE = 1e6
# (hidden, intermediate) of Gemma-2 2B, Gemma 7B and Gemma-2 9B (their configs)
GEMMA_SHAPES = ((2304, 9216), (3072, 24576), (3584, 14336))
NEW_GELU_WIDTH = 10240  # Phi-2's MLP (hidden_act gelu_new)
SIGLIP_HIDDEN, SIGLIP_MLP = 1152, 4304  # SigLIP so400m: SGLang's SiglipMLP uses QuickGELU
MROPE_Q_HEADS, MROPE_KV_HEADS, MROPE_SECTION = 28, 4, (16, 24, 24)  # Qwen2.5-VL-7B
# DeepSeek MLA: 16 query heads (DeepSeek-V2-Lite; V3's 128 at TP 8), 64-dim rope part after the
# 128-dim nope part of each q head, one k_pe head after the 512-dim compressed latent
MLA_HEADS, MLA_ROPE_DIM, MLA_NOPE_DIM, MLA_KV_LORA_RANK = 16, 64, 128, 512
NATIVE = "sglang.forward_native"  # the impl id of SGLang's own path in the results


@dataclass(frozen=True)
class OpTiming:
    op: str
    impl: str  # impl id, "flaggems", or NATIVE
    tokens: int
    dtype: str
    latency_us: float  # do_bench median
    gbps: float
    copy_fraction: float  # gbps / device copy bandwidth
    baseline: str | None  # what the ratios are against: a vendor impl id, or NATIVE
    vs_baseline: float | None  # latency / the baseline's latency (None: no baseline timed)
    graph_us: float | None = None  # CUDA-graph replay: device time without host cost
    graph_vs_baseline: float | None = None
    # a copy moving the same bytes (``timing.same_size_copy_us``) / latency: 1.0 = copy speed
    of_same_size_copy: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


Call = Callable[[Callable, tuple], Callable[[], Any]]


@dataclass(frozen=True)
class Case:
    """One op at one size: how to build inputs, how many bytes it moves, how to call an impl."""

    op: str  # the name shown (a contract op, or a variant: "fused_add_rms_norm", "... I=9216")
    tokens: int
    inputs: Callable[[], tuple]
    bytes_moved: int
    params: Any
    contract_op: str  # the dispatch op name implementations are registered under
    call: Call


def _rand(shape, dtype, device, gen):
    return torch.randn(shape, generator=gen, device=device, dtype=torch.float32).to(dtype)


def cos_sin_cache(
    device: torch.device, rotary_dim: int = HEAD_DIM, scale: float = 1.0
) -> torch.Tensor:
    """SGLang's layout, ``[MAX_POSITIONS, rotary_dim]`` cos half then sin half, fp32;
    ``scale``: DeepSeek's yarn mscale, which SGLang folds into the cache."""
    inv = 1.0 / (ROPE_BASE ** (torch.arange(0, rotary_dim, 2, dtype=torch.float32) / rotary_dim))
    freqs = torch.outer(torch.arange(MAX_POSITIONS, dtype=torch.float32), inv)
    return (torch.cat((freqs.cos(), freqs.sin()), dim=-1) * scale).to(device)


def _call_all(fn, inputs):
    return lambda: fn(*inputs)


def _call_plain_norm(fn, inputs):
    return lambda: fn(inputs[0], None)


def _call_add_norm(fn, inputs):
    return lambda: fn(inputs[0], inputs[1])


def cases(tokens: int, dtype: torch.dtype, device: torch.device) -> list[Case]:
    """Every case at ``tokens`` tokens: the original five, then the Gemma-like, vision and
    multimodal/DeepSeek rope ones."""
    gen = torch.Generator(device=device).manual_seed(tokens)
    args = (tokens, dtype, device, gen)
    return [*_base_cases(*args), *_gemma_cases(*args), *_vision_cases(*args),
            *_rope_cases(*args)]  # fmt: skip


def _size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _base_cases(tokens, dtype, device, gen) -> list[Case]:
    size = _size(dtype)
    weight = _rand((HIDDEN,), dtype, device, gen) * 0.1 + 1
    norm = NormParams(weight, 1e-6, HIDDEN, dtype, device)
    row = tokens * HIDDEN * size
    qkv_width = (Q_HEADS + 2 * KV_HEADS) * HEAD_DIM
    rotary = RotaryParams(cos_sin_cache(device), HEAD_DIM, HEAD_DIM, True, dtype, device)

    def rope_inputs():
        qkv = _rand((tokens, qkv_width), dtype, device, gen)
        q = qkv[:, : Q_HEADS * HEAD_DIM]
        k = qkv[:, Q_HEADS * HEAD_DIM : (Q_HEADS + KV_HEADS) * HEAD_DIM]
        positions = torch.randint(0, MAX_POSITIONS, (tokens,), device=device, generator=gen)
        return positions, q, k

    qk_bytes = tokens * (Q_HEADS + KV_HEADS) * HEAD_DIM * size
    return [
        Case(SILU_AND_MUL, tokens,
             lambda: (_rand((tokens, 2 * INTERMEDIATE), dtype, device, gen),),
             3 * tokens * INTERMEDIATE * size,
             ActivationParams(dtype, device, 2 * INTERMEDIATE), SILU_AND_MUL, _call_all),
        Case(RMS_NORM, tokens, lambda: (_rand((tokens, HIDDEN), dtype, device, gen),),
             2 * row, norm, RMS_NORM, _call_plain_norm),
        Case("fused_add_rms_norm", tokens,
             lambda: (_rand((tokens, HIDDEN), dtype, device, gen),
                      _rand((tokens, HIDDEN), dtype, device, gen)),
             4 * row, norm, RMS_NORM, _call_add_norm),
        Case(GEMMA_RMS_NORM, tokens, lambda: (_rand((tokens, HIDDEN), dtype, device, gen),),
             2 * row, norm, GEMMA_RMS_NORM, _call_plain_norm),
        # q and k read and written once; positions and the gathered cos/sin rows read once
        Case(ROTARY_EMBEDDING, tokens, rope_inputs,
             2 * qk_bytes + tokens * (8 + HEAD_DIM * 4), rotary, ROTARY_EMBEDDING, _call_all),
    ]  # fmt: skip


def _inputs(shape, dtype, device, gen) -> Callable[[], tuple]:
    return lambda: (_rand(shape, dtype, device, gen),)


def _gemma_cases(tokens, dtype, device, gen) -> list[Case]:
    """GeluAndMul (tanh, as Gemma 2/3 use it) at each intermediate size, Gemma3RMSNorm at each
    hidden size, and its residual form (SGLang 0.5.21+'s decoder layers) at the largest."""
    size, out = _size(dtype), []
    for _, inter in GEMMA_SHAPES:
        gated = ActivationParams(dtype, device, 2 * inter, "tanh")
        out.append(Case(f"{GELU_AND_MUL} I={inter}", tokens,
                        _inputs((tokens, 2 * inter), dtype, device, gen),
                        3 * tokens * inter * size, gated, GELU_AND_MUL, _call_all))  # fmt: skip
    for hidden, _ in GEMMA_SHAPES:
        out.append(Case(f"{GEMMA3_RMS_NORM} h={hidden}", tokens,
                        _inputs((tokens, hidden), dtype, device, gen),
                        2 * tokens * hidden * size, _gemma_norm(hidden, dtype, device, gen),
                        GEMMA3_RMS_NORM, _call_plain_norm))  # fmt: skip
    hidden = GEMMA_SHAPES[-1][0]
    out.append(Case(f"{GEMMA3_RMS_NORM} residual h={hidden}", tokens,
                    lambda: (_rand((tokens, hidden), dtype, device, gen),
                             _rand((tokens, hidden), dtype, device, gen)),
                    4 * tokens * hidden * size, _gemma_norm(hidden, dtype, device, gen),
                    GEMMA3_RMS_NORM, _call_add_norm))  # fmt: skip
    return out


def _gemma_norm(hidden: int, dtype, device, gen) -> NormParams:
    weight = _rand((hidden,), dtype, device, gen) * 0.1  # raw: the scale is 1 + weight
    return NormParams(weight, 1e-6, hidden, dtype, device)


def _vision_cases(tokens, dtype, device, gen) -> list[Case]:
    """GPT-2-style NewGELU, SigLIP's QuickGELU and LayerNorm, and the unscaled norm."""
    size = _size(dtype)
    layer_norm = LayerNormParams(
        _rand((SIGLIP_HIDDEN,), torch.float32, device, gen) * 0.1 + 1,
        _rand((SIGLIP_HIDDEN,), torch.float32, device, gen) * 0.1,
        1e-6, SIGLIP_HIDDEN, torch.float32, dtype, device,
    )  # fmt: skip
    return [
        Case(f"{NEW_GELU} w={NEW_GELU_WIDTH}", tokens,
             _inputs((tokens, NEW_GELU_WIDTH), dtype, device, gen),
             2 * tokens * NEW_GELU_WIDTH * size, ActivationParams(dtype, device, NEW_GELU_WIDTH),
             NEW_GELU, _call_all),
        Case(f"{QUICK_GELU} w={SIGLIP_MLP}", tokens,
             _inputs((tokens, SIGLIP_MLP), dtype, device, gen),
             2 * tokens * SIGLIP_MLP * size, ActivationParams(dtype, device, SIGLIP_MLP),
             QUICK_GELU, _call_all),
        Case(f"{LAYER_NORM} h={SIGLIP_HIDDEN}", tokens,
             _inputs((tokens, SIGLIP_HIDDEN), dtype, device, gen),
             2 * tokens * SIGLIP_HIDDEN * size, layer_norm, LAYER_NORM, _call_all),
        Case(RMS_NORM_WITHOUT_SCALE, tokens, _inputs((tokens, HIDDEN), dtype, device, gen),
             2 * tokens * HIDDEN * size, NormParams(None, 1e-6, HIDDEN, dtype, device),
             RMS_NORM_WITHOUT_SCALE, _call_plain_norm),
    ]  # fmt: skip


def _rope_cases(tokens, dtype, device, gen) -> list[Case]:
    size = _size(dtype)
    mrope = MRotaryParams(cos_sin_cache(device), HEAD_DIM, HEAD_DIM, True, MROPE_SECTION, False,
                          dtype, device)  # fmt: skip
    q_width = MROPE_Q_HEADS * HEAD_DIM
    qkv_width = (MROPE_Q_HEADS + 2 * MROPE_KV_HEADS) * HEAD_DIM

    def mrope_inputs():
        qkv = _rand((tokens, qkv_width), dtype, device, gen)
        positions = torch.randint(0, MAX_POSITIONS, (3, tokens), device=device, generator=gen)
        return positions, qkv[:, :q_width], qkv[:, q_width : q_width + MROPE_KV_HEADS * HEAD_DIM]

    # the cache's yarn scale is mscale / mscale_all_dim: 1 for DeepSeek-V2/V3 (equal in both)
    deepseek = RotaryParams(cos_sin_cache(device, MLA_ROPE_DIM, scale=1.0), MLA_ROPE_DIM,
                            MLA_ROPE_DIM, False, dtype, device)  # fmt: skip

    def mla_inputs():
        q = _rand((tokens, MLA_HEADS, MLA_NOPE_DIM + MLA_ROPE_DIM), dtype, device, gen)
        latent = _rand((tokens, 1, MLA_KV_LORA_RANK + MLA_ROPE_DIM), dtype, device, gen)
        positions = torch.randint(0, MAX_POSITIONS, (tokens,), device=device, generator=gen)
        return positions, q[..., MLA_NOPE_DIM:], latent[..., MLA_KV_LORA_RANK:]

    mrope_qk = tokens * (MROPE_Q_HEADS + MROPE_KV_HEADS) * HEAD_DIM * size
    mla_qk = tokens * (MLA_HEADS + 1) * MLA_ROPE_DIM * size
    return [
        # [3, T] positions; each of the rotary_dim / 2 frequencies gathered from one row
        Case(MROTARY_EMBEDDING, tokens, mrope_inputs,
             2 * mrope_qk + tokens * (3 * 8 + HEAD_DIM * 4), mrope, MROTARY_EMBEDDING,
             _call_all),
        Case(DEEPSEEK_SCALING_ROTARY_EMBEDDING, tokens, mla_inputs,
             2 * mla_qk + tokens * (8 + MLA_ROPE_DIM * 4), deepseek,
             DEEPSEEK_SCALING_ROTARY_EMBEDDING, _call_all),
    ]  # fmt: skip


def flaggems_baselines() -> dict[str, Callable[[Any], Callable[..., Any]]]:
    """FlagGems 5.0.x's own kernels behind the same contracts (empty: FlagGems cannot load)."""
    if flaggems_import_error():
        return {}
    import flag_gems

    def silu(params):
        def fn(x):
            d = x.shape[-1] // 2
            return flag_gems.silu_and_mul(x[..., :d], x[..., d:])

        return fn

    def rms(params):
        shape, w, eps = (params.hidden_size,), params.weight, params.eps

        def fn(x, residual):
            if residual is None:
                return flag_gems.rms_norm(x, shape, w, eps)
            flag_gems.fused_add_rms_norm(x, residual, shape, w, eps)
            return x, residual

        return fn

    def rope(params):
        cos, sin = (t.contiguous() for t in params.cos_sin_cache.chunk(2, dim=-1))
        d = params.head_size

        def fn(positions, query, key):
            t = positions.shape[0]
            return flag_gems.apply_rotary_pos_emb(
                query.view(t, -1, d), key.view(t, -1, d), cos, sin, position_ids=positions
            )

        return fn

    return {SILU_AND_MUL: silu, RMS_NORM: rms, ROTARY_EMBEDDING: rope}


def implementations(device: torch.device) -> dict[str, Any]:
    """impl id -> Backend, for every backend available here (the registry the plugin uses)."""
    from sglang_fl.bundles import discover_bundles
    from sglang_fl.dispatch.registry import build_registry

    registry = build_registry(discover_bundles())
    return {b.impl_id: b for b in registry.backends if registry.availability(b).ok}


def run(
    device: str = "cuda",
    dtype_name: str = "bfloat16",
    tokens: tuple[int, ...] = TOKENS,
    ops: tuple[str, ...] | None = None,
    include_reference: bool = False,
) -> tuple[float, list[OpTiming]]:
    """(copy GB/s, timings); ``ops``: case or contract op names to keep (None: all)."""
    dtype = getattr(torch, dtype_name)
    dev = torch.device(device)
    copy_gbps = copy_bandwidth_gbps(dev)
    backends = implementations(dev)
    if not include_reference:
        backends.pop("reference", None)
    gems = flaggems_baselines()
    results: list[OpTiming] = []
    with torch.inference_mode():
        for count in tokens:
            for case in cases(count, dtype, dev):
                if ops is None or case.op in ops or case.contract_op in ops:
                    results += _time_case(case, backends, gems, copy_gbps, dtype_name)
            torch.cuda.empty_cache()
    return copy_gbps, results


def bind_implementations(case: Case, backends: dict[str, Any], gems) -> dict[str, Callable]:
    """impl id -> bound kernel, for every backend that takes the case (as the dispatcher binds
    it: ``supports`` first), FlagGems where it has the op, and SGLang's own ``forward_native``
    where no vendor backend takes it (then the baseline, see ``baseline_of``)."""
    bound = {
        impl_id: impl.bind(case.params)
        for impl_id, backend in backends.items()
        if (impl := backend.implementations().get(case.contract_op)) is not None
        and impl.supports(case.params) is None
    }
    if case.contract_op in gems:
        bound["flaggems"] = gems[case.contract_op](case.params)
    if baseline_of(bound) is None:
        bound[NATIVE] = sglang_forward(case.contract_op, case.params)
    return bound


def baseline_of(bound: dict[str, Any]) -> str | None:
    """The implementation every ratio of a case is against: the first vendor backend that took
    the case, else SGLang's own path if it was bound."""
    vendor = next((impl_id for impl_id in bound if impl_id.startswith("vendor.")), None)
    return vendor or (NATIVE if NATIVE in bound else None)


def _time_case(case: Case, backends, gems, copy_gbps: float, dtype_name: str) -> list[OpTiming]:
    """Every implementation of one case, timed (do_bench us, graph-replay us) by impl id."""
    bound = bind_implementations(case, backends, gems)
    timed: dict[str, tuple[float, float | None]] = {}
    for impl_id, kernel in bound.items():
        fn = case.call(kernel, case.inputs())
        timed[impl_id] = (device_us(fn), graph_us(fn))
    return timings(case, timed, baseline_of(bound), copy_gbps, dtype_name)


def timings(case: Case, timed: dict[str, tuple[float, float | None]], baseline: str | None,
            copy_gbps: float, dtype_name: str) -> list[OpTiming]:  # fmt: skip
    """The result rows of one case from its (do_bench us, graph us) per impl id."""
    base = timed.get(baseline) if baseline else None
    copy_us = same_size_copy_us(case.bytes_moved)
    out = []
    for impl_id, (us, graph) in timed.items():
        gbps = case.bytes_moved / (us * 1e-6) / 1e9
        graph_ratio = graph / base[1] if base and graph and base[1] else None
        out.append(OpTiming(
            case.op, impl_id, case.tokens, dtype_name, us, gbps, gbps / copy_gbps,
            baseline if base else None, us / base[0] if base else None, graph, graph_ratio,
            copy_us / us,
        ))  # fmt: skip
    return out


# --------------------------------------------------------------------------- SGLang's own path


def sglang_forward(contract_op: str, params: Any) -> Callable[..., Any]:
    """SGLang's ``forward_native`` of the real layer class behind ``contract_op``, built for
    ``params`` (weights and cache are the case's own) and called with the contract's signature
    (the norms' ``(x, residual)``, whatever the class's own arity)."""
    from sglang_fl.compat.fused_ops import publish_default_server_args

    publish_default_server_args()  # SGLang < 0.5.18's constructors read them
    return _SGLANG_BUILDERS[contract_op](params)


def _activation(cls_name: str) -> Callable[[ActivationParams], Callable[..., Any]]:
    def build(params: ActivationParams) -> Callable[..., Any]:
        from sglang.srt.layers import activation

        cls = getattr(activation, cls_name)
        module = cls(params.approximate) if cls_name == "GeluAndMul" else cls()
        return module.forward_native

    return build


def _with(module: torch.nn.Module, device, **tensors: torch.Tensor | None) -> torch.nn.Module:
    """``module`` on ``device`` with the case's own tensors in place of its parameters/buffers."""
    module = module.to(device)
    for name, tensor in tensors.items():
        if tensor is None:
            continue
        if isinstance(getattr(module, name), torch.nn.Parameter):
            tensor = torch.nn.Parameter(tensor, requires_grad=False)
        setattr(module, name, tensor)  # a parameter, or a registered buffer (the rope cache)
    return module


def _norm(cls_name: str) -> Callable[[NormParams], Callable[..., Any]]:
    def build(params: NormParams) -> Callable[..., Any]:
        from sglang.srt.layers import layernorm

        cls = getattr(layernorm, cls_name)
        module = _with(cls(params.hidden_size, eps=params.eps), params.device,
                       weight=params.weight)  # fmt: skip

        takes_residual = "residual" in inspect.signature(module.forward_native).parameters

        def norm(x: torch.Tensor, residual: torch.Tensor | None):
            if residual is None:
                return module.forward_native(x)
            if takes_residual:
                return module.forward_native(x, residual)
            # SGLang < 0.5.21's Gemma3RMSNorm has no residual form: what 0.5.21+'s native
            # path does with one (the add in the input dtype, then the norm), written out
            summed = x + residual
            return module.forward_native(summed), summed

        return norm

    return build


def _layer_norm(params: LayerNormParams) -> Callable[..., Any]:
    from sglang.srt.layers.layernorm import LayerNorm

    module = LayerNorm(params.hidden_size, params.eps, elementwise_affine=params.weight is not None,
                       bias=params.bias is not None, dtype=params.compute_dtype)  # fmt: skip
    return _with(module, params.device, weight=params.weight, bias=params.bias).forward_native


def _rotary(params: RotaryParams) -> Callable[..., Any]:
    from sglang.srt.layers.rotary_embedding.base import RotaryEmbedding

    module = RotaryEmbedding(params.head_size, params.rotary_dim, 16, 10000, params.is_neox_style,
                             params.dtype)  # fmt: skip
    return _with(module, params.device, cos_sin_cache=params.cos_sin_cache).forward_native


def _mrotary(params: MRotaryParams) -> Callable[..., Any]:
    from sglang.srt.layers.rotary_embedding.mrope import MRotaryEmbedding

    section = list(params.mrope_section) if params.mrope_section else None
    module = MRotaryEmbedding(params.head_size, params.rotary_dim, 16, 10000,
                              params.is_neox_style, params.dtype, mrope_section=section,
                              mrope_interleaved=params.interleaved)  # fmt: skip
    return _with(module, params.device, cos_sin_cache=params.cos_sin_cache).forward_native


def _deepseek_rotary(params: RotaryParams) -> Callable[..., Any]:
    from sglang.srt.layers.rotary_embedding.rope_variant import DeepseekScalingRotaryEmbedding

    module = DeepseekScalingRotaryEmbedding(
        params.head_size, params.rotary_dim, 16, 10000, params.is_neox_style, 1.0, params.dtype,
        device=str(params.device),
    )  # fmt: skip
    return _with(module, params.device, cos_sin_cache=params.cos_sin_cache).forward_native


_SGLANG_BUILDERS: dict[str, Callable[[Any], Callable[..., Any]]] = {
    SILU_AND_MUL: _activation("SiluAndMul"),
    GELU_AND_MUL: _activation("GeluAndMul"),
    NEW_GELU: _activation("NewGELU"),
    QUICK_GELU: _activation("QuickGELU"),
    RMS_NORM: _norm("RMSNorm"),
    GEMMA_RMS_NORM: _norm("GemmaRMSNorm"),
    GEMMA3_RMS_NORM: _norm("Gemma3RMSNorm"),
    RMS_NORM_WITHOUT_SCALE: _norm("RMSNormWithoutScale"),
    LAYER_NORM: _layer_norm,
    ROTARY_EMBEDDING: _rotary,
    MROTARY_EMBEDDING: _mrotary,
    DEEPSEEK_SCALING_ROTARY_EMBEDDING: _deepseek_rotary,
}


def plot(results: list[OpTiming], path: str, title: str) -> None:
    """Latency vs tokens, one panel per op, one line per implementation (log-log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ops = list(dict.fromkeys(r.op for r in results))
    cols = min(3, len(ops))
    rows = math.ceil(len(ops) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.8 * rows), squeeze=False)
    for ax, op in zip(axes.flat, ops, strict=False):
        for impl in dict.fromkeys(r.impl for r in results if r.op == op):
            pts = sorted((r.tokens, r.latency_us) for r in results if r.op == op and r.impl == impl)
            ax.plot(*zip(*pts, strict=True), marker="o", label=impl)
        ax.set(xscale="log", yscale="log", title=op, xlabel="tokens", ylabel="latency (us)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(ops) :]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
