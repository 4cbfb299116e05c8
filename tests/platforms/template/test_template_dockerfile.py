"""What is specific to the template's Dockerfile (the checks every image shares, hadolint
included, are tests/docker/test_dockerfiles.py's): the bundle goes in as its own distribution
and is selected, since the template's device is the CPU and it never detects itself."""

from __future__ import annotations

import re
from pathlib import Path

DOCKERFILE = Path(__file__).parents[3] / "platforms" / "template" / "Dockerfile"
TEXT = DOCKERFILE.read_text(encoding="utf-8")


def test_installs_the_bundle_as_its_own_distribution():
    assert re.search(r"pip install [^\n]*--no-deps /src /src/platforms/template", TEXT)
    assert "assert 'template' in discover_bundles()" in TEXT


def test_selects_the_template_platform():
    assert re.search(r"^ENV SGLANG_FL_PLATFORM=template$", TEXT, flags=re.MULTILINE)
