"""SGLang platform class for the Ascend bundle.

It mirrors SGLang's own in-tree NPU platform (``sglang.srt.platforms.npu``): the same device
identity and memory queries through ``torch.npu``, the ``ascend`` attention backend, its
capabilities (Triton through triton-ascend, decode graph capture with SGLang's
``NPUGraphRunner``), and SGLang's NPU KV pools and paged allocator
(``sglang.srt.hardware_backend.npu``, the same import paths on every supported release). As an
out-of-tree platform it adds sglang-fl's distributed backend choice (HCCL by default) and the
``npu`` dispatch key, so an op that sglang-fl leaves alone runs SGLang's own ``forward_npu``.

``torch.npu`` exists only once torch_npu is imported (torch's device-backend autoload normally
does it at ``import torch``); every query imports it first so the order never matters.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from sglang.srt.platforms.device_mixin import DeviceCapability

from sglang_fl.compat.platform_api import Capabilities, KVPoolKind
from sglang_fl.platform_base import FLPlatform


def _npu() -> Any:
    """``torch.npu``, after making sure torch_npu has registered it."""
    import torch_npu  # noqa: F401

    return torch.npu


class AscendPlatform(FLPlatform):
    device_name = "npu"
    device_type = "npu"
    fl_dispatch_key = "npu"
    # SGLang's in-tree NPU platform declares Triton (triton-ascend) and decode graph capture;
    # no piecewise prefill graphs, no PyNccl, no sgl_kernel HiCache kernels. FP8: SGLang's NPU
    # quantization backends (hardware_backend/npu/quantization).
    fl_capabilities = Capabilities(supports_triton=True, graph_capture=True, supports_fp8=True)
    # SGLang's own NPU defaults (hardware_backend/npu/utils.set_default_server_args), applied
    # only where the user left an argument unset.
    fl_server_arg_defaults: ClassVar[dict[str, Any]] = {
        "device": "npu",
        "attention_backend": "ascend",
        "page_size": 128,
    }

    # ------------------------------------------------------------------ identity and memory

    def get_device(self, local_rank: int | None = None) -> str:
        # A string, as SGLang's utils.get_device() returns for every device ("npu:0").
        return "npu" if local_rank is None else f"npu:{local_rank}"

    def set_device(self, device: Any) -> None:
        _npu().set_device(device)

    def get_device_name(self, device_id: int = 0) -> str:
        return str(_npu().get_device_name(device_id))

    def get_device_uuid(self, device_id: int = 0) -> str:
        return str(_npu().get_device_properties(device_id).uuid)

    def get_device_capability(self, device_id: int = 0) -> DeviceCapability:
        # torch_npu's get_device_capability is a CUDA-compatibility setting, not the hardware;
        # SGLang's in-tree NPU platform reports (0, 0) for the same reason.
        return DeviceCapability(0, 0)

    def get_device_total_memory(self, device_id: int = 0) -> int:
        return int(_npu().get_device_properties(device_id).total_memory)

    def get_current_memory_usage(self, device: Any = None) -> float:
        return float(_npu().max_memory_allocated(device))

    def get_available_memory(self, device_id: int = 0) -> tuple[int, int]:
        """(free, total) bytes of the device, from the driver."""
        free, total = _npu().mem_get_info(device_id)
        return int(free), int(total)

    def empty_cache(self) -> None:
        _npu().empty_cache()

    def synchronize(self) -> None:
        _npu().synchronize()

    def is_pin_memory_available(self, device: Any = None) -> bool:
        return not (device is not None and str(device) == "cpu")

    @classmethod
    def seed_everything(cls, seed: int | None = None) -> None:
        if seed is not None:
            super().seed_everything(seed)
            _npu().manual_seed_all(seed)

    def get_torch_profiler_activity_str(self) -> str:
        # Users pass "GPU" as on SGLang's NPU platform (it maps to torch_npu's NPU activity);
        # "NPU" names it directly.
        return "NPU"

    def get_torch_profiler_activity(self) -> Any:
        import torch_npu

        return torch_npu.profiler.ProfilerActivity.NPU

    # ------------------------------------------------------------------ backends and graphs

    def get_default_attention_backend(self) -> str:
        return "ascend"

    def fl_graph_runner_cls(self) -> type:
        from sglang.srt.hardware_backend.npu.graph_runner.npu_graph_runner import NPUGraphRunner

        return NPUGraphRunner

    def get_compile_backend(self, mode: str | None = None) -> Any:
        """torchair's NPU backend, configured exactly as SGLang configures it for NPU
        (``mode="npugraph_ex"`` is what ``NPUGraphRunner`` asks for)."""
        try:
            import torchair
            import torchair.ge_concrete_graph.ge_converter.experimental.patch_for_hcom_allreduce
            from torchair.configs.compiler_config import CompilerConfig
        except ImportError as exc:
            raise ImportError(
                "sglang-fl ascend platform: torch.compile on NPU needs torchair, which cannot "
                f"be imported ({exc}); install the torchair matching torch_npu"
            ) from exc
        config = CompilerConfig()
        config.mode = "max-autotune"
        if mode == "npugraph_ex":
            config.mode = "reduce-overhead"
            config.debug.run_eagerly = True
        return torchair.get_npu_backend(compiler_config=config)

    # ------------------------------------------------------------------ KV cache

    def fl_kv_pool_cls(self, kind: KVPoolKind) -> type:
        from sglang.srt.hardware_backend.npu.memory_pool_npu import (
            NPUMHATokenToKVPool,
            NPUMLATokenToKVPool,
        )

        if kind == "dsa":
            # SGLang builds the NPU DSA pool with arch-specific layout choices that its
            # out-of-tree pool interface does not pass through; claiming support would be a
            # guess.
            raise NotImplementedError(
                "sglang-fl ascend platform: DeepSeek sparse-attention (DSA) KV pools are not "
                "supported; serve such models with SGLang's in-tree NPU platform "
                "(SGLANG_PLUGINS=__none__)"
            )
        return NPUMHATokenToKVPool if kind == "mha" else NPUMLATokenToKVPool

    def fl_paged_allocator_cls(self) -> type:
        # SGLang calls it as cls(size, page_size=, dtype=, device=, kvcache=, need_sort=).
        from sglang.srt.hardware_backend.npu.allocator_npu import NPUPagedTokenToKVPoolAllocator

        return NPUPagedTokenToKVPoolAllocator

    # ------------------------------------------------------------------ lifecycle

    def apply_server_args_defaults(self, server_args: Any) -> None:
        super().apply_server_args_defaults(server_args)
        # NPU has no custom all-reduce kernel; SGLang forces this off on NPU too.
        server_args.disable_custom_all_reduce = True

    def init_backend(self) -> None:
        """SGLang's model runner calls this only when its own ``is_npu()`` was False at import
        (with an NPU it runs its ``init_npu_backend`` instead). On this platform that is an
        error worth one clear message: either no NPU is visible, or torch_npu was not loaded
        when SGLang started, which leaves all of SGLang's NPU code paths switched off."""
        npu = _npu()
        if not npu.is_available():
            raise RuntimeError(
                "sglang-fl ascend platform is active but no NPU is visible "
                "(torch.npu.is_available() is False); check the driver mounts and "
                "ASCEND_RT_VISIBLE_DEVICES, or unset SGLANG_FL_PLATFORM"
            )
        raise RuntimeError(
            "sglang-fl ascend platform: torch_npu was not loaded when SGLang was imported, so "
            "SGLang's NPU code paths are off; leave TORCH_DEVICE_BACKEND_AUTOLOAD unset (torch "
            "then loads torch_npu at `import torch`)"
        )
