"""Shared fixtures. Tests that drive real SGLang carry the ``sglang`` marker and skip cleanly
when SGLang is not installed (e.g. the ``unit`` tox env); ``.ci/run`` fails the build if a
selected test was skipped for a dependency CI is supposed to have (see ci/check_skips.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

HAS_SGLANG = importlib.util.find_spec("sglang") is not None


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="missing dependency: sglang is not installed")
    for item in items:
        if "sglang" in item.keywords and not HAS_SGLANG:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def embedded_model(tmp_path_factory) -> Path:
    from sglang_fl.models.embedded import ensure_embedded_model

    return ensure_embedded_model()
