"""docker/check_base.py, the NVIDIA image's build-time check of its base, run in this very
environment (whatever SGLang and torch it has) and compared with what importlib reports."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "docker" / "check_base.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)


def installed_sglang() -> str | None:
    try:
        return version("sglang")
    except PackageNotFoundError:
        return None


def test_the_pinned_sglang_must_be_the_installed_one():
    found = installed_sglang()
    result = run("--sglang", "0.0.1")
    assert result.returncode == 1
    if found is None:
        expected = "SGLang is not installed; this image is pinned to SGLANG_VERSION=0.0.1"
    else:
        expected = (
            f"the base has SGLang {found}, this image is pinned to SGLANG_VERSION=0.0.1:"
            " set BASE_IMAGE and SGLANG_VERSION together"
        )
    assert f"base image check: {expected}\n" in result.stderr, result.stderr
    if found is not None:
        ok = run("--sglang", found)
        assert (ok.returncode, ok.stdout) == (0, f"base image check: SGLang {found}\n")


def test_the_cuda_stack_check_names_each_missing_piece():
    """On a CPU machine every CUDA piece is missing, and each is named on its own line."""
    expected = [f"{m} is not installed" for m in ("sgl_kernel", "flashinfer")
                if importlib.util.find_spec(m) is None]  # fmt: skip
    if importlib.util.find_spec("torch") is None:
        expected.insert(0, "torch is not installed")
    else:
        import torch

        if torch.version.cuda is None:
            expected.insert(0, f"torch {torch.__version__} is not a CUDA build")
    pinned = installed_sglang()
    result = run("--sglang", pinned or "0.5.21", "--cuda")
    prefix = "base image check: "  # (torch may print warnings of its own on stderr)
    lines = [ln.removeprefix(prefix) for ln in result.stderr.splitlines() if ln.startswith(prefix)]
    if pinned is None:
        lines = lines[1:]  # SGLang missing comes first
    assert lines == expected
    assert result.returncode == (1 if expected or pinned is None else 0)
