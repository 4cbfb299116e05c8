"""Serving conformance: real SGLang runs on the platform, their dispatch logs and greedy ids.

Two runs of ``sglang.Engine`` (each in its own process, see engine.py) on the same model and
prompts, with Layer 1 off in both (``USE_FLAGGEMS=0``) so only the fused ops differ:

- a bundle with a vendor backend: ``prefer: vendor`` (and no per-op lists) against
  ``prefer: reference``. Every op class the reference run dispatched must show
  ``vendor(vendor.<name>)`` in the vendor run's dispatch log, and the greedy ids must match;
- a bundle without one (the CPU reference bundle): the bundle's own defaults against SGLang's
  own ops (``SGLANG_FL_OOT_ENABLED=0``). Every dispatched class must show the implementation
  the policy plans for it, and the greedy ids must match.

Both runs must also have served through the bundle's SGLang platform class.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sglang_fl.bundles import PlatformBundle, discover_bundles
from sglang_fl.config import CONFIG_ENV, ENV, load_settings
from sglang_fl.conformance.engine import RESULT_PREFIX
from sglang_fl.conformance.report import Check, Status
from sglang_fl.dispatch.dispatch_log import parse_line
from sglang_fl.dispatch.registry import build_registry
from sglang_fl.dispatch.selection import plan_op
from sglang_fl.ops.catalog import FAMILY_BY_CLASS

# Kept from the caller's environment: how the platform talks to its devices, and logging.
KEPT_SETTINGS = (ENV["dist_backend"], ENV["log_level"])
STEERING = (
    *(v for v in ENV.values() if v not in KEPT_SETTINGS),
    CONFIG_ENV,
    "SGLANG_PLUGINS",
    "SGLANG_PLATFORM",
)
RUN_TIMEOUT_S = 900


def prompts(quick: bool) -> list[list[int]]:
    """Token ids valid in any vocabulary of 1024 or more: 1 token, 7 (odd), 23."""
    lengths = (7,) if quick else (1, 7, 23)
    return [[(i * 37 + 11 * n) % 1000 for i in range(n)] for n in lengths]


@dataclass(frozen=True)
class RunSpec:
    name: str
    config: Mapping[str, object] | None  # the SGLANG_FL_CONFIG file's fields, if any
    env: Mapping[str, str]


@dataclass(frozen=True)
class RunResult:
    spec: RunSpec
    output_ids: list[list[int]] | None
    platform: str | None
    dispatch: dict[str, set[str]]  # op class -> implementation ids it got
    output: str


def serving_checks(
    bundle: PlatformBundle, model: Path, dtype: str, quick: bool, workdir: Path
) -> list[Check]:
    """The dispatch and generation checks for ``bundle`` (see the module docstring)."""
    ids, max_new = prompts(quick), 8 if quick else 16
    under_test, baseline = _specs(bundle)
    first = run_engine(under_test, bundle, model, ids, max_new, dtype, workdir)
    second = run_engine(baseline, bundle, model, ids, max_new, dtype, workdir)
    if bundle.vendor is not None:
        checks = _vendor_dispatch_checks(bundle.vendor, first, second)
    else:
        checks = _planned_dispatch_checks(bundle, first, workdir)
    checks += [_platform_check(run, bundle) for run in (first, second)]
    checks.append(_generation_check(first, second, max_new))
    return checks


def _specs(bundle: PlatformBundle) -> tuple[RunSpec, RunSpec]:
    if bundle.vendor is not None:
        return (
            RunSpec("vendor", {"prefer": "vendor", "op_backends": {}}, {}),
            RunSpec("reference", {"prefer": "reference", "op_backends": {}}, {}),
        )
    return (
        RunSpec("platform defaults", None, {}),
        RunSpec("SGLang's own ops", None, {ENV["oot_enabled"]: "0"}),
    )


def child_env(bundle: PlatformBundle, spec: RunSpec, workdir: Path) -> dict[str, str]:
    """The caller's environment without anything that steers sglang-fl, plus this run's."""
    env = {k: v for k, v in os.environ.items() if k not in STEERING}
    slug = spec.name.replace(" ", "-").replace("'", "")
    env.update(
        {
            ENV["platform"]: bundle.name,
            ENV["use_flaggems"]: "0",
            ENV["dispatch_log"]: str(workdir / f"dispatch-{slug}.log"),
        }
    )
    if spec.config is not None:
        config = workdir / f"config-{slug}.yaml"
        config.write_text(json.dumps(dict(spec.config)) + "\n", encoding="utf-8")  # JSON is YAML
        env[CONFIG_ENV] = str(config)
    env.update(spec.env)
    return env


def run_engine(
    spec: RunSpec,
    bundle: PlatformBundle,
    model: Path,
    ids: list[list[int]],
    max_new: int,
    dtype: str,
    workdir: Path,
) -> RunResult:
    env = child_env(bundle, spec, workdir)
    log = Path(env[ENV["dispatch_log"]])
    log.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "sglang_fl.conformance.engine",
        str(model),
        json.dumps(ids),
        str(max_new),
        "1",
        json.dumps({"dtype": dtype}),
    ]
    try:
        proc = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
        )
        output, code = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        output, code = f"{exc.stdout or ''}{exc.stderr or ''}\ntimed out after {exc.timeout}s", -1
    result = _result(output) if code == 0 else None
    return RunResult(
        spec,
        result and result["output_ids"],
        result and result["platform"],
        read_dispatch_log(log),
        output,
    )


def _result(output: str) -> dict | None:
    """The engine runner's RESULT line, parsed."""
    for line in output.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    return None


