"""Fixtures of the FlagCX tests: the double's controls, the binding on it, a gloo group."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch.distributed as dist
from flagcx_double import Double

from sglang_fl.distributed.flagcx import FlagCXLibrary, load_library


@pytest.fixture
def double(flagcx_double_root: Path) -> Iterator[Double]:
    controls = Double(flagcx_double_root / "lib" / "libflagcx.so")
    controls.reset()
    yield controls
    controls.reset()


@pytest.fixture
def lib(double: Double, flagcx_double_root: Path) -> FlagCXLibrary:
    return load_library(str(flagcx_double_root))


@pytest.fixture
def gloo() -> Iterator[object]:
    """A real world-size-1 gloo group: it carries the unique id, as in production."""
    assert not dist.is_initialized()
    dist.init_process_group("gloo", rank=0, world_size=1, store=dist.HashStore())
    yield dist.group.WORLD
    dist.destroy_process_group()
