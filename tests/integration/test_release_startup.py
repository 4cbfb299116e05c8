"""The installed SGLang release and sglang-fl, end to end in real SGLang (Engine, CPU).

- Under the plugin, SGLang prints no deprecation warning at startup (a platform hook of an
  older API would earn one on 0.5.22+).
- A release newer than the tested train is refused in one line before any model loads; with
  ``SGLANG_FL_ALLOW_UNTESTED_SGLANG=1`` it runs only if the platform contract passes. The
  "newer" release is the installed one under a newer version number: a dist-info that shadows
  the real one on PYTHONPATH, so the check sees 0.5.99 and everything else is real. On the
  newest tested release the contract passes; on an older one it must fail, exactly as for a
  future release that removed hooks sglang-fl defines.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from integration_helpers import clean_env, dispatch_lines, hf_greedy, run_engine, with_pythonpath
from release_view import has_capability_struct

from sglang_fl.compat.versions import NEWEST, SUPPORTED_RANGE, TESTED, release, sglang_version

pytestmark = [pytest.mark.sglang, pytest.mark.slow]

MAX_NEW = 8
NEWER = "0.5.99"
LINES = {f"[OOT-DISPATCH] {c} \u2192 reference(reference)"
         for c in ("SiluAndMul", "RMSNorm", "RotaryEmbedding")}  # fmt: skip


@pytest.fixture(scope="module")
def prompts() -> list[list[int]]:
    return [[1, 2, 3, 4], [40, 41, 42]]


@pytest.fixture(scope="module")
def hf_ids(embedded_model, prompts) -> list[list[int]]:
    return hf_greedy(embedded_model, prompts, MAX_NEW)


def newer_release(root: Path) -> str:
    """A PYTHONPATH entry on which ``importlib.metadata`` finds sglang NEWER."""
    info = root / f"sglang-{NEWER}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: sglang\nVersion: {NEWER}\n")
    return str(root)


def test_startup_prints_no_deprecation_warning(embedded_model, prompts, hf_ids, tmp_path):
    log = tmp_path / "dispatch.log"
    result, output = run_engine(embedded_model, prompts, MAX_NEW,
                                clean_env(SGLANG_FL_DISPATCH_LOG=str(log)))  # fmt: skip
    assert result is not None, output[-4000:]
    assert result["output_ids"] == hf_ids
    deprecations = [line for line in output.splitlines() if "deprecat" in line.lower()]
    assert deprecations == []
    if has_capability_struct():  # post_load_model (0.5.22+) reports what the model reaches
        assert (
            "Layer 2: Qwen2ForCausalLM reaches the fused ops RMSNorm, RotaryEmbedding, "
            "SiluAndMul; on SGLang's own path: (none)"
        ) in output


def test_a_newer_release_is_refused_in_one_line_before_model_load(embedded_model, prompts,
                                                                   tmp_path):  # fmt: skip
    start = time.monotonic()
    env = with_pythonpath(clean_env(), newer_release(tmp_path / "site"))
    result, output = run_engine(embedded_model, prompts, MAX_NEW, env)
    assert result is None
    assert (
        f"sglang-fl: sglang {NEWER} is installed, newer than sglang-fl is tested with "
        f"({SUPPORTED_RANGE}; tested: {', '.join(TESTED)}); install one of those, or set "
        "SGLANG_FL_ALLOW_UNTESTED_SGLANG=1 to check this release's platform API at startup and "
        "run on it untested"
    ) in output
    assert "Load weight" not in output and "load_weight" not in output
    assert time.monotonic() - start < 120


def test_a_newer_release_with_the_opt_in_runs_only_if_the_platform_contract_passes(
    embedded_model, prompts, hf_ids, tmp_path
):
    log = tmp_path / "dispatch.log"
    env = clean_env(SGLANG_FL_ALLOW_UNTESTED_SGLANG="1", SGLANG_FL_DISPATCH_LOG=str(log))
    env = with_pythonpath(env, newer_release(tmp_path / "site"))
    result, output = run_engine(embedded_model, prompts, MAX_NEW, env)
    if release(sglang_version()) == NEWEST:
        # the newest API sglang-fl knows, under a newer number: the contract passes
        assert result is not None, output[-4000:]
        assert result["output_ids"] == hf_ids
        assert dispatch_lines(log) == LINES
        assert (
            f"sglang {NEWER} is newer than sglang-fl is tested with ({SUPPORTED_RANGE}); "
            "running on it untested (SGLANG_FL_ALLOW_UNTESTED_SGLANG=1): the platform contract "
            "of sglang_fl_cpu.platform.CpuPlatform passed"
        ) in output
    else:
        # an older API under a newer number: hooks the newest release has are missing, as if
        # a newer release had removed them; refused, naming them
        assert result is None
        assert (
            f"sglang-fl: sglang {NEWER} is newer than sglang-fl is tested with "
            f"({SUPPORTED_RANGE}) and sglang_fl_cpu.platform.CpuPlatform does not fit its "
            "platform API: "
        ) in output
        assert (
            "get_group_coordinator_device: defined by FLPlatform, but sglang 0.5.99's "
            "SRTPlatform has no such hook (removed or renamed?)"
        ) in output
        assert "Load weight" not in output and "load_weight" not in output
