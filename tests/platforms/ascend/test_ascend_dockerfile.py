"""What is specific to the Ascend image's Dockerfile: the CANN base, torch_npu's pins, the
requirements in sync with the CPU pins.

Static checks only (no Docker engine): building the image needs the CANN base image, and
running it needs an NPU. What every image's Dockerfile must satisfy (hadolint, pinned build
args, shared entry point and healthcheck, non-root user, labels) is in
tests/docker/test_dockerfiles.py; the stand-in build is ci/image-standin.sh ascend.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[3]
DOCKERFILE = ROOT / "platforms" / "ascend" / "Dockerfile"
VERSION_ARGS = ("TORCH_VERSION", "TORCH_NPU_VERSION", "SGLANG_VERSION", "FLAGGEMS_VERSION",
                "TRITON_ASCEND_VERSION", "XGRAMMAR_VERSION")  # fmt: skip


def build_args() -> dict[str, str]:
    found = re.findall(r"^ARG (\w+)(?:=(.*))?$", DOCKERFILE.read_text(), flags=re.MULTILINE)
    return {name: value.strip('"') for name, value in found if value}


def requirements(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


def test_cann_base_and_the_torch_npu_stack_are_pinned():
    args = build_args()
    for name in VERSION_ARGS:
        assert re.fullmatch(r"\d+(\.\d+)+(\.post\d+)?", args.get(name, "")), (name, args.get(name))
    assert re.fullmatch(r"quay\.io/ascend/cann:[\w.-]+", args["BASE_IMAGE"]), args["BASE_IMAGE"]
    assert args["TORCH_NPU_VERSION"] == args["TORCH_VERSION"]  # torch_npu requires exactly it


def test_sglang_goes_in_without_its_dependency_metadata():
    text = DOCKERFILE.read_text()
    assert re.search(r"--no-deps[^\n]*\\\n\s+\"sglang==\$\{SGLANG_VERSION\}\"", text)


def test_image_requirements_are_the_cpu_pins_without_triton():
    release = build_args()["SGLANG_VERSION"]
    cpu = requirements(ROOT / "ci" / "requirements" / f"sglang-{release}-runtime.txt")
    npu = requirements(ROOT / "platforms" / "ascend" / "requirements-npu.txt")
    assert npu == [line for line in cpu if not line.startswith("triton==")]
