"""GPU timing primitives shared by the benchmarks (one definition of each measurement).

- ``device_us``: ``triton.testing.do_bench`` median (event-timed, L2 flushed between runs). At
  small sizes a launch's host cost can exceed the flush and show up here.
- ``graph_us``: the call captured in a CUDA graph and timed by replay: device time as decode
  runs it, with no host cost at all; None if the call cannot be captured.
- ``host_us``: a loop of back-to-back calls and one sync: what eager execution (prefill) pays
  per call, host launch cost included.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch


def device_us(fn: Callable[[], Any]) -> float:
    from triton.testing import do_bench

    return do_bench(fn, return_mode="median") * 1e3


def graph_us(fn: Callable[[], Any], calls: int = 1) -> float | None:
    """Per-call device time of ``calls`` back-to-back calls captured in one CUDA graph."""
    try:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            fn()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(calls):
                fn()
    except Exception:
        torch.cuda.synchronize()
        return None
    return device_us(graph.replay) / calls


def host_us(fn: Callable[[], Any], calls: int = 50, rounds: int = 5) -> float:
    """Per-call wall time of back-to-back calls (host launch cost included), best round."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - start) / calls * 1e6)
    return best


def same_size_copy_us(bytes_moved: int, device: torch.device | str = "cuda") -> float:
    """A device-to-device copy that reads and writes ``bytes_moved`` bytes in all: what an op
    moving that many bytes could take at best on this device (small sizes pay the same launch
    and ramp-up a kernel does, which the 1 GiB figure hides)."""
    src = torch.empty(max(1, bytes_moved // 2), dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    return device_us(lambda: dst.copy_(src))


def copy_bandwidth_gbps(device: torch.device | str = "cuda") -> float:
    """Device-to-device copy of 1 GiB, bytes read + written (the practical ceiling)."""
    src = torch.empty(1 << 30, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    return 2 * src.numel() / (device_us(lambda: dst.copy_(src)) * 1e3)
