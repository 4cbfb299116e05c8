"""SGLang platform class of the template bundle: what SGLang asks the platform about its device.

``FLPlatform`` (sglang_fl/platform_base.py) supplies what every sglang-fl platform shares: the
out-of-tree identity, the distributed backend from the settings, the device process groups
bind to, SGLang's KV pools and paged allocator, inductor as the compile backend. A bundle adds
its device's identity, memory queries and SGLang defaults, with SGLang's hook names, and
declares what differs between SGLang releases in sglang-fl's ``fl_`` names (capabilities,
graph runner, KV pools): sglang-fl gives each release the hooks it reads. As shipped the device
is the CPU (psutil for memory); each ``VENDOR:`` comment says what the call becomes on an
accelerator, usually ``torch.<device>.<same name>`` (platforms/ascend/sglang_fl_ascend/
platform.py is a full example, with graph capture and the vendor's own KV pools).
``sglang-fl conformance`` checks the class against the installed SGLang's platform API.
"""

from __future__ import annotations

from typing import Any, ClassVar

import psutil
import torch

from sglang_fl.compat.platform_api import Capabilities
from sglang_fl.platform_base import FLPlatform
from sglang_fl_template import DEVICE_TYPE


class TemplatePlatform(FLPlatform):
    device_name = DEVICE_TYPE
    device_type = DEVICE_TYPE
    # Ops sglang-fl leaves alone run SGLang's own forward_<dispatch_key>: "native" is SGLang's
    # forward_native. VENDOR: your SGLang key if SGLang has one for your device (e.g. "npu");
    # never an in-tree key of another device.
    fl_dispatch_key = "native"
    # What the device can do. VENDOR: supports_triton=True if Triton kernels launch on it;
    # graph_capture=True if SGLang can capture decode graphs there (then return your graph
    # runner from fl_graph_runner_cls and drop disable_cuda_graph below); supports_fp8 etc.
    fl_capabilities = Capabilities()
    # SGLang server args defaulted where the user left them unset. VENDOR: your device, its
    # attention backend (e.g. "ascend", "flashinfer"), sampling backend, KV cache share.
    fl_server_arg_defaults: ClassVar[dict[str, Any]] = {
        "device": DEVICE_TYPE,
        "attention_backend": "torch_native",
        "sampling_backend": "pytorch",
        "mem_fraction_static": 0.05,  # of host memory, here: SGLang's GPU default takes most
    }
    # PyTorch routes for SGLang paths that launch Triton (or take a CUDA-only choice) where
    # SGLang does not know the device: sglang_fl/compat/torch_routes.py describes each, and
    # `sglang-fl conformance --zoo all` shows which architectures need which. As shipped the
    # device has no Triton, like the CPU platform. VENDOR: with Triton on your device, drop
    # final_logit_softcap; with an attention backend of your own, the two attention routes.
    fl_torch_routes: ClassVar[frozenset[str]] = frozenset({
        "final_logit_softcap",      # Gemma 2's final logit softcapping (a Triton kernel)
        "attention_logit_softcap",  # Gemma 2's attention softcap (torch_native ignores it)
        "mla_forward_method",       # DeepSeek MLA's prefill on torch_native
    })  # fmt: skip

    def get_device(self, local_rank: int | None = None) -> str:
        # A string (SGLang splits it on ":"). VENDOR: f"{DEVICE_TYPE}:{local_rank}" when given.
        return DEVICE_TYPE

    def set_device(self, device: Any) -> None:
        """VENDOR: torch.<device>.set_device(device)."""

    def get_device_name(self, device_id: int = 0) -> str:
        return DEVICE_TYPE  # VENDOR: torch.<device>.get_device_name(device_id)

    def get_device_uuid(self, device_id: int = 0) -> str:
        # VENDOR: str(torch.<device>.get_device_properties(device_id).uuid)
        return f"{DEVICE_TYPE}-{device_id}"

    def get_device_capability(self, device_id: int = 0) -> Any:
        return None  # VENDOR: a DeviceCapability(major, minor) where your device has one

    def get_device_total_memory(self, device_id: int = 0) -> int:
        # VENDOR: torch.<device>.get_device_properties(device_id).total_memory
        return int(psutil.virtual_memory().total)

    def get_current_memory_usage(self, device: Any = None) -> float:
        # VENDOR: torch.<device>.max_memory_allocated(device)
        memory = psutil.virtual_memory()
        return float(memory.total - memory.available)

    def get_available_memory(self, device_id: int = 0) -> tuple[int, int]:
        # VENDOR: torch.<device>.mem_get_info(device_id), i.e. (free, total)
        memory = psutil.virtual_memory()
        return int(memory.available), int(memory.total)

    def is_pin_memory_available(self, device: Any = None) -> bool:
        return False  # VENDOR: True where host memory can be pinned for your device

    def get_torch_profiler_activity_str(self) -> str:
        return "CPU"  # VENDOR: the torch.profiler.ProfilerActivity name of your device

    def get_torch_profiler_activity(self) -> Any:
        return torch.profiler.ProfilerActivity.CPU  # VENDOR: e.g. ProfilerActivity.PrivateUse1

    def get_default_attention_backend(self) -> str:
        return "torch_native"  # VENDOR: your attention backend

    def apply_server_args_defaults(self, server_args: Any) -> None:
        super().apply_server_args_defaults(server_args)
        # No graph capture on this device, whatever was asked for. VENDOR: drop this line if
        # your device captures graphs.
        server_args.disable_cuda_graph = True
