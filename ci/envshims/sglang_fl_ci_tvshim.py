"""BUILD-ENVIRONMENT SHIM, NOT PART OF THE PRODUCT. Installed only by ci/install-env.sh and, when
built with TORCHVISION_SHIM=1, the CPU image (both through ci/envshims/install.sh).

Why: transformers (imported by SGLang) needs torchvision, and the only torchvision wheel on PyPI
for torch 2.13 (0.28.0) is CUDA-linked: on a CPU torch its native ops fail to load and
``import torchvision`` dies with "operator torchvision::nms does not exist". Real CPU users
install torchvision from PyTorch's CPU index and never need this.

What: an import hook, activated from a .pth file, that defines ``torchvision::nms`` and
``torchvision::qnms`` with a pure-PyTorch CPU implementation just before torchvision is
first imported. Python startup does not import torch because of it.
"""

from __future__ import annotations

import importlib.abc
import sys

_DONE = False


def _nms(boxes, scores, iou_threshold: float):
    import torch

    order = scores.argsort(descending=True)
    keep = []
    while order.numel():
        i = order[0]
        keep.append(i)
        if order.numel() == 1:
            break
        rest = boxes[order[1:]]
        lt = torch.maximum(boxes[i, :2], rest[:, :2])
        rb = torch.minimum(boxes[i, 2:], rest[:, 2:])
        inter = (rb - lt).clamp(min=0).prod(dim=1)
        area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
        iou = inter / (area(boxes[i]) + area(rest) - inter)
        order = order[1:][iou <= iou_threshold]
    return torch.stack(keep) if keep else torch.empty(0, dtype=torch.long)


def define_ops() -> None:
    global _DONE
    if _DONE:
        return
    _DONE = True
    import torch

    if hasattr(torch.ops.torchvision, "nms"):
        return
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    qnms = "qnms(Tensor dets, Tensor scores, float iou_threshold, float scale, int zero_point)"
    lib.define(qnms + " -> Tensor")
    lib.impl("nms", _nms, "CPU")
    sys.modules[__name__]._lib = lib  # keep the library alive


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname == "torchvision":
            sys.meta_path.remove(self)
            define_ops()
        return None


if not any(isinstance(f, _Finder) for f in sys.meta_path):
    sys.meta_path.insert(0, _Finder())
