"""SGLang platform class for the CPU-reference bundle."""

from __future__ import annotations

from typing import Any, ClassVar

import psutil

from sglang_fl.platform_base import FLPlatform


class CpuPlatform(FLPlatform):
    device_name = "cpu"
    device_type = "cpu"
    dispatch_key = "native"
    server_arg_defaults: ClassVar[dict[str, Any]] = {
        "device": "cpu",
        "attention_backend": "torch_native",
        "sampling_backend": "pytorch",
        # KV cache share of *host* memory; SGLang's GPU-sized default would take most of RAM.
        "mem_fraction_static": 0.05,
    }

    def get_device(self, local_rank: int | None = None) -> str:
        # SGLang splits this string on ":"; torch.device objects break it.
        return "cpu"

    def get_device_name(self, device_id: int = 0) -> str:
        return "cpu"

    def get_device_total_memory(self, device_id: int = 0) -> int:
        return int(psutil.virtual_memory().total)

    def get_current_memory_usage(self, device=None) -> float:
        vm = psutil.virtual_memory()
        return float(vm.total - vm.available)

    def is_pin_memory_available(self, device=None) -> bool:
        return False

    def get_default_attention_backend(self) -> str:
        return "torch_native"

    def support_cuda_graph(self) -> bool:
        return False

    def support_piecewise_cuda_graph(self) -> bool:
        return False

    def apply_server_args_defaults(self, server_args) -> None:
        super().apply_server_args_defaults(server_args)
        # No graph capture on CPU, whatever the user asked for.
        server_args.disable_cuda_graph = True
