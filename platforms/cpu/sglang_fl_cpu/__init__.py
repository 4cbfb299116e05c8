"""The CPU-reference platform bundle: real SGLang serving on a plain CPU, PyTorch ops only.

No sgl_kernel, no flashinfer: torch_native attention, pytorch sampling, gloo, no graphs.
It detects only where torch sees no accelerator at all, so it never takes over a GPU or NPU
host (where the accelerator's own bundle, or SGLang's in-tree platform, belongs); forcing it
with ``SGLANG_FL_PLATFORM=cpu`` still works anywhere.
"""

from pathlib import Path

from sglang_fl.bundles import PlatformBundle


def _no_accelerator() -> bool:
    import torch

    return not torch.accelerator.is_available()


BUNDLE = PlatformBundle(
    name="cpu",
    platform_class="sglang_fl_cpu.platform.CpuPlatform",
    config_file=Path(__file__).with_name("cpu.yaml"),
    detect=_no_accelerator,
    detect_priority=-100,
    probe="torch sees no accelerator (torch.accelerator.is_available() is False)",
    dist_backends=("gloo",),
)
