"""Helpers for the integration tests: run SGLang in subprocesses, greedy reference with HF."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sglang_fl.config import without_steering
from sglang_fl.models.zoo import hf_greedy  # noqa: F401  (the tests' HF reference)

# The same runner the conformance suite uses: one Engine per process, a RESULT line on stdout.
RUNNER = ("-m", "sglang_fl.conformance.engine")


def clean_env(**overrides: str) -> dict[str, str]:
    """The current environment minus every variable that steers sglang-fl, plus ``overrides``."""
    env = without_steering(os.environ)
    env.update(overrides)
    return env


def run_engine(model: Path, prompts: list[list[int]], max_new: int, env: dict[str, str],
               timeout: float = 900, tp_size: int = 1,
               engine_kwargs: dict | None = None) -> tuple[dict | None, str]:  # fmt: skip
    """(result, combined output). result is None when the process did not succeed.
    ``engine_kwargs``: extra ``sglang.Engine`` arguments, plus ``top_logprobs`` (see
    ``sglang_fl.conformance.engine``)."""
    argv = [sys.executable, *RUNNER, str(model), json.dumps(prompts), str(max_new),
            str(tp_size), json.dumps(engine_kwargs or {})]  # fmt: skip
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    output = proc.stdout + proc.stderr
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT ") and proc.returncode == 0:
            return json.loads(line[len("RESULT ") :]), output
    return None, output


def dispatch_lines(path: Path) -> set[str]:
    return set(path.read_text(encoding="utf-8").splitlines()) if path.exists() else set()


CONTRACT_BUNDLE = "cpu-flagcx-contract"
_CONTRACT_MODULE = '''"""Test only: the CPU platform with FlagCX allowed (the FlagCX double)."""
from pathlib import Path

import sglang_fl_cpu
from sglang_fl.bundles import PlatformBundle

BUNDLE = PlatformBundle(
    name="{name}",
    platform_class="sglang_fl_cpu.platform.CpuPlatform",
    config_file=Path(sglang_fl_cpu.__file__).with_name("cpu.yaml"),
    detect=lambda: False,
    dist_backends=("gloo", "flagcx"),
)
'''


def install_contract_bundle(root: Path) -> str:
    """Write a test-only platform bundle (a module and its dist-info with the entry point)
    under ``root``; returns the PYTHONPATH entry that makes it discoverable.

    It is the CPU bundle with ``flagcx`` among its backends, so real SGLang on CPU can run on
    the FlagCX test double. The shipped CPU bundle supports gloo only: no real FlagCX build is
    known to run on host memory.
    """
    package = root / "sglang_fl_cpu_flagcx_contract"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(_CONTRACT_MODULE.format(name=CONTRACT_BUNDLE))
    info = root / "sglang_fl_cpu_flagcx_contract-0.0.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: sglang-fl-cpu-flagcx-contract\nVersion: 0.0.0\n"
    )
    (info / "entry_points.txt").write_text(
        f"[sglang_fl.platforms]\n{CONTRACT_BUNDLE} = sglang_fl_cpu_flagcx_contract:BUNDLE\n"
    )
    return str(root)


def with_pythonpath(env: dict[str, str], entry: str) -> dict[str, str]:
    existing = env.get("PYTHONPATH")
    env["PYTHONPATH"] = entry if not existing else f"{entry}{os.pathsep}{existing}"
    return env


def agreement(base: dict, other: dict) -> str:
    """For the run's record: identical sequences and the largest chosen-token logprob gap over
    each common prefix (the figure the bound in ``compare_bounded`` is checked against)."""
    pairs = list(zip(base["output_ids"], other["output_ids"], strict=True))
    gap = 0.0
    for index, (ids1, ids2) in enumerate(pairs):
        for pos, (a, b) in enumerate(zip(ids1, ids2, strict=True)):
            if a != b:
                break
            gap = max(gap, abs(base["logprobs"][index][pos] - other["logprobs"][index][pos]))
    same = sum(a == b for a, b in pairs)
    return f"identical sequences {same}/{len(pairs)}, max logprob gap {gap:.4f} nats"


def compare_bounded(tp1: dict, tp2: dict, *, logprob_tol: float, tie_tol: float) -> list[str]:
    """Problems between two greedy runs with logprobs (empty: within bounds). Same tokens: the
    chosen logprobs within ``logprob_tol``; the first different token: a near-tie in ``tp1``
    (top-2 within ``tie_tol``), after which that sequence is not compared."""
    problems = []
    for index, (ids1, ids2) in enumerate(zip(tp1["output_ids"], tp2["output_ids"], strict=True)):
        for pos, (a, b) in enumerate(zip(ids1, ids2, strict=True)):
            if a != b:
                first, second = tp1["top"][index][pos][:2]
                if first[0] - second[0] > tie_tol:
                    problems.append(f"prompt {index} pos {pos}: {a} vs {b}, not a near-tie "
                                    f"(TP=1 top-2 gap {first[0] - second[0]:.3f})")  # fmt: skip
                break
            gap = abs(tp1["logprobs"][index][pos] - tp2["logprobs"][index][pos])
            if gap > logprob_tol:
                problems.append(f"prompt {index} pos {pos}: logprob differs by {gap:.3f}")
    return problems
