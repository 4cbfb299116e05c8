"""``sglang-fl doctor``, run as a user runs it (a subprocess of the CLI), on this machine.

Unmarked tests need no SGLang (the ``unit`` env has none): where a row depends on whether SGLang
is installed, the test asks ``importlib.util.find_spec`` and asserts the matching outcome. The
``sglang``-marked ones need the installed release, and shadow it with a newer version number
(a dist-info on PYTHONPATH, as tests/integration/test_release_startup.py does) for the refusal
and the untested-release opt-in.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sglang_fl.bundles import discover_bundles
from sglang_fl.config import without_steering
from sglang_fl.doctor.checks import Check, Status, _guarded

CLI = [sys.executable, "-m", "sglang_fl.cli", "doctor"]
HAS_SGLANG = importlib.util.find_spec("sglang") is not None
NEWER = "0.5.99"


def doctor(*args: str, pythonpath: str | None = None, **env: str) -> subprocess.CompletedProcess:
    """The command in a clean environment (no sglang-fl variable of the caller) plus ``env``."""
    full = {**without_steering(os.environ), **env}
    if pythonpath is not None:
        full["PYTHONPATH"] = os.pathsep.join(filter(None, [pythonpath, full.get("PYTHONPATH")]))
    return subprocess.run([*CLI, *args], env=full, capture_output=True, text=True, timeout=300)


def report(*args: str, **kwargs: Any) -> tuple[int, dict[str, Any], dict[str, dict[str, str]]]:
    """(exit status, the JSON report, its rows by check name)."""
    out = doctor("--json", *args, **kwargs)
    assert out.returncode in (0, 1), out.stderr[-3000:]
    data = json.loads(out.stdout)
    rows = {row["check"]: row for row in data["checks"]}
    assert len(rows) == len(data["checks"]), "check names are unique"
    return out.returncode, data, rows


def newer_release(root: Path) -> str:
    """A PYTHONPATH entry on which ``importlib.metadata`` finds sglang NEWER."""
    info = root / f"sglang-{NEWER}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: sglang\nVersion: {NEWER}\n")
    return str(root)


# --------------------------------------------------------------------------- the report


@pytest.fixture(scope="module")
def table_and_report(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """One run for the tests that read the default report: the table on stdout, and the JSON
    written by ``--json-file`` (the same report)."""
    path = tmp_path_factory.mktemp("doctor") / "sub" / "doctor.json"
    return doctor("--json-file", str(path)), path


def test_json_report_structure_and_exit_status(tmp_path, table_and_report):
    status, data, rows = report()
    assert set(data) == {"ok", "errors", "warnings", "checks"}
    for row in data["checks"]:
        assert set(row) == {"check", "status", "detail", "fix"}
        assert row["status"] in ("ok", "warning", "error") and row["detail"]
        assert row["fix"] or row["status"] == "ok", row  # every problem says what to do
    statuses = [row["status"] for row in data["checks"]]
    assert data["errors"] == statuses.count("error")
    assert data["warnings"] == statuses.count("warning")
    assert data["ok"] == (data["errors"] == 0) == (status == 0)
    assert {"config", "sglang", "torch", "triton"} <= set(rows)
    assert {f"bundle:{name}" for name in discover_bundles()} <= set(rows)
    path = tmp_path / "doctor.json"
    also = doctor("--json", "--json-file", str(path))
    assert json.loads(path.read_text()) == json.loads(also.stdout)


def test_the_text_report_has_one_entry_per_check_and_a_summary(table_and_report):
    out, path = table_and_report
    data = json.loads(path.read_text())
    assert out.returncode == (0 if data["ok"] else 1), out.stderr[-3000:]
    lines = out.stdout.splitlines()
    heads = [line.split()[:2] for line in lines if line[:1].strip()]  # not indented: a check
    assert heads[:-1] == [[row["status"], row["check"]] for row in data["checks"]]
    fixes = [line.strip() for line in lines if line.strip().startswith("fix: ")]
    assert len(fixes) == sum(1 for row in data["checks"] if row["fix"])
    assert max(len(line) for line in lines) <= 100 or any(
        " " not in line.strip() for line in lines if len(line) > 100
    )  # wrapped, except a single word longer than the width
    errors, warnings = data["errors"], data["warnings"]
    assert lines[-1] == f"{len(data['checks'])} checks: {errors} error(s), {warnings} warning(s)"


def test_python_m_sglang_fl_doctor_is_the_same_command(table_and_report):
    out = subprocess.run(
        [sys.executable, "-m", "sglang_fl.doctor", "--json"],
        env=without_steering(os.environ), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    data = json.loads(table_and_report[1].read_text())
    assert out.returncode == (0 if data["ok"] else 1), out.stderr[-3000:]
    assert [r["check"] for r in json.loads(out.stdout)["checks"]] == [
        r["check"] for r in data["checks"]
    ]


# --------------------------------------------------------------------------- config


def test_a_bad_setting_is_an_error_row_naming_the_variable_and_exit_1():
    status, data, rows = report(SGLANG_FL_PREFER="fastest")
    assert status == 1 and not data["ok"]
    config = rows["config"]
    assert config["status"] == "error"
    assert "SGLANG_FL_PREFER" in config["detail"] and "'fastest'" in config["detail"]
    assert config["fix"] == "set SGLANG_FL_PREFER to an accepted value: flagos, vendor, reference"
    # what depends on the settings is left out; the rest is still checked
    assert not {"flaggems", "flagcx", "vendor_backend", "platform_contract"} & set(rows)
    assert {"sglang", "torch", "triton"} <= set(rows)


def test_a_mistyped_variable_and_a_bad_yaml_field_are_named(tmp_path):
    _, _, rows = report(SGLANG_FL_PREFFER="vendor")
    assert rows["config"]["status"] == "error"
    assert "SGLANG_FL_PREFFER" in rows["config"]["detail"]
    config = tmp_path / "c.yaml"
    config.write_text("prefer: fastest\n")
    status, _, rows = report(SGLANG_FL_CONFIG=str(config))
    assert status == 1 and rows["config"]["status"] == "error"
    assert f"{config.resolve()}: field 'prefer'" in rows["config"]["detail"]


def test_a_valid_config_names_the_platform_and_how_it_was_chosen():
    _, _, rows = report(SGLANG_FL_PLATFORM="cpu")
    assert rows["config"]["status"] == "ok"
    assert "platform cpu (forced by SGLANG_FL_PLATFORM)" in rows["config"]["detail"]
    assert "selected (forced by SGLANG_FL_PLATFORM)" in rows["bundle:cpu"]["detail"]


def test_every_bundle_says_whether_it_detects_its_hardware(table_and_report):
    rows = {row["check"]: row for row in json.loads(table_and_report[1].read_text())["checks"]}
    for name, bundle in discover_bundles().items():
        detail = rows[f"bundle:{name}"]["detail"]
        assert detail.startswith(f"detected: {'yes' if bundle.detect() else 'no'} (")
        if bundle.probe:
            assert f"(when {bundle.probe})" in detail


@pytest.mark.skipif(
    "nvidia" not in discover_bundles() or discover_bundles()["nvidia"].detect(),
    reason="needs the nvidia bundle on a machine without an NVIDIA GPU",
)
def test_a_bundle_forced_without_its_hardware_is_a_warning():
    _, _, rows = report(SGLANG_FL_PLATFORM="nvidia")
    row = rows["bundle:nvidia"]
    assert row["status"] == "warning"
    assert row["detail"].endswith("selected (forced by SGLANG_FL_PLATFORM) without its hardware")


# --------------------------------------------------------------------------- SGLang


def test_the_sglang_row_reports_the_installed_release_or_its_absence(table_and_report):
    rows = {row["check"]: row for row in json.loads(table_and_report[1].read_text())["checks"]}
    row = rows["sglang"]
    if not HAS_SGLANG:
        assert row["status"] == "error"
        assert row["detail"].startswith("SGLang is not installed; sglang-fl supports sglang >=")
        assert row["fix"].startswith("install SGLang ")
        assert "platform_contract" not in rows  # nothing to check the platform class against
    else:
        from sglang_fl.compat.versions import sglang_version

        assert f"sglang {sglang_version()}" in row["detail"]


@pytest.mark.sglang
def test_with_the_installed_release_the_sglang_and_contract_rows_are_ok():
    from sglang_fl.compat.versions import sglang_version

    _, _, rows = report()
    assert rows["sglang"]["status"] == "ok", rows["sglang"]
    assert rows["sglang"]["detail"].startswith(f"sglang {sglang_version()}: ")
    contract = rows["platform_contract"]
    assert contract["status"] == "ok", contract
    assert contract["detail"] == (
        f"sglang_fl_cpu.platform.CpuPlatform fits sglang {sglang_version()}'s platform API"
    )


@pytest.mark.sglang
def test_a_newer_release_is_an_error_naming_the_version_and_the_opt_in(tmp_path):
    status, _, rows = report(pythonpath=newer_release(tmp_path / "site"))
    assert status == 1
    row = rows["sglang"]
    assert row["status"] == "error"
    assert f"sglang {NEWER} is installed, newer than sglang-fl is tested with" in row["detail"]
    assert "SGLANG_FL_ALLOW_UNTESTED_SGLANG=1" in row["detail"]
    assert "or set SGLANG_FL_ALLOW_UNTESTED_SGLANG=1" in row["fix"]
    assert "platform_contract" not in rows  # SGLang is not imported for a refused release


@pytest.mark.sglang
def test_a_newer_release_with_the_opt_in_is_a_warning_and_the_contract_decides(tmp_path):
    from sglang_fl.compat.versions import NEWEST, release, sglang_version

    _, _, rows = report(pythonpath=newer_release(tmp_path / "site"),
                        SGLANG_FL_ALLOW_UNTESTED_SGLANG="1")  # fmt: skip
    row = rows["sglang"]
    assert row["status"] == "warning"
    assert row["detail"].startswith(f"sglang {NEWER} is newer than the tested releases")
    assert "SGLANG_FL_ALLOW_UNTESTED_SGLANG=1" in row["detail"]
    contract = rows["platform_contract"]
    if release(sglang_version()) == NEWEST:  # the newest API under a newer number: it fits
        assert contract["status"] == "ok", contract
    else:  # an older API under a newer number: hooks of the newest release are "removed"
        assert contract["status"] == "error"
        assert (
            "get_group_coordinator_device: defined by FLPlatform, but sglang 0.5.99's "
            "SRTPlatform has no such hook (removed or renamed?)"
        ) in contract["detail"]


# --------------------------------------------------------------------------- FlagCX, FlagGems


@pytest.mark.skipif("nvidia" not in discover_bundles(), reason="needs a bundle that lists flagcx")
def test_flagcx_with_a_bogus_path_is_an_error_naming_the_paths_tried(tmp_path):
    missing = tmp_path / "no-flagcx"
    status, _, rows = report(SGLANG_FL_PLATFORM="nvidia", FLAGCX_PATH=str(missing))
    assert status == 1
    row = rows["flagcx"]
    assert row["status"] == "error"
    assert row["detail"].startswith(f"FLAGCX_PATH={missing}: no libflagcx.so found (tried ")
    assert str(missing / "lib" / "libflagcx.so") in row["detail"]
    assert row["fix"].startswith("set FLAGCX_PATH to ")


@pytest.mark.skipif("nvidia" not in discover_bundles(), reason="needs a bundle that lists flagcx")
def test_flagcx_found_and_loaded_is_ok(flagcx_double_root):
    _, _, rows = report(SGLANG_FL_PLATFORM="nvidia", FLAGCX_PATH=str(flagcx_double_root))
    row = rows["flagcx"]
    library = (flagcx_double_root / "lib" / "libflagcx.so").resolve()
    assert row["status"] == "ok", row
    assert row["detail"] == f"{library}: FlagCX 0.13.0 (flagcx from env:FLAGCX_PATH)"


def test_flagcx_is_checked_only_where_it_is_the_dist_backend():
    _, _, rows = report(SGLANG_FL_PLATFORM="cpu")
    assert "flagcx" not in rows


def test_flaggems_row_follows_use_flaggems():
    _, _, rows = report(USE_FLAGGEMS="0")
    assert rows["flaggems"] == {
        "check": "flaggems", "status": "ok", "fix": "",
        "detail": "Layer 1 off (USE_FLAGGEMS=0): FlagGems not needed",
    }  # fmt: skip
    _, _, rows = report(USE_FLAGGEMS="1")
    row = rows["flaggems"]
    on = ("Layer 1 replaces ATen ops", "Layer 1 on (USE_FLAGGEMS set) but inactive")
    assert any(text in row["detail"] for text in on), row
    if importlib.util.find_spec("flag_gems") is None:
        assert row["status"] in ("warning", "error")
        assert "FlagGems cannot be imported" in row["detail"]
        assert "USE_FLAGGEMS=0" in row["fix"]


# --------------------------------------------------------------------------- robustness


def _raises(exc: BaseException) -> Any:
    def check(arg: object) -> list[Check]:
        raise exc

    return check


def test_a_check_that_raises_becomes_an_error_row():
    (row,) = _guarded("triton", _raises(RuntimeError("0 active drivers")), None)
    assert (row.name, row.status) == ("triton", Status.ERROR)
    assert row.detail == "the check raised RuntimeError: 0 active drivers"
    # an sglang-fl error that ended SGLang's platform resolution: its cause is the message
    try:
        try:
            raise ValueError("the real reason")
        except ValueError as cause:
            raise SystemExit(2) from cause
    except SystemExit as exit_:
        (row,) = _guarded("platform_contract", _raises(exit_), None)
    assert row.detail == "the check raised ValueError: the real reason"
