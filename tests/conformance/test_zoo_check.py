"""The conformance suite's zoo check (sglang_fl.conformance.zoo): choosing models, and the
verdict from a run's result (the real runs: tests/platforms/template/test_template_bundle.py)."""

from __future__ import annotations

import pytest

from sglang_fl.conformance import zoo as zoo_check
from sglang_fl.conformance.report import Status
from sglang_fl.conformance.serving import RunResult, RunSpec
from sglang_fl.errors import ConfigError
from sglang_fl.models.zoo import zoo_names

HF = [[1, 2, 3], [4, 5, 6]]
REFUSAL_LINE = (
    "sglang-fl: DeepseekV2ForCausalLM cannot be served with sglang 0.5.15 here: SGLang's model "
    "module sglang.srt.models.deepseek_v2 imports 'cutlass' (the CUDA-only CUTLASS DSL, "
    "nvidia-cutlass-dsl), which is not installed"
)


def run(ids, output="", dispatch=None) -> RunResult:
    return RunResult(RunSpec("zoo m", None, {}), ids, "pkg.P", dispatch or {}, output)


def test_model_choice():
    assert zoo_check.zoo_models("default") == zoo_check.DEFAULT_MODELS
    assert set(zoo_check.DEFAULT_MODELS) <= set(zoo_names())
    assert zoo_check.zoo_models("all") == tuple(zoo_names())
    assert zoo_check.zoo_models(" gpt2,qwen3 ") == ("gpt2", "qwen3")
    with pytest.raises(ConfigError, match=r"--zoo: invalid value 'gpt2,nope' \(unknown: nope\)"):
        zoo_check.zoo_models("gpt2,nope")
    with pytest.raises(ConfigError, match="no model named"):
        zoo_check.zoo_models(",")


def test_equal_to_hf_passes_and_lists_the_dispatch_without_running_the_own_path():
    def own_path():
        raise AssertionError("the own path runs only when HF differs")

    check = zoo_check._compare("m", run(HF, dispatch={"RMSNorm": {"reference"}}), HF, own_path)
    assert check.status is Status.PASS and check.part == "zoo"
    assert check.detail == "greedy ids equal HF transformers'; dispatched: RMSNorm reference"


def test_differing_from_hf_like_sglangs_own_path_passes_and_says_so():
    served = [[1, 2, 3], [4, 9, 6]]
    check = zoo_check._compare("m", run(served), HF, lambda: run(served))
    assert check.status is Status.PASS
    differs = "SGLang's own path (Layer 2 off), whose math differs from HF's at prompt 1 token 1"
    assert f"{differs}: 9 vs 5" in check.detail


def test_differing_from_both_fails_with_both_places():
    check = zoo_check._compare("m", run([[1, 2, 7], [4, 5, 6]]), HF, lambda: run(HF))
    assert check.status is Status.FAIL
    assert "prompt 0 token 2: 7 vs 3" in check.detail
    assert "from SGLang's own path (Layer 2 off) at prompt 0 token 2: 7 vs 3" in check.detail


def test_first_difference_handles_a_short_run():
    assert zoo_check.first_difference([[1, 2]], [[1, 2, 3]]) == "prompt 0 token 2: end vs 3"
    assert zoo_check.first_difference(HF, HF) is None


def test_a_startup_refusal_is_recognised_in_the_output():
    match = zoo_check.REFUSAL.search(f"[log] ERROR ...\n{REFUSAL_LINE}\n")
    assert match is not None and match["reason"] == REFUSAL_LINE.removeprefix("sglang-fl: ")
    assert zoo_check.REFUSAL.search("sglang-fl: SGLANG_FL_PLATFORM: invalid value 'x'") is None