def read_dispatch_log(path: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            parsed = parse_line(line)
            if parsed:
                found.setdefault(parsed[0], set()).add(parsed[2])
    return found


def failed_run(run: RunResult) -> str:
    tail = run.output.strip().splitlines()[-6:]
    return f"the {run.spec.name} run did not complete: " + " | ".join(tail)


def _platform_check(run: RunResult, bundle: PlatformBundle) -> Check:
    name = f"{run.spec.name} run: platform class"
    if run.output_ids is None:
        return Check("generate", name, Status.FAIL, failed_run(run))
    if run.platform != bundle.platform_class:
        return Check(
            "generate",
            name,
            Status.FAIL,
            f"SGLang served with {run.platform}, not {bundle.platform_class}",
        )
    return Check("generate", name, Status.PASS, run.platform)


def _vendor_dispatch_checks(vendor: str, first: RunResult, second: RunResult) -> list[Check]:
    impl_id = f"vendor.{vendor}"
    if not second.dispatch:
        return [
            Check(
                "dispatch",
                "op classes",
                Status.FAIL,
                "the reference run's dispatch log is "
                "empty: sglang-fl did not dispatch any op (did the plugin load?)",
            )
        ]
    checks = [
        _class_check(cls, {impl_id}, first, f"vendor({impl_id})") for cls in sorted(second.dispatch)
    ]
    wrong = {cls: impls for cls, impls in second.dispatch.items() if impls != {"reference"}}
    checks.append(
        Check(
            "dispatch",
            "reference run: every op on the reference",
            Status.FAIL if wrong else Status.PASS,
            _show(wrong) if wrong else "",
        )
    )
    return checks


def _planned_dispatch_checks(bundle: PlatformBundle, run: RunResult, workdir: Path) -> list[Check]:
    if not run.dispatch:
        return [
            Check(
                "dispatch",
                "op classes",
                Status.FAIL,
                "the dispatch log is empty: "
                "sglang-fl did not dispatch any op (did the plugin load?)",
            )
        ]
    settings = load_settings(env=child_env(bundle, run.spec, workdir))
    registry = build_registry(discover_bundles())
    checks = []
    for cls in sorted(run.dispatch):
        family = FAMILY_BY_CLASS.get(cls)
        if family is None:
            checks.append(Check("dispatch", cls, Status.FAIL, "not an op class of the catalogue"))
            continue
        planned = plan_op(family.name, settings, registry).candidates[0]
        checks.append(
            _class_check(
                cls, {planned.impl_id}, run, f"{planned.kind}({planned.impl_id}), as planned"
            )
        )
    return checks


def _class_check(cls: str, expected: set[str], run: RunResult, shown: str) -> Check:
    got = run.dispatch.get(cls, set())
    if got == expected:
        return Check("dispatch", cls, Status.PASS, shown)
    family = FAMILY_BY_CLASS.get(cls)
    marker = f"Op '{family.name}' fallback" if family else None  # the binder's warning
    why = next((line.strip() for line in run.output.splitlines() if marker and marker in line), "")
    detail = f"expected {_show({cls: expected})}, the {run.spec.name} run logged " + (
        _show({cls: got}) if got else "nothing for it"
    )
    return Check("dispatch", cls, Status.FAIL, f"{detail}; {why}" if why else detail)


def _generation_check(first: RunResult, second: RunResult, max_new: int) -> Check:
    name = f"greedy ids: {first.spec.name} == {second.spec.name}"
    if first.output_ids is None or second.output_ids is None:
        return Check("generate", name, Status.FAIL, "needs both runs to complete")
    lengths = {len(ids) for ids in first.output_ids + second.output_ids}
    if lengths != {max_new}:
        return Check(
            "generate",
            name,
            Status.FAIL,
            f"expected {max_new} new tokens per prompt, got lengths {sorted(lengths)}",
        )
    mismatch = first_mismatch(first.output_ids, second.output_ids)
    if mismatch is not None:
        index, at = mismatch
        a, b = first.output_ids[index], second.output_ids[index]
        return Check(
            "generate",
            name,
            Status.FAIL,
            f"prompt {index} differs from token {at} on: {a[at:]} vs {b[at:]}",
        )
    count = len(first.output_ids)
    return Check("generate", name, Status.PASS, f"{count} prompts x {max_new} tokens")


def first_mismatch(
    got: Sequence[Sequence[int]], expected: Sequence[Sequence[int]]
) -> tuple[int, int] | None:
    """``(prompt, token)`` where two runs' greedy ids first differ (a run that ends early
    differs at its end); None if they are equal. Both runs have the same number of prompts."""
    for prompt, (a, b) in enumerate(zip(got, expected, strict=True)):
        if a != b:
            pairs = enumerate(zip(a, b, strict=False))
            return prompt, next((i for i, (x, y) in pairs if x != y), min(len(a), len(b)))
    return None


def _show(dispatch: Mapping[str, set[str]]) -> str:
    return "; ".join(f"{cls}: {', '.join(sorted(impls))}" for cls, impls in dispatch.items())
