"""What is specific to the template's Dockerfile (the checks every image shares, hadolint and
the shared tail docker/dockerfile_tail.py generates included, are
tests/docker/test_dockerfiles.py's): the bundle goes in as its own distribution and is selected,
since the template's device is the CPU and it never detects itself."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).parents[3]
DOCKERFILE = ROOT / "platforms" / "template" / "Dockerfile"
TEXT = DOCKERFILE.read_text(encoding="utf-8")
_spec = importlib.util.spec_from_file_location("tail", ROOT / "docker" / "dockerfile_tail.py")
tail = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tail)


def test_installs_the_bundle_as_its_own_distribution():
    assert re.search(r"pip install [^\n]*--no-deps /src /src/platforms/template", TEXT)
    assert "assert 'template' in discover_bundles()" in TEXT


def test_selects_the_template_platform():
    assert re.search(r"^ENV SGLANG_FL_PLATFORM=template$", TEXT, flags=re.MULTILINE)


def test_what_a_vendor_changes_is_above_the_shared_tail():
    """The VENDOR edit points (and the platform selection a vendor drops) are in the hand-written
    part: regenerating the tail never touches them."""
    own, generated = tail.split(TEXT)
    assert "ENV SGLANG_FL_PLATFORM=template" in own
    assert TEXT.count("VENDOR:") == own.count("VENDOR:") > 0
    assert re.search(r"^HEALTHCHECK .*--start-period=300s ", generated, flags=re.MULTILINE)
    assert 'sglang-fl.platform="template"' in generated
