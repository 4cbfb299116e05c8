"""Every zoo model served by real SGLang through the CPU platform (Engine, fp32, one engine per
model, the default sglang-fl configuration: every dispatched op on ``reference``).

For each model: the greedy ids equal HF transformers' (fp32, eager attention, one full forward
per step), or, where SGLang's own math differs from HF's, the reference named in
:data:`EXPECTED` with the reason; and the dispatch log names exactly the fused-op classes
sglang-fl dispatches that the architecture reaches (a class missing would be an op left on
SGLang's path unseen; one too many, an op the model does not reach).

The models that need the CPU bundle's PyTorch routes (``sglang_fl/compat/torch_routes.py``):

- Gemma 2: SGLang's final logit softcapping is a Triton kernel (``final_logit_softcap``) and its
  torch_native attention ignores the attention softcap (``attention_logit_softcap``). Without
  the first the engine crashes on the first request; without the second its ids are HF's SDPA
  path's, which skips the attention cap: a check here shows those differ from eager, so a cap
  that is not applied fails the test.
- DeepSeek-V2: MLA's prefill on torch_native (``mla_forward_method``). On 0.5.15 SGLang's
  DeepSeek module imports the CUDA-only CUTLASS DSL, so sglang-fl refuses the model at startup,
  before any weight loads, with one line.

docs/zoo.md has the table of results per release and what each model reaches.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from integration_helpers import clean_env, dispatch_lines, hf_greedy, run_engine
from packaging.version import Version

from sglang_fl.dispatch.dispatch_log import parse_line
from sglang_fl.models.zoo import zoo_names

pytestmark = [pytest.mark.sglang, pytest.mark.slow]

WEIGHTS_LOADING = "Loading weights"  # SGLang's progress line once a scheduler loads a model
CUTLASS_REFUSAL = (
    "sglang-fl: DeepseekV2ForCausalLM cannot be served with sglang {version} here: SGLang's "
    "model module sglang.srt.models.deepseek_v2 imports 'cutlass' (the CUDA-only CUTLASS DSL, "
    "nvidia-cutlass-dsl), which is not installed"
)
NORM_ROPE_SILU = frozenset({"RMSNorm", "RotaryEmbedding", "SiluAndMul"})


@dataclass(frozen=True)
class Expected:
    """What serving one zoo model must show.

    dispatched:   the fused-op classes in the dispatch log (the classes it reaches that
                  sglang-fl dispatches; MoE TopK and experts stay on SGLang's path for now).
    hf_config:    config changes for the HF reference where SGLang implements the architecture
                  differently (``why``).
    hf_fixed_in:  the transformers release that fixed HF's implementation (``why``); before it,
                  the ids must equal SGLang's own path (Layer 2 off) instead of HF's.
    refused_on:   releases where sglang-fl refuses the model at startup (``CUTLASS_REFUSAL``).
    """

    dispatched: frozenset[str]
    hf_config: dict[str, object] = field(default_factory=dict)
    why: str = ""
    hf_fixed_in: str | None = None
    refused_on: frozenset[str] = frozenset()


EXPECTED: dict[str, Expected] = {
    "llama3": Expected(frozenset({"Llama3RotaryEmbedding", "RMSNorm", "SiluAndMul"})),
    "mistral": Expected(
        NORM_ROPE_SILU,
        hf_config={"sliding_window": None},
        why="SGLang serves MistralForCausalLM with its Llama attention, which has no sliding "
        "window (sglang/srt/models/llama.py: RadixAttention without sliding_window_size)",
    ),
    "qwen2": Expected(NORM_ROPE_SILU),
    "qwen3": Expected(NORM_ROPE_SILU),
    # SGLang's native MoE path builds a SiluAndMul per call (layers/moe/fused_moe_native.py).
    "qwen3-moe": Expected(NORM_ROPE_SILU),
    "gemma2": Expected(frozenset({"GeluAndMul", "GemmaRMSNorm", "RotaryEmbedding"})),
    # SGLang's Gemma 3 builds RotaryEmbedding but applies its own rope unless the CPU has AMX.
    "gemma3": Expected(frozenset({"GeluAndMul", "Gemma3RMSNorm"})),
    "phi3": Expected(frozenset({"RMSNorm", "SiluAndMul"})),
    "olmo2": Expected(NORM_ROPE_SILU),
    "glm4": Expected(NORM_ROPE_SILU),
    "deepseek-v2": Expected(
        frozenset({"DeepseekScalingRotaryEmbedding", "RMSNorm", "SiluAndMul"}),
        hf_fixed_in="5.19",
        why="transformers before 5.19 (5.12.1 is SGLang 0.5.21's pin) leaves the yarn mscale² "
        "out of DeepSeek-V2's attention scale (modeling_deepseek_v2.py: qk_head_dim ** -0.5); "
        "5.19 applies it, as SGLang does on every release (compute_mla_mscale_scaling)",
        refused_on=frozenset({"0.5.15"}),
    ),
    "gpt2": Expected(frozenset({"NewGELU"})),
}


def _release() -> str:
    from sglang_fl.compat.versions import release, sglang_version

    return str(release(sglang_version()))


def _transformers() -> Version:
    from importlib.metadata import version

    return Version(version("transformers"))


@pytest.fixture(scope="module")
def prompts() -> list[list[int]]:
    from sglang_fl.models.zoo import prompt_ids

    return prompt_ids()


def _serve(name: str, prompts, tmp_path, **env: str) -> tuple[dict | None, dict[str, str], str]:
    """(result, the dispatch log as op class -> implementation, the engine's output)."""
    from sglang_fl.models.zoo import GREEDY_STEPS, ensure_zoo_model

    log = tmp_path / f"dispatch-{name}.log"
    result, output = run_engine(ensure_zoo_model(name), prompts, GREEDY_STEPS,
                                clean_env(SGLANG_FL_DISPATCH_LOG=str(log), **env))  # fmt: skip
    entries = filter(None, map(parse_line, dispatch_lines(log)))
    return result, {cls: f"{kind}({impl})" for cls, kind, impl in entries}, output


def _hf(name: str, prompts, attention: str = "eager", **config) -> list[list[int]]:
    from sglang_fl.models.zoo import GREEDY_STEPS, ensure_zoo_model

    return hf_greedy(ensure_zoo_model(name), prompts, GREEDY_STEPS, attention, **config)


def test_every_zoo_model_has_an_expectation():
    assert set(EXPECTED) == set(zoo_names())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_zoo_model_serves_like_its_reference(name, prompts, tmp_path):
    expected, release = EXPECTED[name], _release()
    result, dispatched, output = _serve(name, prompts, tmp_path)
    if release in expected.refused_on:
        assert result is None
        assert CUTLASS_REFUSAL.format(version=release) in output.splitlines(), output[-4000:]
        assert WEIGHTS_LOADING not in output
        return
    assert result is not None, output[-4000:]
    assert set(dispatched) == expected.dispatched
    assert set(dispatched.values()) == {"reference(reference)"}  # the CPU bundle's default
    if expected.hf_fixed_in and _transformers() < Version(expected.hf_fixed_in):
        own, _, own_output = _serve(name, prompts, tmp_path, SGLANG_FL_OOT_ENABLED="0")
        assert own is not None, own_output[-4000:]
        reference = own["output_ids"]
    else:
        reference = _hf(name, prompts, **expected.hf_config)
    assert result["output_ids"] == reference


def test_gemma2_attention_softcap_changes_the_reference(prompts):
    """HF's SDPA path skips the attention softcap: the zoo's Gemma 2 must be sized so that the
    cap changes greedy ids, or the serving test could not catch a cap left out."""
    assert _hf("gemma2", prompts, "eager") != _hf("gemma2", prompts, "sdpa")


def test_mistral_window_changes_the_hf_ids(prompts):
    """The zoo's Mistral window must matter, so the reference without it is a real choice."""
    assert _hf("mistral", prompts) != _hf("mistral", prompts, sliding_window=None)
