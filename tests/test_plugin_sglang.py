"""``sglang_fl.plugin``'s SGLang entry points: the settings they read, once per process, and
when they leave sglang-fl inactive.

Each test runs on a clean process environment (no sglang-fl variable) with a fresh
``get_settings()`` cache, and makes a ``cpu`` bundle with a test-double ``detect`` the only
installed one. The entry points check the installed SGLang's release first, so these tests
need SGLang.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterator

import pytest

import sglang_fl.bundles as bundles_mod
import sglang_fl.config.settings as settings_mod
from sglang_fl import plugin
from sglang_fl.config import get_settings

pytestmark = pytest.mark.sglang

REAL_CPU = bundles_mod.discover_bundles()["cpu"]
OURS = ("SGLANG_FL_", "SGLANG_FLAGGEMS_", "USE_FLAGGEMS", "FLAGCX_PATH")


@pytest.fixture
def detect(monkeypatch) -> Iterator[Callable[[Callable[[], bool]], None]]:
    """``detect(probe)``: the only installed bundle is ``cpu``, detecting with ``probe``."""
    for name in [n for n in os.environ if n.startswith(OURS)]:
        monkeypatch.delenv(name)
    get_settings.cache_clear()

    def install(probe: Callable[[], bool]) -> None:
        cpu = dataclasses.replace(REAL_CPU, detect=probe)
        for module in (settings_mod, bundles_mod):  # wherever a caller might look them up
            monkeypatch.setattr(module, "discover_bundles", lambda: {"cpu": cpu})

    yield install
    get_settings.cache_clear()


def test_the_platform_is_detected_once_per_process(detect):
    calls: list[int] = []
    detect(lambda: not calls.append(1))
    assert plugin.activate_platform() == REAL_CPU.platform_class
    assert plugin.activate_platform() == REAL_CPU.platform_class
    assert get_settings().platform == "cpu"
    assert get_settings().sources["platform"] == "default"
    assert len(calls) == 1


def test_a_forced_platform_applies_without_detection(detect, monkeypatch):
    detect(lambda: False)
    monkeypatch.setenv("SGLANG_FL_PLATFORM", "cpu")
    assert plugin.activate_platform() == REAL_CPU.platform_class
    assert get_settings().sources["platform"] == "env:SGLANG_FL_PLATFORM"


def test_inactive_where_no_bundle_applies_and_nothing_else_is_judged(detect, monkeypatch, caplog):
    detect(lambda: False)
    monkeypatch.setenv("SGLANG_FL_PREFER", "fastest")
    monkeypatch.setenv("SGLANG_FL_PREFFER", "typo")
    monkeypatch.setattr(plugin, "_loaded_pid", None)
    assert plugin.activate_platform() is None
    with caplog.at_level(logging.WARNING, logger=plugin.__name__):
        plugin.load_plugin()
    assert "sglang-fl inactive: no installed platform bundle matches this machine" in caplog.text


def test_a_bad_setting_ends_the_process_with_one_line(detect, monkeypatch, capsys):
    detect(lambda: True)
    monkeypatch.setenv("SGLANG_FLAGGEMS_RECORDS", "1")
    with pytest.raises(SystemExit) as info:
        plugin.activate_platform()
    assert info.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "sglang-fl: SGLANG_FLAGGEMS_RECORDS: invalid value '1' (unknown sglang-fl variable); "
        "accepted: known variables: SGLANG_FLAGGEMS_LOG_ONCE, SGLANG_FLAGGEMS_LOG_PATH, "
        "SGLANG_FLAGGEMS_RECORD"
    ]
