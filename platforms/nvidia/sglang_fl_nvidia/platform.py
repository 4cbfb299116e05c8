"""SGLang platform class for the NVIDIA bundle.

An out-of-tree platform is how SGLang lets a plugin own the fused-op dispatch on CUDA (its
in-tree CUDA platform never consults the OOT registry), so this class reproduces what SGLang's
in-tree CUDA platform provides and changes only what sglang-fl is for:

- device identity and memory: SGLang's own ``CudaDeviceMixin`` (torch.cuda), unchanged;
- dispatch key ``cuda``: an op sglang-fl leaves alone runs SGLang's own ``forward_cuda``;
- decode CUDA graphs with SGLang's ``DecodeCudaGraphRunner`` (the class the in-tree platform
  uses); piecewise prefill graphs are off: SGLang runs fused ops through ``forward_native``
  under torch.compile, which would take them away from sglang-fl's dispatch;
- the distributed backend from sglang-fl's settings (NCCL by default, Layer 3);
- MHA KV pool and token/paged allocators: SGLang's defaults (shared ``FLPlatform`` factories).
"""

from __future__ import annotations

import importlib.util

import torch
from sglang.srt.platforms.cuda import CudaDeviceMixin

from sglang_fl import compat
from sglang_fl.platform_base import FLPlatform


class NvidiaPlatform(FLPlatform, CudaDeviceMixin):
    # FLPlatform first: the OOT identity, sglang-fl's dist backend and server-arg defaults win
    # over the mixin's in-tree values; the mixin supplies every torch.cuda device query.
    device_name = "cuda"
    device_type = "cuda"
    dispatch_key = "cuda"

    def get_device(self, local_rank: int | None = None) -> str:
        # SGLang splits the result on ":" in places; a string serves every caller.
        return "cuda" if local_rank is None else f"cuda:{local_rank}"

    def supports_fp8(self) -> bool:
        return True

    def support_cuda_graph(self) -> bool:
        return True

    def support_piecewise_cuda_graph(self) -> bool:
        return False

    def get_graph_runner_cls(self) -> type:
        return compat.decode_graph_runner_cls()

    def get_default_attention_backend(self) -> str:
        """What SGLang's CUDA rules pick for dense (MHA) models, as far as they do not depend
        on the model: FA3 on Hopper when its kernels are installed, else FlashInfer when
        available, else Triton."""
        major, _ = torch.cuda.get_device_capability()
        if major == 9 and importlib.util.find_spec("sgl_kernel.flash_ops") is not None:
            return "fa3"
        from sglang.srt.utils import is_flashinfer_available

        return "flashinfer" if is_flashinfer_available() else "triton"

    def get_mla_kv_pool_cls(self) -> type:
        raise NotImplementedError(
            "sglang-fl nvidia platform: MLA KV pools (DeepSeek-style attention) are not "
            "supported yet; serve such models without sglang-fl (SGLANG_PLUGINS=__none__)"
        )

    def get_dsa_kv_pool_cls(self) -> type:
        return self.get_mla_kv_pool_cls()
