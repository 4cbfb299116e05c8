"""SGLang platform class for the NVIDIA bundle.

An out-of-tree platform is how SGLang lets a plugin own the fused-op dispatch on CUDA (its
in-tree CUDA platform never consults the OOT registry), so this class reproduces what SGLang's
in-tree CUDA platform provides and changes only what sglang-fl is for:

- device identity and memory: SGLang's own ``CudaDeviceMixin`` (torch.cuda), unchanged;
- dispatch key ``cuda``: an op sglang-fl leaves alone runs SGLang's own ``forward_cuda``;
- the capabilities of SGLang's in-tree CUDA platform (Triton, PyNccl, sgl_kernel's HiCache
  kernels, FP8), and decode CUDA graphs with SGLang's ``DecodeCudaGraphRunner`` (the class
  the in-tree platform uses) on every release: 0.5.22+ reads them from the capability struct,
  where a missing ``graph_capture`` would silently turn decode graphs off. Piecewise prefill
  graphs are off: SGLang runs fused ops through ``forward_native`` under torch.compile, which
  would take them away from sglang-fl's dispatch;
- the distributed backend from sglang-fl's settings (NCCL by default, Layer 3);
- MHA KV pool and token/paged allocators: SGLang's own; MLA/DSA pools are refused.
"""

from __future__ import annotations

import importlib.util

import torch
from sglang.srt.platforms.cuda import CudaDeviceMixin

from sglang_fl.compat.platform_api import Capabilities, KVPoolKind, cuda_decode_graph_runner_cls
from sglang_fl.platform_base import FLPlatform


class NvidiaPlatform(FLPlatform, CudaDeviceMixin):
    # FLPlatform first: the OOT identity, sglang-fl's dist backend and server-arg defaults win
    # over the mixin's in-tree values; the mixin supplies every torch.cuda device query.
    device_name = "cuda"
    device_type = "cuda"
    fl_dispatch_key = "cuda"
    fl_capabilities = Capabilities(
        supports_triton=True,
        graph_capture=True,
        piecewise_graph=False,
        hicache_device_kernels=True,
        supports_pynccl=True,  # FlagCX switches it off per group (Layer 3's hook)
        supports_fp8=True,
    )

    def get_device(self, local_rank: int | None = None) -> str:
        # SGLang splits the result on ":" in places; a string serves every caller.
        return "cuda" if local_rank is None else f"cuda:{local_rank}"

    def get_torch_profiler_activity_str(self) -> str:
        return "CUDA"

    def get_torch_profiler_activity(self) -> torch.profiler.ProfilerActivity:
        return torch.profiler.ProfilerActivity.CUDA

    def fl_graph_runner_cls(self) -> type:
        return cuda_decode_graph_runner_cls()

    def get_default_attention_backend(self) -> str:
        """What SGLang's CUDA rules pick for dense (MHA) models, as far as they do not depend
        on the model: FA3 on Hopper when its kernels are installed, else FlashInfer when
        available, else Triton."""
        major, _ = torch.cuda.get_device_capability()
        if major == 9 and importlib.util.find_spec("sgl_kernel.flash_ops") is not None:
            return "fa3"
        from sglang.srt.utils import is_flashinfer_available

        return "flashinfer" if is_flashinfer_available() else "triton"

    def fl_kv_pool_cls(self, kind: KVPoolKind) -> type | None:
        if kind == "mha":
            return None  # SGLang's own
        raise NotImplementedError(
            f"sglang-fl nvidia platform: {kind.upper()} KV pools (DeepSeek-style attention) "
            "are not supported yet; serve such models without sglang-fl "
            "(SGLANG_PLUGINS=__none__)"
        )
