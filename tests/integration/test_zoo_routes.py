"""The zoo models that need the CPU bundle's PyTorch routes, served by real SGLang (Engine, CPU
platform, fp32, one engine per model), against HF transformers' greedy ids (fp32, eager).

- Gemma 2: SGLang's final logit softcapping is a Triton kernel (the ``final_logit_softcap``
  route) and its torch_native attention ignores the attention softcap
  (``attention_logit_softcap``). Without the first the engine crashes on the first request;
  without the second its ids are HF's SDPA path's, which skips the attention cap: the test
  checks that those differ from eager, so it would catch a cap that is not applied.
- DeepSeek-V2: MLA's prefill on torch_native (``mla_forward_method``); the dispatch log shows
  DeepseekScalingRotaryEmbedding on the reference backend. On 0.5.15 SGLang's DeepSeek module
  imports the CUDA-only CUTLASS DSL, so sglang-fl refuses the model at startup, before any
  weight loads, with one line. On 0.5.21 SGLang's own DeepSeek path (Layer 2 off too) differs
  from HF (docs/zoo.md), so there the ids are compared with that path.
"""

from __future__ import annotations

import pytest
from integration_helpers import clean_env, dispatch_lines, hf_greedy, run_engine

pytestmark = [pytest.mark.sglang, pytest.mark.slow]

REFERENCE = "[OOT-DISPATCH] {} \u2192 reference(reference)"
WEIGHTS_LOADING = "Loading weights"  # SGLang's progress line once a scheduler loads a model
CUTLASS_REFUSAL = (
    "sglang-fl: DeepseekV2ForCausalLM cannot be served with sglang {version} here: SGLang's "
    "model module sglang.srt.models.deepseek_v2 imports 'cutlass' (the CUDA-only CUTLASS DSL, "
    "nvidia-cutlass-dsl), which is not installed"
)


def _release() -> str:
    from sglang_fl.compat.versions import release, sglang_version

    return str(release(sglang_version()))


@pytest.fixture(scope="module")
def prompts() -> list[list[int]]:
    from transformers import AutoTokenizer

    from sglang_fl.models import zoo

    tokenizer = AutoTokenizer.from_pretrained(zoo.ensure_zoo_model("qwen2"))
    return [tokenizer.encode(text) for text in zoo.PROMPTS]


def _serve(name: str, prompts, tmp_path, **env: str) -> tuple[dict | None, set[str], str]:
    from sglang_fl.models.zoo import GREEDY_STEPS, ensure_zoo_model

    log = tmp_path / f"dispatch-{name}.log"
    result, output = run_engine(ensure_zoo_model(name), prompts, GREEDY_STEPS,
                                clean_env(SGLANG_FL_DISPATCH_LOG=str(log), **env))  # fmt: skip
    return result, dispatch_lines(log), output


def _hf(name: str, prompts, attention: str) -> list[list[int]]:
    from sglang_fl.models.zoo import GREEDY_STEPS, ensure_zoo_model

    return hf_greedy(ensure_zoo_model(name), prompts, GREEDY_STEPS, attention)


def test_gemma2_serves_with_both_softcaps_like_hf_eager(prompts, tmp_path):
    eager = _hf("gemma2", prompts, "eager")
    assert eager != _hf("gemma2", prompts, "sdpa"), "the attention softcap must change the ids"
    result, lines, output = _serve("gemma2", prompts, tmp_path)
    assert result is not None, output[-4000:]
    assert result["output_ids"] == eager
    reached = {"GeluAndMul", "GemmaRMSNorm", "RotaryEmbedding"}
    assert {REFERENCE.format(cls) for cls in reached} <= lines, sorted(lines)


def test_deepseek_v2_serves_like_hf_or_is_refused_at_startup(prompts, tmp_path):
    result, lines, output = _serve("deepseek-v2", prompts, tmp_path)
    if _release() == "0.5.15":
        assert result is None
        assert CUTLASS_REFUSAL.format(version="0.5.15") in output.splitlines(), output[-4000:]
        assert WEIGHTS_LOADING not in output
        return
    assert result is not None, output[-4000:]
    assert REFERENCE.format("DeepseekScalingRotaryEmbedding") in lines, sorted(lines)
    if _release() == "0.5.21":  # SGLang's own math differs from HF's there (docs/zoo.md)
        own, _, own_output = _serve("deepseek-v2", prompts, tmp_path, SGLANG_FL_OOT_ENABLED="0")
        assert own is not None, own_output[-4000:]
        assert result["output_ids"] == own["output_ids"]
        return
    assert result["output_ids"] == _hf("deepseek-v2", prompts, "eager")
