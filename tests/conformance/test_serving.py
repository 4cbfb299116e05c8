"""The serving checks of the conformance suite.

The check functions are tested on the results of runs (what a run's dispatch log and greedy
ids were); the real SGLang runs on the CPU bundle are in the ``sglang``-marked test at the end
(the template bundle's own tests run the vendor-backend path end to end).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sglang_fl.bundles import discover_bundles
from sglang_fl.conformance import serving
from sglang_fl.conformance.report import Status
from sglang_fl.conformance.serving import RunResult, RunSpec, child_env

VENDOR_RUN = RunSpec("vendor", {"prefer": "vendor", "op_backends": {}}, {})
REFERENCE_RUN = RunSpec("reference", {"prefer": "reference", "op_backends": {}}, {})
CLASSES = ("RMSNorm", "RotaryEmbedding", "SiluAndMul")


def result(spec, dispatch, ids=((1, 2, 3),), output="", platform="pkg.Platform") -> RunResult:
    return RunResult(
        spec,
        [list(i) for i in ids],
        platform,
        {cls: set(impls) for cls, impls in dispatch.items()},
        output,
    )


def by_name(checks):
    return {c.name: c for c in checks}


def test_vendor_dispatch_passes_when_every_class_got_the_vendor():
    first = result(VENDOR_RUN, {c: ["vendor.acme"] for c in CLASSES})
    second = result(REFERENCE_RUN, {c: ["reference"] for c in CLASSES})
    checks = by_name(serving._vendor_dispatch_checks("acme", first, second))
    assert {checks[c].status for c in CLASSES} == {Status.PASS}
    assert checks["RMSNorm"].detail == "vendor(vendor.acme)"
    assert checks["reference run: every op on the reference"].status is Status.PASS


def test_vendor_dispatch_fails_on_a_fallback_and_quotes_the_warning():
    warning = "WARNING Op 'rms_norm' fallback to 'reference' ...; skipped: vendor.acme: no bf16"
    first = result(
        VENDOR_RUN,
        {"RMSNorm": ["reference"], "SiluAndMul": ["vendor.acme"]},
        output=f"noise\n{warning}\n",
    )
    second = result(REFERENCE_RUN, {c: ["reference"] for c in CLASSES})
    checks = by_name(serving._vendor_dispatch_checks("acme", first, second))
    assert checks["RMSNorm"].status is Status.FAIL
    assert checks["RMSNorm"].detail == (
        f"expected RMSNorm: vendor.acme, the vendor run logged RMSNorm: reference; {warning}"
    )
    assert checks["RotaryEmbedding"].detail.endswith("the vendor run logged nothing for it")
    assert checks["SiluAndMul"].status is Status.PASS


def test_vendor_dispatch_fails_when_the_plugin_dispatched_nothing():
    (check,) = serving._vendor_dispatch_checks(
        "acme", result(VENDOR_RUN, {}), result(REFERENCE_RUN, {})
    )
    assert check.status is Status.FAIL and "did the plugin load?" in check.detail


def test_generation_check_names_the_first_difference():
    same = serving._generation_check(
        result(VENDOR_RUN, {}, ids=[(1, 2, 3)]), result(REFERENCE_RUN, {}, ids=[(1, 2, 3)]), 3
    )
    assert same.status is Status.PASS and same.detail == "1 prompts x 3 tokens"
    differ = serving._generation_check(
        result(VENDOR_RUN, {}, ids=[(1, 2), (5, 6, 7)]),
        result(REFERENCE_RUN, {}, ids=[(1, 2), (5, 9, 7)]),
        2,
    )
    assert differ.status is Status.FAIL and "got lengths [2, 3]" in differ.detail
    differ = serving._generation_check(
        result(VENDOR_RUN, {}, ids=[(1, 2), (5, 6)]),
        result(REFERENCE_RUN, {}, ids=[(1, 2), (5, 9)]),
        2,
    )
    assert differ.detail == "prompt 1 differs from token 1 on: [6] vs [9]"


def test_a_failed_run_fails_its_checks_with_the_output_tail():
    failed = RunResult(VENDOR_RUN, None, None, {}, "line 1\nTraceback\nRuntimeError: no device\n")
    bundle = discover_bundles()["cpu"]
    check = serving._platform_check(failed, bundle)
    assert check.status is Status.FAIL
    assert (
        check.detail
        == "the vendor run did not complete: line 1 | Traceback | RuntimeError: no device"
    )
    ok = result(REFERENCE_RUN, {})
    assert serving._generation_check(failed, ok, 3).detail == "needs both runs to complete"
    wrong = serving._platform_check(ok, bundle)
    assert wrong.status is Status.FAIL and "not sglang_fl_cpu.platform.CpuPlatform" in wrong.detail


def test_child_env_drops_what_steers_sglang_fl_and_keeps_the_rest(monkeypatch, tmp_path):
    for name, value in {
        "SGLANG_FL_PREFER": "flagos",
        "SGLANG_FL_PER_OP": "rms_norm=flagos",
        "SGLANG_PLUGINS": "x",
        "SGLANG_FL_CONFIG": "/nope.yaml",
        "SGLANG_FL_DIST_BACKEND": "gloo",
        "FLAGCX_PATH": "/opt/flagcx",
        "HOME_LIKE": "kept",
    }.items():
        monkeypatch.setenv(name, value)
    env = child_env(discover_bundles()["cpu"], VENDOR_RUN, tmp_path)
    for gone in ("SGLANG_FL_PREFER", "SGLANG_FL_PER_OP", "SGLANG_PLUGINS"):
        assert gone not in env
    assert env["SGLANG_FL_DIST_BACKEND"] == "gloo" and env["FLAGCX_PATH"] == "/opt/flagcx"
    assert env["HOME_LIKE"] == "kept" and env["USE_FLAGGEMS"] == "0"
    assert env["SGLANG_FL_PLATFORM"] == "cpu"
    assert json.loads(Path(env["SGLANG_FL_CONFIG"]).read_text()) == {
        "prefer": "vendor",
        "op_backends": {},
    }


def test_the_vendor_run_config_overrides_the_platform_per_op_lists(tmp_path):
    """ascend.yaml lists per-op orders; the vendor run's empty op_backends must replace them,
    so `prefer: vendor` alone decides (what the dispatch check assumes)."""
    from sglang_fl.config import load_settings

    settings = load_settings(env=child_env(discover_bundles()["ascend"], VENDOR_RUN, tmp_path))
    assert settings.prefer == "vendor" and dict(settings.op_backends) == {}
    assert settings.sources["op_backends"].startswith("file:")


@pytest.mark.sglang
@pytest.mark.slow
def test_cpu_bundle_end_to_end_with_real_sglang(tmp_path):
    path = tmp_path / "report.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sglang_fl.conformance",
            "--platform",
            "cpu",
            "--quick",
            "--json-file",
            str(path),
        ],
        env=serving.child_env(discover_bundles()["cpu"], RunSpec("x", None, {}), tmp_path),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    checks = {c["name"]: c for c in json.loads(path.read_text())["checks"]}
    for cls in CLASSES:
        assert checks[cls]["status"] == "pass"
        assert checks[cls]["detail"] == "reference(reference), as planned"
    greedy = checks["greedy ids: platform defaults == SGLang's own ops"]
    assert greedy["status"] == "pass" and greedy["detail"] == "1 prompts x 8 tokens"
    assert "conformance PASS" in proc.stdout
