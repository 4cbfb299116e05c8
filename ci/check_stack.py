"""Before an accelerator cell's tests: is this the machine and stack the cell is for?

Without this check a GPU or NPU cell on a machine without the device would pass green, every
test skipped for "needs an NVIDIA GPU" (skips that are not missing dependencies are allowed),
and a cell on the wrong SGLang would test the wrong thing. It fails with one line saying what
is wrong, and otherwise prints what the cell runs on.

    python ci/check_stack.py --device cuda|npu [--min-devices N] --sglang VERSION

The versions come from ci/matrix.yml (the matrix check compares them with tox.ini).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from importlib.metadata import PackageNotFoundError, version

# Where a device type comes from when torch alone does not register it.
DEVICE_MODULES = {"cuda": None, "npu": "torch_npu"}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", required=True, choices=sorted(DEVICE_MODULES))
    parser.add_argument("--min-devices", type=int, default=1)
    parser.add_argument("--sglang", required=True, help="the SGLang version the cell pins")
    args = parser.parse_args(argv)
    problem = _problem(args.device, args.min_devices, args.sglang)
    if problem:
        print(f"ci/check_stack: {problem}", file=sys.stderr)
        return 1
    return 0


def _problem(device: str, min_devices: int, sglang: str) -> str | None:
    module = DEVICE_MODULES[device]
    if module is not None:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            return f"this cell runs on {device}, but {module} cannot be imported: {exc}"
    try:
        import torch
    except ImportError as exc:
        return (f"torch cannot be imported ({exc}): an accelerator cell takes its stack from the "
                "host or image (sitepackages, PYTHONPATH; see tox.ini)")  # fmt: skip

    accelerator = torch.accelerator.current_accelerator()
    found = accelerator.type if accelerator is not None else "no accelerator"
    if found != device:
        return f"this cell runs on {device} devices; torch {torch.__version__} sees {found}"
    count = torch.accelerator.device_count()
    if count < min_devices:
        return f"this cell needs {min_devices} {device} devices; {count} visible"
    try:
        installed = version("sglang")
    except PackageNotFoundError:
        installed = "none"
    if installed != sglang:
        return f"this cell tests SGLang {sglang} (ci/matrix.yml); installed: {installed}"
    print(f"ci/check_stack: {count} x {device}, torch {torch.__version__}, sglang {installed}")
    return None


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
