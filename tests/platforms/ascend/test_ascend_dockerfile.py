"""What is specific to the Ascend image's Dockerfile: the CANN base, torch_npu's pins, the
requirements in sync with the CPU pins, the NPU values of the shared tail.

Static checks only (no Docker engine): building the image needs the CANN base image, and
running it needs an NPU. What every image's Dockerfile must satisfy (hadolint, pinned build
args, the shared tail docker/dockerfile_tail.py generates: entry point, healthcheck, non-root
user, labels) is in tests/docker/test_dockerfiles.py; the stand-in build is
ci/image-standin.sh ascend.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).parents[3]
DOCKERFILE = ROOT / "platforms" / "ascend" / "Dockerfile"
_spec = importlib.util.spec_from_file_location("tail", ROOT / "docker" / "dockerfile_tail.py")
tail = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tail)
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


def test_the_shared_tail_carries_the_npu_values():
    """An NPU server loads a large model and compiles first: 600 s before failed health checks
    count; the user needs the driver's group, which the tail's comment says how to pass."""
    own, generated = tail.split(DOCKERFILE.read_text(encoding="utf-8"))
    assert re.search(r"^HEALTHCHECK .*--start-period=600s ", generated, flags=re.MULTILINE)
    assert "HwHiAiUser" in generated and "--group-add" in generated
    assert 'org.opencontainers.image.title="sglang-fl-ascend"' in generated
    assert 'sglang-fl.platform="ascend"' in generated
    # the Ascend steps are all above the tail, torch_npu's constraint file included
    assert "/etc/sglang-fl/constraints.txt" in own and "PIP_CONSTRAINT" in own
