"""The supported range and the untested-release opt-in (no SGLang needed: metadata only)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.version import Version

from sglang_fl.compat import versions
from sglang_fl.compat.versions import Support, check_version
from sglang_fl.errors import UnsupportedSGLangError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def installed(monkeypatch):
    def install(text: str) -> None:
        monkeypatch.setattr(versions, "sglang_version", lambda: Version(text))

    return install


@pytest.mark.parametrize("text", ["0.4.9", "0.5.14", "0.5.14.post3"])
def test_older_than_the_oldest_is_refused_naming_the_range(installed, text):
    installed(text)
    with pytest.raises(UnsupportedSGLangError) as info:
        check_version(allow_untested=True)  # the opt-in is for newer releases only
    message = str(info.value)
    assert f"sglang {text} is installed" in message
    assert ">=0.5.15, <=0.5.23" in message and "0.5.15, 0.5.21, 0.5.22, 0.5.23" in message


@pytest.mark.parametrize("text", ["0.5.24", "0.6.0", "1.0.0rc1"])
def test_newer_than_tested_is_refused_naming_the_opt_in(installed, text):
    installed(text)
    with pytest.raises(UnsupportedSGLangError) as info:
        check_version(allow_untested=False)
    message = str(info.value)
    assert f"sglang {text} is installed, newer than sglang-fl is tested with" in message
    assert ">=0.5.15, <=0.5.23" in message
    assert "SGLANG_FL_ALLOW_UNTESTED_SGLANG=1" in message
    assert "\n" not in message  # one line


def test_newer_than_tested_with_the_opt_in_is_untested(installed):
    installed("0.5.24")
    assert check_version(allow_untested=True) == (Version("0.5.24"), Support.UNTESTED)


@pytest.mark.parametrize(
    ("text", "support"),
    [
        ("0.5.15", Support.TESTED),
        ("0.5.23", Support.TESTED),
        ("0.5.21.post1", Support.TESTED),  # a post release of a tested one is that release
        ("0.5.18", Support.IN_RANGE),
        ("0.5.16rc0", Support.IN_RANGE),
    ],
)
def test_every_release_in_the_range_is_accepted(installed, text, support):
    installed(text)
    assert check_version(allow_untested=False) == (Version(text), support)


def test_the_tested_train_is_what_ci_installs_and_the_matrix_runs():
    requirements = ROOT / "ci" / "requirements"
    pinned = sorted(
        (p.name.removeprefix("sglang-").removesuffix("-runtime.txt")
         for p in requirements.glob("sglang-*-runtime.txt")),
        key=Version,
    )  # fmt: skip
    assert tuple(pinned) == versions.TESTED
    matrix = (ROOT / "ci" / "matrix.yml").read_text(encoding="utf-8")
    listed = re.search(r"^sglang_versions: \[(.*)\]$", matrix, re.MULTILINE)
    assert listed is not None
    assert tuple(v.strip().strip('"') for v in listed[1].split(",")) == versions.TESTED


def test_the_newest_tested_release_is_the_default_everywhere():
    newest = versions.TESTED[-1]
    install = (ROOT / "ci" / "install-env.sh").read_text(encoding="utf-8")
    assert f"SGLANG_VERSION=${{2:-{newest}}}" in install
    for bundle in ("cpu", "nvidia", "template"):
        dockerfile = (ROOT / "platforms" / bundle / "Dockerfile").read_text(encoding="utf-8")
        assert f"ARG SGLANG_VERSION={newest}\n" in dockerfile, bundle
