"""The CPU-reference platform bundle: real SGLang serving on a plain CPU, PyTorch ops only.

No sgl_kernel, no flashinfer: torch_native attention, pytorch sampling, gloo, no graphs.
It detects everywhere but with the lowest priority, so any accelerator bundle wins over it.
"""

from pathlib import Path

from sglang_fl.bundles import PlatformBundle


def _always() -> bool:
    return True


BUNDLE = PlatformBundle(
    name="cpu",
    platform_class="sglang_fl_cpu.platform.CpuPlatform",
    config_file=Path(__file__).with_name("cpu.yaml"),
    detect=_always,
    detect_priority=-100,
    dist_backends=("gloo",),
)
