"""SGLang platform class for the CPU-reference bundle: SGLang on plain PyTorch, no Triton
kernels, no graph capture, SGLang's own KV pools and allocators (those ``fl_`` declarations at
FLPlatform's default), and PyTorch routes for the Triton-only SGLang paths its models reach
(``fl_torch_routes``)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, ClassVar

import psutil
import torch

from sglang_fl.platform_base import FLPlatform


class CpuPlatform(FLPlatform):
    device_name = "cpu"
    device_type = "cpu"
    fl_dispatch_key = "native"
    fl_server_arg_defaults: ClassVar[dict[str, Any]] = {
        "device": "cpu",
        "attention_backend": "torch_native",
        "sampling_backend": "pytorch",
        # KV cache share of *host* memory; SGLang's GPU-sized default would take most of RAM.
        "mem_fraction_static": 0.05,
    }
    # SGLang takes these paths to Triton (or a CUDA-only choice) unless its in-tree _is_cpu is
    # set; sglang_fl.compat.torch_routes routes each to PyTorch (docs/zoo.md: which models).
    fl_torch_routes: ClassVar[frozenset[str]] = frozenset({
        "final_logit_softcap",      # Gemma 2's final logit softcapping (Triton kernel)
        "attention_logit_softcap",  # Gemma 2's attention softcapping (torch_native ignores it)
        "mla_forward_method",       # DeepSeek MLA's prefill on torch_native (Triton's MHA choice)
    })  # fmt: skip

    def get_device(self, local_rank: int | None = None) -> str:
        # SGLang splits this string on ":"; torch.device objects break it.
        return "cpu"

    def set_device(self, device: Any) -> None:
        """One device: nothing to select."""

    def get_device_name(self, device_id: int = 0) -> str:
        return "cpu"

    def get_device_uuid(self, device_id: int = 0) -> str:
        # SGLang keys per-device caches (weight cache, checkpoint engine) by it: the host.
        return f"cpu-{socket.gethostname()}"

    def get_device_capability(self, device_id: int = 0) -> None:
        return None  # no compute capability on a CPU (SGLang: "None if N/A")

    def get_device_total_memory(self, device_id: int = 0) -> int:
        return int(psutil.virtual_memory().total)

    def get_current_memory_usage(self, device=None) -> float:
        vm = psutil.virtual_memory()
        return float(vm.total - vm.available)

    def get_available_memory(self, device_id: int = 0) -> tuple[int, int]:
        vm = psutil.virtual_memory()
        return int(vm.available), int(vm.total)

    def is_pin_memory_available(self, device=None) -> bool:
        return False

    def get_torch_profiler_activity_str(self) -> str:
        return "CPU"

    def get_torch_profiler_activity(self) -> torch.profiler.ProfilerActivity:
        return torch.profiler.ProfilerActivity.CPU

    def get_default_attention_backend(self) -> str:
        return "torch_native"

    def apply_server_args_defaults(self, server_args) -> None:
        super().apply_server_args_defaults(server_args)
        # No graph capture on CPU, whatever the user asked for.
        server_args.disable_cuda_graph = True
        ranks = _world_size(server_args)
        if ranks > _numa_nodes() and not os.environ.get(THREADS_BIND_ENV):
            # SGLang's CPU path binds one rank per NUMA node and refuses more ranks than
            # nodes unless told which cores each rank gets: split this process's cores evenly.
            # Set in the launcher process before the scheduler processes are spawned.
            os.environ[THREADS_BIND_ENV] = core_split(sorted(os.sched_getaffinity(0)), ranks)


THREADS_BIND_ENV = "SGLANG_CPU_OMP_THREADS_BIND"


def _world_size(server_args) -> int:
    sizes = (getattr(server_args, name, 1) or 1 for name in ("tp_size", "pp_size", "dp_size"))
    world = 1
    for size in sizes:
        world *= int(size)
    return world


def _numa_nodes() -> int:
    nodes = list(Path("/sys/devices/system/node").glob("node[0-9]*"))
    return max(1, len(nodes))


def core_split(cores: list[int], ranks: int) -> str:
    """``SGLANG_CPU_OMP_THREADS_BIND`` value giving each rank a contiguous share of ``cores``
    (ranks share cores round-robin when there are fewer cores than ranks)."""
    if len(cores) < ranks:
        return "|".join(str(cores[i % len(cores)]) for i in range(ranks))
    share, extra = divmod(len(cores), ranks)
    groups, start = [], 0
    for rank in range(ranks):
        end = start + share + (1 if rank < extra else 0)
        groups.append(_cpu_list(cores[start:end]))
        start = end
    return "|".join(groups)


def _cpu_list(cores: list[int]) -> str:
    """``0-3`` for a contiguous run (the form SGLang documents), else ``0,2,5``."""
    if len(cores) > 1 and cores == list(range(cores[0], cores[-1] + 1)):
        return f"{cores[0]}-{cores[-1]}"
    return ",".join(str(c) for c in cores)
