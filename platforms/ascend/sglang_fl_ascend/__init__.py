"""The Ascend platform bundle: Huawei Ascend NPUs through torch_npu, HCCL and CANN.

Importing this module imports neither torch_npu nor SGLang (the bundle contract): hardware
probing happens in :func:`detect`, the vendor stack is imported only by the backend and the
platform class, when they are used.
"""

from __future__ import annotations

from pathlib import Path

from sglang_fl.bundles import PlatformBundle


def detect() -> bool:
    """Is an Ascend NPU usable here? ``torch.npu`` exists only after ``import torch_npu``.

    Probing ``torch.npu`` without importing torch_npu first (what the earlier plugin did) is
    always False on a stock torch, so the import comes first. A missing torch_npu means "no";
    a torch_npu that is installed but broken raises, and detection reports it.
    """
    try:
        import torch_npu  # noqa: F401
    except ImportError:
        return False
    import torch

    npu = getattr(torch, "npu", None)
    return bool(npu is not None and npu.is_available())


BUNDLE = PlatformBundle(
    name="ascend",
    aliases=("npu",),
    vendor="ascend",
    backend_factory="sglang_fl_ascend.backend:AscendBackend",
    dist_backends=("hccl", "flagcx"),
    platform_class="sglang_fl_ascend.platform.AscendPlatform",
    config_file=Path(__file__).with_name("ascend.yaml"),
    detect=detect,
    detect_priority=100,
    probe="torch_npu imports and torch.npu.is_available()",
)
