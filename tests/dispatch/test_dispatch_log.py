"""Unit tests for ``sglang_fl.dispatch.dispatch_log``: line format, dedup, multi-process appends."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

from sglang_fl.dispatch.dispatch_log import DispatchLog, format_line

PROCESSES = 8
LINES_PER_PROCESS = 200


def test_line_format_is_exact():
    assert format_line("RMSNorm", "reference", "reference") == (
        "[OOT-DISPATCH] RMSNorm \u2192 reference(reference)"
    )
    assert format_line("SiluAndMul", "vendor", "vendor.nvidia") == (
        "[OOT-DISPATCH] SiluAndMul \u2192 vendor(vendor.nvidia)"
    )


def test_record_writes_utf8_line(tmp_path):
    path = tmp_path / "dispatch.log"
    DispatchLog(path).record("RMSNorm", "reference", "reference")
    assert path.read_bytes() == "[OOT-DISPATCH] RMSNorm → reference(reference)\n".encode()


def test_record_once_per_class_and_impl_and_appends(tmp_path):
    path = tmp_path / "dispatch.log"
    path.write_text("earlier run\n", encoding="utf-8")
    log = DispatchLog(path)
    for _ in range(3):
        log.record("RMSNorm", "flagos", "flagos")
    log.record("RMSNorm", "reference", "reference")
    log.record("SiluAndMul", "flagos", "flagos")
    log.record("RMSNorm", "flagos", "flagos")
    assert path.read_text(encoding="utf-8").splitlines() == [
        "earlier run",
        "[OOT-DISPATCH] RMSNorm \u2192 flagos(flagos)",
        "[OOT-DISPATCH] RMSNorm \u2192 reference(reference)",
        "[OOT-DISPATCH] SiluAndMul \u2192 flagos(flagos)",
    ]


def test_separate_instances_do_not_share_dedup(tmp_path):
    """Dedup is per process (per instance): a second process appends its own line."""
    path = tmp_path / "dispatch.log"
    DispatchLog(path).record("RMSNorm", "reference", "reference")
    DispatchLog(path).record("RMSNorm", "reference", "reference")
    assert path.read_text(encoding="utf-8").count("\n") == 2


def test_no_file_when_path_is_none(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    log = DispatchLog(None)
    log.record("RMSNorm", "reference", "reference")
    log.record("SiluAndMul", "flagos", "flagos")
    assert list(tmp_path.iterdir()) == []


def _class_name(proc: int, index: int) -> str:
    # long, distinct names so that a torn or interleaved write cannot look like a valid line
    return f"Op{proc}_{index:03d}_" + "x" * (120 + proc)


def _writer(path: str, proc: int, barrier) -> None:
    log = DispatchLog(Path(path))
    barrier.wait()
    for index in range(LINES_PER_PROCESS):
        log.record(_class_name(proc, index), "reference", f"impl{proc}")


def test_concurrent_processes_never_tear_lines(tmp_path):
    path = tmp_path / "shared.log"
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    procs = [ctx.Process(target=_writer, args=(str(path), p, barrier)) for p in range(PROCESSES)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=60)
    assert [proc.exitcode for proc in procs] == [0] * PROCESSES

    data = path.read_text(encoding="utf-8")
    assert data.endswith("\n")
    lines = data.splitlines()
    expected = {
        format_line(_class_name(p, i), "reference", f"impl{p}")
        for p in range(PROCESSES)
        for i in range(LINES_PER_PROCESS)
    }
    assert len(lines) == PROCESSES * LINES_PER_PROCESS
    assert set(lines) == expected  # every line whole, none missing, none duplicated
    # each process's own lines keep their order
    for p in range(PROCESSES):
        own = [line for line in lines if line.endswith(f"(impl{p})")]
        assert own == [format_line(_class_name(p, i), "reference", f"impl{p}")
                       for i in range(LINES_PER_PROCESS)]  # fmt: skip
