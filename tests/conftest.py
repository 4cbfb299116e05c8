"""Shared fixtures and the rules for tests that need SGLang.

Tests that drive real SGLang carry the ``sglang`` marker. Modules that import SGLang at module
level live under ``tests/integration/`` or are named ``*_sglang.py``: when the run deselects
``sglang`` (``-m "not sglang"``, the ``unit`` tox env) and SGLang is absent, they are not
collected at all. In any other run a missing SGLang is reported as a skip for a "missing
dependency", which ``ci/run_pytest.py`` turns into a failure.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

HAS_SGLANG = importlib.util.find_spec("sglang") is not None


def _needs_sglang_module(path: Path) -> bool:
    return "integration" in path.parts or path.name.endswith("_sglang.py")


def pytest_ignore_collect(collection_path: Path, config) -> bool | None:
    deselected = "not sglang" in (config.option.markexpr or "")
    if deselected and not HAS_SGLANG and _needs_sglang_module(collection_path):
        return True
    return None


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="missing dependency: sglang is not installed")
    for item in items:
        if "sglang" in item.keywords and not HAS_SGLANG:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def embedded_model(tmp_path_factory) -> Path:
    from sglang_fl.models.embedded import ensure_embedded_model

    return ensure_embedded_model()


@pytest.fixture(scope="session")
def c_compiler() -> str:
    from flagcx_double import find_compiler

    found = find_compiler()
    if found is None:
        pytest.skip("missing dependency: cc (a C compiler builds the FlagCX test double)")
    return found


@pytest.fixture(scope="session")
def flagcx_double_root(c_compiler: str, tmp_path_factory) -> Path:
    """A directory laid out like a FlagCX install (``lib/libflagcx.so``) holding the double."""
    from flagcx_double import build

    root = tmp_path_factory.mktemp("flagcx-double")
    build(c_compiler, root)
    return root
