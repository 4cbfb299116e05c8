"""The conformance report: the verdict, the folded table, the JSON file, the CLI's exit codes."""

from __future__ import annotations

import json

from sglang_fl.cli import main
from sglang_fl.conformance.cli import main as conformance_main
from sglang_fl.conformance.report import Check, Report, Status, summary_rows


def report(*checks: Check) -> Report:
    return Report("p", "v", "cpu", {"torch": "x"}, list(checks))


PASS = Check("ops", "rms_norm float32 a", Status.PASS, "", 1e-7)


def test_verdict_needs_a_pass_and_no_failure():
    assert report(PASS).passed
    assert report(PASS, Check("ops", "rms_norm b", Status.REFUSED, "why")).passed
    assert not report(PASS, Check("dispatch", "RMSNorm", Status.FAIL, "x")).passed
    assert not report(Check("ops", "vendor backend", Status.NOT_APPLICABLE, "none")).passed


def test_table_folds_cases_per_op_and_lists_each_failure_and_refusal():
    rows = summary_rows(
        report(
            PASS,
            Check("ops", "rms_norm float32 b", Status.FAIL, "differs", None),
            Check("ops", "rms_norm bfloat16 c", Status.REFUSED, "no bf16"),
            Check("ops", "silu_and_mul float32 d", Status.PASS, "", 2e-3),
            Check("dispatch", "RMSNorm", Status.PASS, "vendor(vendor.v)"),
        )
    )
    assert rows == [
        ("ops", "rms_norm", "fail", "3 cases: 1 pass, 1 refused, 1 FAIL; max |err| 1.00e-07"),
        ("ops", "silu_and_mul", "pass", "1 cases: 1 pass; max |err| 2.00e-03"),
        ("ops", "  rms_norm float32 b", "fail", "differs"),
        ("ops", "  rms_norm bfloat16 c", "refused", "no bf16"),
        ("dispatch", "RMSNorm", "pass", "vendor(vendor.v)"),
    ]


def test_json_keeps_every_case(tmp_path):
    path = tmp_path / "out" / "report.json"
    report(PASS, Check("ops", "gemma_rms_norm", Status.NOT_APPLICABLE, "missing")).write_json(path)
    data = json.loads(path.read_text())
    assert data["passed"] is True and data["platform"] == "p" and data["vendor"] == "v"
    assert data["counts"] == {"pass": 1, "fail": 0, "refused": 0, "n/a": 1}
    assert data["checks"][0] == {
        "part": "ops",
        "name": "rms_norm float32 a",
        "status": "pass",
        "detail": "",
        "max_abs_error": 1e-7,
    }


def test_cli_on_a_bundle_without_vendor_backend_checks_nothing_with_ops_only(capsys, tmp_path):
    path = tmp_path / "r.json"
    assert main(["conformance", "--platform", "cpu", "--ops-only", "--json-file", str(path)]) == 1
    out = capsys.readouterr().out
    assert "bundle 'cpu' ships no vendor backend" in out
    assert "conformance FAIL: nothing was checked (2 n/a)" in out
    assert json.loads(path.read_text())["passed"] is False


def test_module_entry_point_prints_the_json_report_alone(capsys):
    """``python -m sglang_fl.conformance`` runs the same command on its own parser."""
    assert conformance_main(["--platform", "cpu", "--ops-only", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["platform"] == "cpu" and data["passed"] is False
    assert data["counts"] == {"pass": 0, "fail": 0, "refused": 0, "n/a": 2}


def test_module_entry_point_names_the_bad_platform(capsys):
    assert conformance_main(["--platform", "nope", "--ops-only"]) == 2
    assert capsys.readouterr().err.startswith("sglang-fl: --platform: invalid value 'nope'")


def test_cli_names_the_bad_platform(capsys):
    assert main(["conformance", "--platform", "nope", "--ops-only"]) == 2
    err = capsys.readouterr().err
    assert "--platform: invalid value 'nope'" in err and "accepted: " in err and "cpu" in err
