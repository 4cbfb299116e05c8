"""All-reduce bus bandwidth through sglang-fl's path vs torch.distributed directly.

``sglang-fl bench comm`` spawns one process per local device. In every process SGLang's
plugins load as in a server (``load_plugins()``: sglang-fl's Layer 3 and hooks), and SGLang's
tensor-parallel groups are built as its model runner builds them, on the backend the active
platform names. Per message size, each process then times, interleaved:

- ``torch.distributed``: ``dist.all_reduce`` on a plain group of the device's own torch backend
  (NCCL on CUDA, HCCL on NPU, gloo on CPU) -- the baseline;
- ``sglang-fl``: ``GroupCoordinator.all_reduce`` of SGLang's TP group, i.e. what a
  row-parallel layer calls: with ``nccl`` SGLang's own custom all-reduce / NCCL path, with
  ``flagcx`` sglang-fl's FlagCX backend, with ``gloo``/``hccl`` torch.distributed.

Time per call: the best of interleaved rounds of back-to-back calls ending in a device sync
(``dispatch_overhead.per_call_us``, as ``bench dispatch`` times), the slowest rank's. Bus
bandwidth follows nccl-tests: ``bytes / time * 2 (n - 1) / n``.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sglang_fl.errors import BenchmarkError


@dataclass(frozen=True)
class CommResult:
    """One message size: time per all-reduce (us) and bus bandwidth (GB/s) of both paths."""

    bytes: int
    torch_us: float
    sglang_fl_us: float
    torch_busbw_gbps: float
    sglang_fl_busbw_gbps: float

    @property
    def ratio(self) -> float:
        """sglang-fl's bus bandwidth relative to torch.distributed's (1.0: the same)."""
        return self.sglang_fl_busbw_gbps / self.torch_busbw_gbps

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


def run(device: str, nprocs: int | None, sizes: list[int], iters: int) -> dict[str, Any]:
    """Spawn the ranks, measure, return the report (rank 0's, slowest-rank times)."""
    import torch

    device_type = device.split(":")[0]
    world = nprocs or _device_count(device_type)
    if world < 2:
        raise BenchmarkError(
            f"an all-reduce benchmark needs two or more ranks; {world} {device_type} device(s) "
            "here (--nprocs sets the number of processes)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        try:
            torch.multiprocessing.spawn(
                _worker,
                args=(world, device_type, sizes, iters, str(Path(tmp) / "store"), str(report)),
                nprocs=world,
                join=True,
            )
        except torch.multiprocessing.ProcessException as exc:
            raise BenchmarkError(f"bench comm: {_one_line(str(exc))}") from exc
        return json.loads(report.read_text())


def _one_line(message: str) -> str:
    """A rank's failure in one line. torch's message is "process N terminated with ..." and,
    when the rank raised, its traceback, whose last line is the exception itself."""
    lines = [line.strip().removeprefix("-- ") for line in message.splitlines() if line.strip()]
    if not lines:
        return "a rank failed"
    return lines[0] if len(lines) == 1 else f"{lines[0]} {lines[-1]}"


# --------------------------------------------------------------------------- in each rank


def _worker(
    rank: int, world: int, device_type: str, sizes: list[int], iters: int, store: str,
    report: str,
) -> None:  # fmt: skip
    import torch
    import torch.distributed as dist

    if device_type == "cpu":  # SGLang has no CPU platform of its own without sgl_kernel
        os.environ.setdefault("SGLANG_PLATFORM", "sglang_fl")
    device = _bind_device(device_type, rank)
    from sglang.srt import platforms
    from sglang.srt.plugins import load_plugins

    from sglang_fl.bench.dispatch_overhead import REPEATS, per_call_us
    from sglang_fl.compat import distributed as sglang_distributed
    from sglang_fl.config import get_settings

    load_plugins()  # sglang-fl's Layer 3 and hooks, as in every SGLang process
    settings = get_settings()
    backend = platforms.current_platform.get_torch_distributed_backend_str()
    tp = sglang_distributed.init_tensor_parallel(
        world_size=world, rank=rank, init_method=f"file://{store}", backend=backend,
        # SGLang's default, which sglang-fl's platform switches off for flagcx
        custom_all_reduce=settings.dist_backend != "flagcx",
    )  # fmt: skip
    baseline = dist.Backend.default_device_backend_map[device_type]
    direct = dist.new_group(list(range(world)), backend=baseline)
    dtype = torch.float32 if device_type == "cpu" else torch.bfloat16
    try:
        results = []
        for size in sizes:
            tensor = torch.zeros(size // dtype.itemsize, dtype=dtype, device=device)
            calls = [
                lambda t=tensor: dist.all_reduce(t, group=direct),
                lambda t=tensor: tp.all_reduce(t),
            ]
            for call in calls:  # warm-up: connections, buffers, custom all-reduce IPC
                call()
            timings_us = per_call_us(calls, iters, sync=lambda: _synchronize(device))
            slowest = torch.tensor(timings_us, dtype=torch.float64) / 1e6
            dist.all_reduce(slowest, op=dist.ReduceOp.MAX, group=tp.cpu_group)
            results.append(_result(size, world, *slowest.tolist()))
        if rank == 0:
            Path(report).write_text(json.dumps({
                "device": device_type, "nprocs": world, "dtype": str(dtype).split(".")[1],
                "platform": type(platforms.current_platform).__name__,
                "dist_backend": settings.dist_backend, "torch_backend": backend,
                "baseline_backend": baseline, "iters": iters, "rounds": REPEATS,
                "results": [r.as_dict() for r in results],
            }))  # fmt: skip
    finally:
        dist.destroy_process_group(direct)
        sglang_distributed.destroy_tensor_parallel()


def _result(size: int, world: int, torch_s: float, sglang_fl_s: float) -> CommResult:
    factor = 2 * (world - 1) / world
    return CommResult(
        bytes=size, torch_us=torch_s * 1e6, sglang_fl_us=sglang_fl_s * 1e6,
        torch_busbw_gbps=size / torch_s * factor / 1e9,
        sglang_fl_busbw_gbps=size / sglang_fl_s * factor / 1e9,
    )  # fmt: skip


def _bind_device(device_type: str, rank: int) -> Any:
    import torch

    if device_type == "cpu":
        return torch.device("cpu")
    device = torch.device(device_type, rank)
    getattr(torch, device_type).set_device(device)
    return device


def _synchronize(device: Any) -> None:
    import torch

    if device.type != "cpu":
        getattr(torch, device.type).synchronize(device)


def _device_count(device_type: str) -> int:
    import torch

    if device_type == "cpu":
        return 2
    return getattr(torch, device_type).device_count()
