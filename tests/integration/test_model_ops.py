"""The new op families in real SGLang (Engine, CPU platform, fp32) on tiny zoo models.

Each model is served with the plugin's default configuration (every dispatched op on the
reference backend on CPU) and must give HF transformers' greedy ids (fp32, eager attention),
while the dispatch log shows the classes of the new ops that the architecture reaches:

- Gemma 3 text: GeluAndMul (tanh) and Gemma3RMSNorm (plain on 0.5.15; also the residual form,
  and on ``[tokens, heads, head_dim]`` q/k, on 0.5.21+). Its rotary module is built but not
  called: SGLang's Gemma 3 applies its own rope unless the CPU has Intel AMX.
- GPT-2: NewGELU.

DeepseekScalingRotaryEmbedding is reached by DeepSeek-V2, which needs the CPU platform's
PyTorch routes (``test_zoo_routes.py`` serves it, and on 0.5.15, where its module does not
import without CUTLASS, checks its refusal); the op is also tested against SGLang's own
``forward_native`` in ``tests/backends/test_reference_vs_sglang.py``. The vision ops
(QuickGELU, LayerNorm, MRotaryEmbedding) are tested there too.
"""

from __future__ import annotations

import pytest
from integration_helpers import clean_env, dispatch_lines, hf_greedy, run_engine

pytestmark = [pytest.mark.sglang, pytest.mark.slow]

REFERENCE = "[OOT-DISPATCH] {} \u2192 reference(reference)"
CASES = {
    "gemma3": {"GeluAndMul", "Gemma3RMSNorm"},
    "gpt2": {"NewGELU"},
}


@pytest.fixture(scope="module")
def prompts() -> list[list[int]]:
    from transformers import AutoTokenizer

    from sglang_fl.models import zoo

    tokenizer = AutoTokenizer.from_pretrained(zoo.ensure_zoo_model("qwen2"))
    return [tokenizer.encode(text) for text in zoo.PROMPTS]


@pytest.mark.parametrize("name", sorted(CASES))
def test_served_with_the_new_ops_matches_hf_greedy(name, prompts, tmp_path):
    from sglang_fl.models.zoo import GREEDY_STEPS, ensure_zoo_model

    model = ensure_zoo_model(name)
    log = tmp_path / "dispatch.log"
    result, output = run_engine(model, prompts, GREEDY_STEPS,
                                clean_env(SGLANG_FL_DISPATCH_LOG=str(log)))  # fmt: skip
    assert result is not None, output[-4000:]
    assert result["output_ids"] == hf_greedy(model, prompts, GREEDY_STEPS, "eager")
    lines = dispatch_lines(log)
    assert {REFERENCE.format(cls) for cls in CASES[name]} <= lines, sorted(lines)
