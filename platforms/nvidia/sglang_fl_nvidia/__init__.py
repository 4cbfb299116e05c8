"""The NVIDIA platform bundle: SGLang on NVIDIA GPUs with FlagOS kernels, sgl_kernel as the vendor.

Importing this module imports neither SGLang nor sgl_kernel (the bundle contract). Detection
asks torch whether a CUDA (not ROCm) device is visible; the vendor backend imports sgl_kernel
only when a policy needs it.
"""

from __future__ import annotations

from pathlib import Path

from sglang_fl.bundles import PlatformBundle


def detect() -> bool:
    """A CUDA build of torch that sees an NVIDIA GPU (ROCm builds also answer torch.cuda)."""
    import torch

    return torch.version.cuda is not None and torch.cuda.is_available()


BUNDLE = PlatformBundle(
    name="nvidia",
    aliases=("cuda",),
    vendor="nvidia",
    backend_factory="sglang_fl_nvidia.backend:NvidiaBackend",
    dist_backends=("nccl", "flagcx"),
    platform_class="sglang_fl_nvidia.platform.NvidiaPlatform",
    config_file=Path(__file__).with_name("nvidia.yaml"),
    detect=detect,
    detect_priority=100,
    probe="torch is a CUDA build (torch.version.cuda) and sees a GPU (torch.cuda.is_available())",
)
