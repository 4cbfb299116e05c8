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

import argparse
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DEFAULT_SIZES = "1MiB,16MiB,256MiB"
_UNITS = {"": 1, "B": 1, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "KB": 10**3, "MB": 10**6,
          "GB": 10**9}  # fmt: skip


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``bench comm`` (``--device`` and ``--json`` are the bench command's)."""
    parser.add_argument("--nprocs", type=int, help="comm: processes/devices (default: all)")
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="comm: message sizes")
    parser.add_argument("--iters", type=int, default=20, help="comm: calls per timing round")


def parse_sizes(text: str) -> list[int]:
    """``"1MiB,16MiB"`` -> bytes; units B, KiB, MiB, GiB (powers of 2) or KB, MB, GB."""
    sizes = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        match = re.fullmatch(r"(\d+)\s*([A-Za-z]*)", item)
        unit = match.group(2).upper() if match else None
        if unit not in _UNITS:
            raise ValueError(f"bad message size {item!r}; use e.g. 4KiB, 16MiB, 1GB")
        sizes.append(int(match.group(1)) * _UNITS[unit])
    if not sizes:
        raise ValueError(f"no message sizes in {text!r}")
    return sizes


def run(device: str, nprocs: int | None, sizes: list[int], iters: int) -> dict[str, Any]:
    """Spawn the ranks, measure, return the report (rank 0's, slowest-rank times)."""
    import torch

    device_type = device.split(":")[0]
    world = nprocs or _device_count(device_type)
    if world < 2:
        raise ValueError(f"an all-reduce benchmark needs two or more ranks; got {world}")
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        torch.multiprocessing.spawn(
            _worker,
            args=(world, device_type, sizes, iters, str(Path(tmp) / "store"), str(report)),
            nprocs=world,
            join=True,
        )
        return json.loads(report.read_text())


def main(args: argparse.Namespace) -> int:
    report = run(args.device, args.nprocs, parse_sizes(args.sizes), args.iters)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"all_reduce, {report['nprocs']} x {report['device']}, {report['dtype']}, platform "
        f"{report['platform']}: "
        f"sglang-fl = SGLang TP group on '{report['torch_backend']}' "
        f"(SGLANG_FL_DIST_BACKEND={report['dist_backend']}), torch.distributed = "
        f"'{report['baseline_backend']}'"
    )
    rows = [
        (_size(r["bytes"]), f"{r['torch_us']:.1f}", f"{r['torch_busbw_gbps']:.2f}",
         f"{r['sglang_fl_us']:.1f}", f"{r['sglang_fl_busbw_gbps']:.2f}", f"{r['ratio']:.3f}")
        for r in report["results"]
    ]  # fmt: skip
    header = ("size", "torch us", "torch GB/s", "sglang-fl us", "sglang-fl GB/s", "ratio")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)))
    return 0


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


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} B"
