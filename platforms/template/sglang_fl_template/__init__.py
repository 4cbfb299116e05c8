"""The template platform bundle: the skeleton a vendor copies to add an accelerator.

Copy ``platforms/template`` and rename ``template`` / ``sglang_fl_template`` /
``sglang-fl-template`` (docs/vendor-guide.md has the checklist), then fill in the places marked
``VENDOR:``:

  __init__.py    DEVICE_TYPE, VENDOR_MODULE and the bundle's fields
  backend.py     your kernels behind sglang-fl's op contracts
  platform.py    device identity, memory queries and SGLang defaults for your device
  template.yaml  your platform's selection defaults
  Dockerfile     the serving image on your vendor's base image

As shipped, the template's device is the CPU and its kernels are plain PyTorch, so it runs and
passes the conformance suite anywhere (``sglang-fl conformance --platform template``). The CPU
is never a torch accelerator, so the template never detects itself: installing it does not
take over a machine. Select it with ``SGLANG_FL_PLATFORM=template``.

The bundle contract: importing this module must not import the vendor stack (no
``import torch_npu`` here); detection imports it lazily, the backend and platform class on use.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from sglang_fl.bundles import PlatformBundle

# VENDOR: your torch device type, as in torch.device("npu"): "npu", "xpu", "mlu", "musa", ...
DEVICE_TYPE = "cpu"
# VENDOR: the module that registers your device with torch, e.g. "torch_npu" (None: in torch).
VENDOR_MODULE: str | None = None


def detect() -> bool:
    """Is the device present? Cheap, and False (not an error) when the vendor stack is absent.

    torch.accelerator reports whatever accelerator torch was given (CUDA, XPU, or a
    PrivateUse1 device such as torch_npu's ``npu``), once its module is imported.
    """
    if VENDOR_MODULE is not None:
        try:
            importlib.import_module(VENDOR_MODULE)
        except ImportError:
            return False
    import torch

    accelerator = torch.accelerator.current_accelerator()
    return accelerator is not None and accelerator.type == DEVICE_TYPE


BUNDLE = PlatformBundle(
    name="template",  # VENDOR: your platform's name (SGLANG_FL_PLATFORM, config provenance)
    aliases=(),  # VENDOR: other accepted names, e.g. ("npu",) for "ascend"
    vendor="template",  # VENDOR: the vendor backend's name: impl id vendor.<vendor>
    backend_factory="sglang_fl_template.backend:TemplateBackend",
    platform_class="sglang_fl_template.platform.TemplatePlatform",
    config_file=Path(__file__).with_name("template.yaml"),
    detect=detect,
    detect_priority=100,  # above the CPU fallback (-100) wherever detect() is true
    # VENDOR: when detect() is true, in words (`sglang-fl doctor` prints "detected: no (when ...)")
    probe="VENDOR_MODULE imports and torch.accelerator.current_accelerator().type is DEVICE_TYPE",
    # VENDOR: your collective library first (its default), e.g. ("hccl",) or ("nccl", "flagcx")
    dist_backends=("gloo",),
)
