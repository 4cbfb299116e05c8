"""SGLang platform class of the template bundle: what SGLang asks the platform about its device.

``FLPlatform`` (sglang_fl/platform_base.py) supplies what every sglang-fl platform shares: the
out-of-tree identity, the distributed backend from the settings, SGLang's KV pool and paged
allocator, inductor as the compile backend. A bundle adds its device's identity, memory
queries and SGLang defaults. As shipped the device is the CPU (psutil for memory); each
``VENDOR:`` comment says what the call becomes on an accelerator, usually
``torch.<device>.<same name>`` (platforms/ascend/sglang_fl_ascend/platform.py is a full example,
with graph capture and the vendor's own KV pools).
"""

from __future__ import annotations

from typing import Any, ClassVar

import psutil

from sglang_fl.platform_base import FLPlatform
from sglang_fl_template import DEVICE_TYPE


class TemplatePlatform(FLPlatform):
    device_name = DEVICE_TYPE
    device_type = DEVICE_TYPE
    # Ops sglang-fl leaves alone run SGLang's own forward_<dispatch_key>: "native" is SGLang's
    # forward_native. VENDOR: your SGLang key if SGLang has one for your device (e.g. "npu");
    # never an in-tree key of another device.
    dispatch_key = "native"
    # SGLang server args defaulted where the user left them unset. VENDOR: your device, its
    # attention backend (e.g. "ascend", "flashinfer"), sampling backend, KV cache share.
    server_arg_defaults: ClassVar[dict[str, Any]] = {
        "device": DEVICE_TYPE,
        "attention_backend": "torch_native",
        "sampling_backend": "pytorch",
        "mem_fraction_static": 0.05,  # of host memory, here: SGLang's GPU default takes most
    }

    def get_device(self, local_rank: int | None = None) -> str:
        # A string (SGLang splits it on ":"). VENDOR: f"{DEVICE_TYPE}:{local_rank}" when given.
        return DEVICE_TYPE

    def get_device_name(self, device_id: int = 0) -> str:
        return DEVICE_TYPE  # VENDOR: torch.<device>.get_device_name(device_id)

    def get_device_total_memory(self, device_id: int = 0) -> int:
        # VENDOR: torch.<device>.get_device_properties(device_id).total_memory
        return int(psutil.virtual_memory().total)

    def get_current_memory_usage(self, device: Any = None) -> float:
        # VENDOR: torch.<device>.max_memory_allocated(device)
        memory = psutil.virtual_memory()
        return float(memory.total - memory.available)

    def is_pin_memory_available(self, device: Any = None) -> bool:
        return False  # VENDOR: True where host memory can be pinned for your device

    def get_default_attention_backend(self) -> str:
        return "torch_native"  # VENDOR: your attention backend

    def support_cuda_graph(self) -> bool:
        # VENDOR: True if SGLang can capture decode graphs on your device; then also return
        # your graph runner from get_graph_runner_cls().
        return False

    def support_piecewise_cuda_graph(self) -> bool:
        return False

    def apply_server_args_defaults(self, server_args: Any) -> None:
        super().apply_server_args_defaults(server_args)
        # No graph capture on this device, whatever was asked for. VENDOR: drop this line if
        # your device captures graphs.
        server_args.disable_cuda_graph = True
