"""Layer 1's replacement log: ATen-only, appended by every process, once per op when asked.

Real ``logging`` records on FlagGems' logger names (FlagGems itself cannot load on a plain CPU,
so records are emitted the way its ops emit them: ``logging.getLogger(__name__).debug``).
"""

from __future__ import annotations

import logging
import multiprocessing
from pathlib import Path

import pytest

from sglang_fl import aten
from sglang_fl.config import load_settings


@pytest.fixture
def gems_logger():
    logger = logging.getLogger(aten.FLAGGEMS_LOGGER)
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield logger
    for handler in logger.handlers:
        if handler not in saved[0]:
            handler.close()
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


def _emit(name: str, message: str) -> None:
    logging.getLogger(name).debug(message)


def test_only_aten_replacements_are_recorded(tmp_path, gems_logger):
    path = tmp_path / "gems_aten.txt"
    aten.attach_record_handler(path, once=False)
    _emit("flag_gems.ops.mul", "GEMS MUL")
    _emit("flag_gems.fused.fused_add_rms_norm", "GEMS FUSED_ADD_RMS_NORM")  # FlagGems-internal
    _emit("flag_gems.modules.normalization", "GEMS RMS FORWARD")
    _emit("flag_gems.ops.softmax", "GEMS SOFTMAX")
    lines = path.read_text().splitlines()
    assert lines == [
        "[DEBUG] flag_gems.ops.mul._emit: GEMS MUL",
        "[DEBUG] flag_gems.ops.softmax._emit: GEMS SOFTMAX",
    ]


def test_log_once_keeps_one_line_per_op_site(tmp_path, gems_logger):
    path = tmp_path / "once.txt"
    aten.attach_record_handler(path, once=True)
    for _ in range(3):
        _emit("flag_gems.ops.mul", "GEMS MUL")
        _emit("flag_gems.ops.add", "GEMS ADD")
    assert len(path.read_text().splitlines()) == 2


def test_every_call_is_recorded_without_once(tmp_path, gems_logger):
    path = tmp_path / "all.txt"
    aten.attach_record_handler(path, once=False)
    for _ in range(3):
        _emit("flag_gems.ops.mul", "GEMS MUL")
    assert len(path.read_text().splitlines()) == 3


def _child(path: str, count: int) -> None:
    aten.attach_record_handler(Path(path), once=False)
    for _ in range(count):
        _emit("flag_gems.ops.mul", "GEMS MUL " + "x" * 200)


def test_processes_append_to_one_file_without_truncating(tmp_path, gems_logger):
    # FlagGems' own handler opens the file with mode "w" in each process; ours appends
    path = tmp_path / "shared.txt"
    path.write_text("[DEBUG] flag_gems.ops.add._emit: GEMS ADD (earlier process)\n")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_child, args=(str(path), 200)) for _ in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    lines = path.read_text().splitlines()
    assert len(lines) == 1 + 4 * 200
    assert all(line.startswith("[DEBUG] flag_gems.ops.") for line in lines)


def test_layer1_off_switches(monkeypatch):
    settings = load_settings(env={"SGLANG_FL_PLATFORM": "cpu", "USE_FLAGGEMS": "0"})
    assert aten.install_layer1(settings) is False
    empty = load_settings(env={"SGLANG_FL_PLATFORM": "nvidia"})  # its measured set is empty
    assert empty.flagos_whitelist == ()

    def no_import():
        raise AssertionError("FlagGems must not even be imported for an empty whitelist")

    monkeypatch.setattr(aten, "flaggems_import_error", no_import)
    assert aten.install_layer1(empty) is False
