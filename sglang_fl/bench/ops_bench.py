"""``sglang-fl bench ops``: each fused op, per backend, at serving sizes, against the vendor.

Every implementation is bound exactly as the dispatcher binds it (``OpImpl.bind(params)``)
and timed two ways (``sglang_fl.bench.timing``): ``triton.testing.do_bench`` (median of
event-timed runs, L2 flushed between runs; at small sizes a launch's host cost can show) and
CUDA-graph replay (device time only, what decode pays). FlagGems' own kernels are timed too
(column ``flaggems``): they show where our own Triton kernels were needed. Bandwidth counts
each byte read and written once, against the device's copy bandwidth measured in the same run
(1 GiB) and against a copy moving the same bytes as the op (column ``of same-size copy``).

Shapes follow the issue's targets: hidden 4096; SiluAndMul intermediate 11008 (the fused
``[T, 2I]`` layout); rotary with 32 query / 8 KV heads of 128 as strided views of a fused QKV
tensor, neox style, fp32 cache (as SGLang keeps it on CUDA).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from sglang_fl.bench.timing import copy_bandwidth_gbps, device_us, graph_us, same_size_copy_us
from sglang_fl.flaggems import flaggems_import_error
from sglang_fl.ops.params import ActivationParams, NormParams, RotaryParams

TOKENS = (1, 64, 1024, 8192, 32768)
HIDDEN = 4096
INTERMEDIATE = 11008
Q_HEADS, KV_HEADS, HEAD_DIM = 32, 8, 128
MAX_POSITIONS = 32768
OPS = ("silu_and_mul", "rms_norm", "fused_add_rms_norm", "gemma_rms_norm", "rotary_embedding")


@dataclass(frozen=True)
class OpTiming:
    op: str
    impl: str  # impl id, or "flaggems"
    tokens: int
    dtype: str
    latency_us: float  # do_bench median
    gbps: float
    copy_fraction: float  # gbps / device copy bandwidth
    vs_vendor: float | None  # latency / the vendor's latency (None: no vendor timing)
    graph_us: float | None = None  # CUDA-graph replay: device time without host cost
    graph_vs_vendor: float | None = None
    # a copy moving the same bytes (``timing.same_size_copy_us``) / latency: 1.0 = copy speed
    of_same_size_copy: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Case:
    """One op at one size: how to build inputs, how many bytes it moves, how to call an impl."""

    op: str
    tokens: int
    inputs: Callable[[], tuple]
    bytes_moved: int
    params: Any
    contract_op: str  # the dispatch op name implementations are registered under
    call: Callable[[Callable, tuple], Callable[[], Any]]


def _rand(shape, dtype, device, gen):
    return torch.randn(shape, generator=gen, device=device, dtype=torch.float32).to(dtype)


def cos_sin_cache(device: torch.device) -> torch.Tensor:
    inv = 1.0 / (1e6 ** (torch.arange(0, HEAD_DIM, 2, dtype=torch.float32) / HEAD_DIM))
    freqs = torch.outer(torch.arange(MAX_POSITIONS, dtype=torch.float32), inv)
    return torch.cat((freqs.cos(), freqs.sin()), dim=-1).to(device)


def cases(tokens: int, dtype: torch.dtype, device: torch.device) -> list[Case]:
    gen = torch.Generator(device=device).manual_seed(tokens)
    size = torch.empty((), dtype=dtype).element_size()
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
        Case("silu_and_mul", tokens,
             lambda: (_rand((tokens, 2 * INTERMEDIATE), dtype, device, gen),),
             3 * tokens * INTERMEDIATE * size,
             ActivationParams(dtype, device, 2 * INTERMEDIATE), "silu_and_mul",
             lambda fn, a: lambda: fn(*a)),
        Case("rms_norm", tokens, lambda: (_rand((tokens, HIDDEN), dtype, device, gen),),
             2 * row, norm, "rms_norm", lambda fn, a: lambda: fn(a[0], None)),
        Case("fused_add_rms_norm", tokens,
             lambda: (_rand((tokens, HIDDEN), dtype, device, gen),
                      _rand((tokens, HIDDEN), dtype, device, gen)),
             4 * row, norm, "rms_norm", lambda fn, a: lambda: fn(a[0], a[1])),
        Case("gemma_rms_norm", tokens, lambda: (_rand((tokens, HIDDEN), dtype, device, gen),),
             2 * row, norm, "gemma_rms_norm", lambda fn, a: lambda: fn(a[0], None)),
        # q and k read and written once; positions and the gathered cos/sin rows read once
        Case("rotary_embedding", tokens, rope_inputs,
             2 * qk_bytes + tokens * (8 + HEAD_DIM * 4), rotary, "rotary_embedding",
             lambda fn, a: lambda: fn(*a)),
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

    return {"silu_and_mul": silu, "rms_norm": rms, "rotary_embedding": rope}


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
    ops: tuple[str, ...] = OPS,
    include_reference: bool = False,
) -> tuple[float, list[OpTiming]]:
    """(copy GB/s, timings). The vendor column is the first available ``vendor.*`` backend."""
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
                if case.op in ops:
                    results += _time_case(case, backends, gems, copy_gbps, dtype_name)
            torch.cuda.empty_cache()
    return copy_gbps, results


def _time_case(case: Case, backends, gems, copy_gbps: float, dtype_name: str) -> list[OpTiming]:
    """Every implementation of one case: (do_bench us, graph-replay us) by impl id."""
    timed: dict[str, tuple[float, float | None]] = {}
    bound = {
        impl_id: impl.bind(case.params)
        for impl_id, backend in backends.items()
        if (impl := backend.implementations().get(case.contract_op)) is not None
        and impl.supports(case.params) is None
    }
    if case.contract_op in gems and case.op != "gemma_rms_norm":
        bound["flaggems"] = gems[case.contract_op](case.params)
    for impl_id, kernel in bound.items():
        fn = case.call(kernel, case.inputs())
        timed[impl_id] = (device_us(fn), graph_us(fn))
    vendor = next((t for i, t in timed.items() if i.startswith("vendor.")), None)
    copy_us = same_size_copy_us(case.bytes_moved)
    out = []
    for impl_id, (us, graph) in timed.items():
        gbps = case.bytes_moved / (us * 1e-6) / 1e9
        graph_ratio = graph / vendor[1] if vendor and graph and vendor[1] else None
        out.append(OpTiming(
            case.op, impl_id, case.tokens, dtype_name, us, gbps, gbps / copy_gbps,
            us / vendor[0] if vendor else None, graph, graph_ratio, copy_us / us,
        ))  # fmt: skip
    return out


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
