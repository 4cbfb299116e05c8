"""Build-time check that an image's base carries the serving stack the image is pinned to.

The NVIDIA image adds FlagGems and sglang-fl to a base that already has SGLang and its CUDA stack
(SGLang's own runtime image). A base with another SGLang, or without that stack, would build
fine and fail only when serving; this check stops the build instead, saying what is wrong.

    python3 check_base.py --sglang 0.5.21 [--cuda]

--cuda: torch must be a CUDA build and sgl_kernel and flashinfer must be installed (their
presence only: importing them needs a GPU). Stand-in builds without the CUDA stack leave it off.
Exit status 1 with one line per problem.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

CUDA_MODULES = ("sgl_kernel", "flashinfer")


def sglang_problems(pinned: str) -> list[str]:
    try:
        found = version("sglang")
    except PackageNotFoundError:
        return [f"SGLang is not installed; this image is pinned to SGLANG_VERSION={pinned}"]
    if found != pinned:
        return [
            f"the base has SGLang {found}, this image is pinned to SGLANG_VERSION={pinned}:"
            " set BASE_IMAGE and SGLANG_VERSION together"
        ]
    return []


def cuda_problems() -> list[str]:
    missing = [m for m in CUDA_MODULES if importlib.util.find_spec(m) is None]
    problems = [f"{m} is not installed" for m in missing]
    if importlib.util.find_spec("torch") is None:
        return ["torch is not installed", *problems]
    import torch

    if torch.version.cuda is None:
        problems.insert(0, f"torch {torch.__version__} is not a CUDA build")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sglang", required=True, metavar="VERSION", help="the pinned SGLang")
    parser.add_argument("--cuda", action="store_true", help="also require the CUDA stack")
    args = parser.parse_args(argv)
    problems = sglang_problems(args.sglang) + (cuda_problems() if args.cuda else [])
    for problem in problems:
        print(f"base image check: {problem}", file=sys.stderr)
    if not problems:
        print(f"base image check: SGLang {args.sglang}" + (" with the CUDA stack" * args.cuda))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
