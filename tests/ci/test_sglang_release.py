"""ci/sglang_release.py, the release-bump tool, on fixtures: the wheel metadata of the tested
releases (trimmed to the headers the tool reads, tests/ci/fixtures/) and a made-up 0.5.24."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import sglang_release
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures"
REQUIREMENTS = ROOT / "ci" / "requirements"
TESTED = ("0.5.15", "0.5.21", "0.5.22", "0.5.23")

# A next release as SGLang would ship it: new transformers pin, a raised uvicorn floor that
# the fallback pin still meets, and a new dependency the CPU-serving set does not include.
NEXT = (FIXTURES / "sglang-0.5.23.METADATA").read_text(encoding="utf-8").replace(
    "Version: 0.5.23", "Version: 0.5.24"
).replace("transformers==5.19.0", "transformers==5.20.1").replace(
    "uvicorn>=0.51", "uvicorn>=0.53"
) + "Requires-Dist: cuda-bindings==13.1.0\n"


@pytest.fixture
def requirements(tmp_path: Path) -> Path:
    """A copy of ci/requirements/ the tool may write into."""
    folder = tmp_path / "requirements"
    shutil.copytree(REQUIREMENTS, folder)
    return folder


def lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if not line.startswith("#")]


@pytest.mark.parametrize("version", TESTED)
def test_the_committed_pins_are_what_the_tool_derives(version, requirements):
    metadata = FIXTURES / f"sglang-{version}.METADATA"
    args = [version, "--metadata", str(metadata), "--pin-only", "--requirements", str(requirements)]
    assert sglang_release.main(args) == 0
    for name in (f"sglang-{version}.txt", f"sglang-{version}-runtime.txt"):
        assert (requirements / name).read_text() == (REQUIREMENTS / name).read_text(), name


def test_a_new_release_takes_its_own_pins_and_the_fallbacks_for_the_rest(requirements, capsys):
    metadata = requirements.parent / "METADATA"
    metadata.write_text(NEXT)
    args = [
        "0.5.24",
        "--metadata",
        str(metadata),
        "--pin-only",
        "--requirements",
        str(requirements),
    ]
    assert sglang_release.main(args) == 0
    assert lines(requirements / "sglang-0.5.24.txt") == ["sglang==0.5.24", "xgrammar==0.2.7"]
    runtime = lines(requirements / "sglang-0.5.24-runtime.txt")
    assert "transformers==5.20.1" in runtime  # the release's own pin
    assert "uvicorn==0.54.0" in runtime  # the fallback, which meets >=0.53
    assert "tokenizers==0.23.2" in runtime and "openai==2.8.0" in runtime
    assert not any(line.startswith(("cuda-bindings", "torch", "sglang")) for line in runtime)
    header = (requirements / "sglang-0.5.24-runtime.txt").read_text()
    assert "SGLang requires\n# torch==2.14.1; the CPU environments run" in header
    assert "sglang-0.5.24-runtime.txt" in capsys.readouterr().out


def test_a_fallback_the_release_excludes_is_named(requirements, capsys):
    metadata = requirements.parent / "METADATA"
    metadata.write_text(NEXT.replace("uvicorn>=0.53", "uvicorn>=0.60"))
    args = [
        "0.5.24",
        "--metadata",
        str(metadata),
        "--pin-only",
        "--requirements",
        str(requirements),
    ]
    assert sglang_release.main(args) == 1
    assert capsys.readouterr().err == (
        "ci/sglang_release.py: sglang 0.5.24 requires uvicorn>=0.60; the fallback pin "
        "uvicorn==0.54.0 of ci/requirements/cpu-serving.txt does not satisfy it: update it "
        "there\n"
    )
    assert not (requirements / "sglang-0.5.24-runtime.txt").exists()


def test_metadata_of_another_release_is_refused(requirements, capsys):
    args = ["0.5.24", "--metadata", str(FIXTURES / "sglang-0.5.23.METADATA"), "--pin-only",
            "--requirements", str(requirements)]  # fmt: skip
    assert sglang_release.main(args) == 1
    assert "the metadata is sglang 0.5.23's, not 0.5.24's" in capsys.readouterr().err


def test_markers_are_evaluated_for_the_cpu_target():
    requirements = sglang_release.release_requirements(NEXT, Version("0.5.24"))
    assert "decord2" not in requirements  # aarch64 only
    assert "torchcodec" in requirements  # x86-64 Linux


def test_a_bad_version_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        sglang_release.main(["next"])
    assert info.value.code == 2
    assert "not a version: 'next'" in capsys.readouterr().err
