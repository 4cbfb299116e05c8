"""Layer 3 set-up without SGLang: the torch backend per setting, server arguments, failing fast.

The hooks and real SGLang process groups are covered by ``test_sglang_hooks_sglang.py``; the
FlagCX torch.distributed backend across processes by ``test_flagcx_multirank.py``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from sglang_fl.config import Settings, load_settings
from sglang_fl.distributed import layer3
from sglang_fl.errors import FlagCXLibraryError


def _settings(**changes) -> Settings:
    return dataclasses.replace(load_settings(env={}), **changes)


def _server_args(**values) -> SimpleNamespace:
    defaults = {
        "disable_custom_all_reduce": False,
        "enforce_disable_flashinfer_allreduce_fusion": False,
        "enable_mscclpp": False,
        "enable_torch_symm_mem": False,
        "enable_symm_mem": False,
    }
    return SimpleNamespace(**{**defaults, **values})


@pytest.mark.parametrize("backend", ["nccl", "hccl", "gloo"])
def test_torch_backends_are_named_as_they_are(backend: str) -> None:
    assert layer3.torch_backend(_settings(dist_backend=backend), "cuda") == backend


def test_flagcx_without_a_library_fails_naming_flagcx_path(tmp_path: Path) -> None:
    settings = _settings(dist_backend="flagcx", flagcx_path=str(tmp_path))
    with pytest.raises(FlagCXLibraryError) as info:
        layer3.install(settings, "cpu")
    message = str(info.value)
    assert message.startswith(f"FLAGCX_PATH={tmp_path}: no libflagcx.so found (tried ")
    assert str(tmp_path / "lib" / "libflagcx.so") in message
    assert str(tmp_path / "build" / "lib" / "libflagcx.so") in message


def test_flagcx_with_flagcx_path_unset_says_what_to_set() -> None:
    with pytest.raises(FlagCXLibraryError, match="FLAGCX_PATH is not set"):
        layer3.install(_settings(dist_backend="flagcx", flagcx_path=None), "cpu")


def test_flagcx_forces_the_server_args_that_bypass_it(caplog) -> None:
    args = _server_args(enable_mscclpp=True)
    with caplog.at_level(logging.INFO, logger="sglang_fl.distributed.layer3"):
        layer3.apply_server_args(_settings(dist_backend="flagcx"), args)
    assert vars(args) == layer3.FLAGCX_SERVER_ARGS
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "sglang-fl: enable_mscclpp=True is overridden to False: with "
        "SGLANG_FL_DIST_BACKEND=flagcx all collectives run on FlagCX"
    ]
    assert "Layer 3 (flagcx): set disable_custom_all_reduce=True, " in caplog.text


@pytest.mark.parametrize("backend", ["nccl", "hccl", "gloo"])
def test_other_backends_leave_the_server_args_alone(backend: str) -> None:
    args = _server_args(enable_mscclpp=True)
    layer3.apply_server_args(_settings(dist_backend=backend), args)
    assert vars(args) == vars(_server_args(enable_mscclpp=True))
