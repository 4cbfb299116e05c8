"""Per-call cost of dispatch: a fused op called through SGLang + sglang-fl vs its kernel directly.

Builds real SGLang op modules in this process with sglang-fl's Layer 2 installed, lets each
bind on a first call, then times (a) ``module(*args)`` — SGLang's ``forward`` calling the
forward sglang-fl installed — and (b) the same bound kernel called directly with the same
inputs, and (c) the installed forward called directly. (c) - (b) is what sglang-fl adds per
call; (a) - (c) is nn.Module and SGLang's own ``forward`` wrapper, which exist without the
plugin too. Tiny tensors keep kernel time small so overhead shows.

Kernel-time noise can hide a sub-microsecond difference, so the bridge is also timed exactly:
the same bridge wrapped around a do-nothing kernel, minus that kernel's own call
(``bridge_only_us``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from sglang_fl.errors import BenchmarkError
from sglang_fl.ops.bridges import BRIDGES

ITERATIONS = 20000
# A GPU call costs ~10-20 us of launch (Triton more), four times a CPU one at these sizes: fewer
# calls per round give the same timer resolution and keep the run under a minute.
GPU_ITERATIONS = 5000
REPEATS = 15


@dataclass(frozen=True)
class OverheadResult:
    """through_sglang: ``module(*args)`` (nn.Module + SGLang's forward + ours + kernel);
    installed_forward: the forward sglang-fl installed, called directly (ours + kernel);
    kernel_direct: the bound kernel alone. ``overhead_us`` is what sglang-fl adds per call."""

    op: str
    impl_id: str
    device: str
    through_sglang_us: float
    installed_forward_us: float
    kernel_direct_us: float
    bridge_only_us: float

    @property
    def overhead_us(self) -> float:
        return self.installed_forward_us - self.kernel_direct_us

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "overhead_us": self.overhead_us}


def per_call_us(
    fns: list[Callable[[], Any]], iterations: int = ITERATIONS, sync=None
) -> list[float]:
    """Per-call time of each fn in microseconds: the minimum over REPEATS interleaved rounds.

    Interleaving exposes every fn to the same machine load; the minimum discards rounds
    slowed by other work (noise only ever adds time).
    """
    best = [float("inf")] * len(fns)
    for _ in range(REPEATS):
        for index, fn in enumerate(fns):
            start = time.perf_counter()
            for _ in range(iterations):
                fn()
            if sync is not None:
                sync()
            best[index] = min(best[index], (time.perf_counter() - start) / iterations * 1e6)
    return best


def run(device: str = "cpu") -> list[OverheadResult]:
    import torch

    os.environ.setdefault("SGLANG_PLATFORM", "sglang_fl")
    from sglang_fl.compat import fused_ops
    from sglang_fl.dispatch.oot import active_dispatcher
    from sglang_fl.plugin import load_plugin

    load_plugin()
    dispatcher = active_dispatcher()
    if dispatcher is None:
        raise BenchmarkError(
            "bench dispatch: sglang-fl's Layer 2 is not active in this process (the log above "
            "says why, e.g. SGLANG_FL_OOT_ENABLED=0 or an SGLang platform not sglang-fl's)"
        )
    fused_ops.publish_default_server_args()
    on_gpu = device.startswith("cuda")
    sync = torch.cuda.synchronize if on_gpu else None
    iterations = GPU_ITERATIONS if on_gpu else ITERATIONS
    with torch.inference_mode():
        return [
            _measure(op, module, args, dispatcher, device, sync, iterations)
            for op, module, args in _cases(device)
        ]


def _measure(op, module, args, dispatcher, device, sync, iterations) -> OverheadResult:
    module(*args)  # first call: binds and installs the forward
    binding = dispatcher.bindings[module]
    bridged_null = BRIDGES[op.split("+")[0]].forward(module, _null_kernel, module.forward_native)
    through, installed, direct, bridged, null = per_call_us(
        [
            lambda: module(*args),
            lambda: binding.forward(*args),
            _direct_call(op, binding.kernel, args),
            lambda: bridged_null(*args),
            _direct_call(op, _null_kernel, args),
        ],
        iterations,
        sync=sync,
    )
    bridge_only = max(0.0, bridged - null)
    return OverheadResult(op, binding.impl_id, device, through, installed, direct, bridge_only)


def _null_kernel(*args: Any) -> None:
    return None


def _cases(device: str):
    import torch
    from sglang.srt.layers.activation import SiluAndMul
    from sglang.srt.layers.layernorm import RMSNorm
    from sglang.srt.layers.rotary_embedding import get_rope

    hidden, heads, head_dim = 64, 4, 16
    x = torch.randn(1, hidden, device=device)
    residual = torch.randn(1, hidden, device=device)
    rope = get_rope(head_dim, head_dim, 128, 10000, True, dtype=torch.float32).to(device)
    q = torch.randn(1, heads * head_dim, device=device)
    k = torch.randn(1, heads * head_dim, device=device)
    positions = torch.tensor([3], device=device)
    return [
        ("silu_and_mul", SiluAndMul().to(device), (torch.randn(1, 2 * hidden, device=device),)),
        ("rms_norm", RMSNorm(hidden).to(device), (x,)),
        ("rms_norm+residual", RMSNorm(hidden).to(device), (x, residual)),
        ("rotary_embedding", rope, (positions, q, k)),
    ]


def _direct_call(op: str, kernel: Callable, args: tuple) -> Callable[[], Any]:
    if op.startswith("rms_norm"):
        residual = args[1] if len(args) > 1 else None
        return lambda: kernel(args[0], residual)
    return lambda: kernel(*args)
