"""Real SGLang on an NVIDIA GPU: sglang-fl (NVIDIA platform) vs SGLang without the plugin.

GPU host only (``cuda`` marker). The embedded model (real, seeded weights) in bf16 with decode
CUDA graphs on; Triton attention and PyTorch sampling (present in every CUDA SGLang install),
prefill graphs off, for both sides. Greedy, several prompts, 32 tokens:

- the plugin's default configuration gives the same ids as SGLang without it; where bf16
  rounding flips a near-tie, SGLang's own top-2 there must be within ``FLIP_BOUND`` nats, and
  the ids before it identical (``integration_helpers.compare_bounded``);
- logprobs of the common prefix agree within ``LOGPROB_BOUND`` nats;
- the dispatch log shows the spec-000 recipes on NVIDIA: default -> flagos(flagos),
  ``prefer: vendor`` -> vendor(vendor.nvidia), ``prefer: reference`` -> reference(reference);
- under the plugin SGLang captures the decode CUDA graphs (its own log says so), as without it.

Both bounds are two bf16 steps of the logits. The embedded model's logits have std ~16 (its
lm_head is scaled so that a dropped op changes the output), so its top logits lie in [32, 64),
where bf16 values are 0.25 apart: any last-bit difference upstream moves a logprob by up to
one step, and two tokens a step apart are tied at bf16 precision. Even ``prefer: vendor`` is
not bit-identical to no plugin (head size 16 takes SGLang's JIT rope kernel in-tree, the
sgl_kernel one through sglang-fl); on an H100 (2026-12-07) every configuration stayed within
one step. A wrong kernel diverges by whole nats at the first token.
"""

from __future__ import annotations

import re

import pytest
import torch
from integration_helpers import agreement, clean_env, compare_bounded, dispatch_lines, run_engine

from sglang_fl.bench.e2e import CUDA_COMPARISON_ARGS

pytestmark = [pytest.mark.cuda, pytest.mark.sglang, pytest.mark.slow]

MAX_NEW = 32
BF16_LOGIT_STEP = 0.25  # bf16 spacing in [32, 64), where the embedded model's top logits lie
FLIP_BOUND = 2 * BF16_LOGIT_STEP
LOGPROB_BOUND = 2 * BF16_LOGIT_STEP
CLASSES = ("SiluAndMul", "RMSNorm", "RotaryEmbedding")
ENGINE = {**CUDA_COMPARISON_ARGS, "cuda_graph_max_bs_decode": 8, "mem_fraction_static": 0.3,
          "top_logprobs": 2}  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def _needs_gpu():
    if not torch.cuda.is_available():
        pytest.skip("needs an NVIDIA GPU")


@pytest.fixture(scope="module")
def prompts(embedded_model) -> list[list[int]]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(embedded_model)
    texts = ["The quick brown fox", "Once upon a time, in a small village", "1 2 3 4 5",
             "In the beginning", "A B C"]  # fmt: skip
    return [tok.encode(t) for t in texts]


# SGLang's model runner logs this (at INFO) once it has captured the decode graphs.
DECODE_CAPTURED = re.compile(r"Capture target decode CUDA graph end\.")


def _serve(model, prompts, tmp_path, name, **env):
    log = tmp_path / f"{name}.log"
    result, output = run_engine(
        model, prompts, MAX_NEW, clean_env(SGLANG_FL_DISPATCH_LOG=str(log), **env),
        engine_kwargs={**ENGINE, "log_level": "info"},
    )  # fmt: skip
    assert result is not None, output[-6000:]
    result["decode_graphs"] = bool(DECODE_CAPTURED.search(output))
    return result, dispatch_lines(log)


@pytest.fixture(scope="module")
def vanilla(embedded_model, prompts, tmp_path_factory):
    result, lines = _serve(embedded_model, prompts, tmp_path_factory.mktemp("v"), "vanilla",
                           SGLANG_PLUGINS="__none__")  # fmt: skip
    assert not lines  # the plugin really was off
    assert result["platform"].endswith("CudaSRTPlatform")
    assert result["decode_graphs"]
    return result


def test_default_matches_sglang_without_plugin(embedded_model, prompts, vanilla, tmp_path):
    result, lines = _serve(embedded_model, prompts, tmp_path, "default")
    assert result["platform"] == "sglang_fl_nvidia.platform.NvidiaPlatform"
    assert result["decode_graphs"]  # the platform told SGLang it captures graphs
    assert lines == {f"[OOT-DISPATCH] {c} \u2192 flagos(flagos)" for c in CLASSES}
    problems = compare_bounded(vanilla, result, logprob_tol=LOGPROB_BOUND, tie_tol=FLIP_BOUND)
    print(f"default vs no plugin: {agreement(vanilla, result)}")
    assert not problems, problems


@pytest.mark.parametrize(
    ("prefer", "impl"), (("vendor", "vendor(vendor.nvidia)"), ("reference", "reference(reference)"))
)
def test_prefer_recipes(embedded_model, prompts, vanilla, tmp_path, prefer, impl):
    result, lines = _serve(embedded_model, prompts, tmp_path, prefer, SGLANG_FL_PREFER=prefer)
    assert lines == {f"[OOT-DISPATCH] {c} \u2192 {impl}" for c in CLASSES}
    problems = compare_bounded(vanilla, result, logprob_tol=LOGPROB_BOUND, tie_tol=FLIP_BOUND)
    print(f"prefer {prefer} vs no plugin: {agreement(vanilla, result)}")
    assert not problems, problems
