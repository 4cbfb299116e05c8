"""The template bundle as a vendor gets it: installed as its own distribution, found by its
entry point, selectable, and passing the conformance suite on the CPU.

The distribution is built from a copy of platforms/template and installed into a throwaway
directory (``pip install --no-deps --target``); every check runs in a fresh Python process
that has that directory on its path, as an installed vendor bundle would be.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # the test extra installs it
    import tomli as tomllib

from sglang_fl.ops.catalog import OP_NAMES

ROOT = Path(__file__).parents[3]
TEMPLATE = ROOT / "platforms" / "template"
CLASSES = ("RMSNorm", "RotaryEmbedding", "SiluAndMul")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The template distribution installed into an empty directory."""
    work = tmp_path_factory.mktemp("template")
    source, target = work / "src", work / "site"
    shutil.copytree(TEMPLATE, source)  # the build writes build/ and egg-info next to the source
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        timeout=300,
    )
    return target


def run(site: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300):
    """``python ARGS`` with the template installed and nothing set that steers sglang-fl."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SGLANG_FL_", "SGLANG_PL"))}
    path = os.pathsep.join(filter(None, (str(site), os.environ.get("PYTHONPATH"))))
    return subprocess.run(
        [sys.executable, *args],
        env={**clean, "PYTHONPATH": path, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_json(site: Path, code: str, **env: str):
    proc = run(site, "-c", code, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def test_is_its_own_distribution_not_part_of_sglang_fl():
    ours = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "platforms/template" not in ours["tool"]["setuptools"]["packages"]["find"]["where"]
    assert "template" not in ours["project"]["entry-points"]["sglang_fl.platforms"]
    theirs = tomllib.loads((TEMPLATE / "pyproject.toml").read_text())
    assert theirs["project"]["name"] == "sglang-fl-template"
    assert theirs["project"]["entry-points"]["sglang_fl.platforms"] == {
        "template": "sglang_fl_template:BUNDLE"
    }


def test_found_by_its_entry_point(site):
    found = run_json(
        site,
        """
import json, sys
from importlib.metadata import entry_points
from sglang_fl.bundles import discover_bundles
(ep,) = [e for e in entry_points(group="sglang_fl.platforms") if e.name == "template"]
b = discover_bundles()["template"]
print(json.dumps({"dist": ep.dist.name, "vendor": b.vendor, "cls": b.platform_class,
                  "dist_backends": b.dist_backends, "yaml": b.config_file.is_file(),
                  "yaml_dir": str(b.config_file.parent), "torch": "torch" in sys.modules}))
""",
    )
    assert found == {
        "dist": "sglang-fl-template",
        "vendor": "template",
        "cls": "sglang_fl_template.platform.TemplatePlatform",
        "dist_backends": ["gloo"],
        "yaml": True,
        "yaml_dir": str(site / "sglang_fl_template"),
        "torch": False,
    }


def test_never_detects_itself_so_installing_it_takes_over_nothing(site):
    found = run_json(
        site,
        """
import json
from sglang_fl.bundles import detect_bundle, discover_bundles
bundles = discover_bundles()
print(json.dumps([bundles["template"].detect(), detect_bundle(bundles).name]))
""",
    )
    assert found == [False, "cpu"]  # this machine has no accelerator


def test_selected_with_sglang_fl_platform(site):
    proc = run(site, "-m", "sglang_fl.cli", "ops", "--json", env={"SGLANG_FL_PLATFORM": "template"})
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["platform"] == "template"
    assert {op["op"]: op["chosen"] for op in report["ops"]} == dict.fromkeys(
        OP_NAMES, "vendor.template"
    )
    config = json.loads(
        run(
            site, "-m", "sglang_fl.cli", "config", "--json", env={"SGLANG_FL_PLATFORM": "template"}
        ).stdout
    )
    assert config["prefer"] == "vendor" and config["sources"]["prefer"] == "platform:template"
    assert config["dist_backend"] == "gloo"


def conformance(site: Path, report: Path, *options: str, timeout: float = 300):
    """``sglang-fl conformance --platform template`` in a fresh process, JSON to ``report``."""
    args = ("--platform", "template", *options, "--json-file", str(report))
    return run(site, "-m", "sglang_fl.conformance", *args, timeout=timeout)


def test_passes_the_op_conformance_on_cpu(site, tmp_path):
    path = tmp_path / "template.json"
    proc = conformance(site, path, "--ops-only")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(path.read_text())
    assert report["device"] == "cpu" and report["counts"]["fail"] == 0
    assert report["counts"]["refused"] == 0 and report["counts"]["pass"] > 400
    ops = {c["name"].split()[0] for c in report["checks"] if c["part"] == "ops"}
    assert ops == set(OP_NAMES)


@pytest.mark.sglang
@pytest.mark.slow
def test_passes_the_whole_conformance_with_real_sglang(site, tmp_path):
    """Including the zoo check on the models that need the template's PyTorch routes (a
    device without Triton): Gemma 2's softcaps, DeepSeek-V2's MLA (refused on 0.5.15)."""
    path = tmp_path / "template.json"
    proc = conformance(site, path, "--quick", "--zoo", "gemma2,deepseek-v2", timeout=1800)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    checks = {c["name"]: c for c in json.loads(path.read_text())["checks"]}
    for cls in CLASSES:
        assert (checks[cls]["status"], checks[cls]["detail"]) == ("pass", "vendor(vendor.template)")
    assert checks["vendor run: platform class"]["detail"] == (
        "sglang_fl_template.platform.TemplatePlatform"
    )
    assert checks["greedy ids: vendor == reference"]["status"] == "pass"
    contract = checks["platform class vs SGLang's platform API"]
    assert contract["status"] == "pass", contract["detail"]
    assert contract["detail"].startswith("sglang_fl_template.platform.TemplatePlatform fits sglang")
    gemma2 = checks["gemma2"]
    assert (gemma2["part"], gemma2["status"]) == ("zoo", "pass"), gemma2["detail"]
    assert gemma2["detail"].startswith("greedy ids equal HF transformers'")
    assert "GeluAndMul vendor.template" in gemma2["detail"]
    deepseek = checks["deepseek-v2"]
    from sglang_fl.compat.versions import release, sglang_version

    if str(release(sglang_version())) == "0.5.15":
        assert deepseek["status"] == "refused"
        assert "imports 'cutlass'" in deepseek["detail"]
    else:
        assert deepseek["status"] == "pass", deepseek["detail"]
