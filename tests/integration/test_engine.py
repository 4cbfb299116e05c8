"""Real SGLang (``sglang.Engine``) on the embedded model through sglang-fl, loaded by entry points.

Every configuration runs in its own process (SGLang loads plugins once per process). The
expected dispatch-log lines are the spec-000 recipes adapted to the CPU platform, where the
reference backend is the only available implementation (the flagos kernels need a GPU).
"""

from __future__ import annotations

import time

import pytest
from flagcx_double import MULTIPROCESS_ENV, trace_calls
from integration_helpers import (
    CONTRACT_BUNDLE,
    clean_env,
    dispatch_lines,
    hf_greedy,
    install_contract_bundle,
    run_engine,
    with_pythonpath,
)

pytestmark = [pytest.mark.sglang, pytest.mark.slow]

MAX_NEW = 20
LINE = "[OOT-DISPATCH] {} \u2192 reference(reference)"
ALL_LINES = {LINE.format(c) for c in ("SiluAndMul", "RMSNorm", "RotaryEmbedding")}


@pytest.fixture(scope="module")
def prompts(embedded_model) -> list[list[int]]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(embedded_model)
    texts = ["The quick brown fox", "Once upon a time, in a small village", "1 2 3"]
    ids = [tok.encode(t) for t in texts]
    chat = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True, tokenize=False,
    )  # fmt: skip
    ids.append(tok.encode(chat, add_special_tokens=False))
    return ids


@pytest.fixture(scope="module")
def hf_ids(embedded_model, prompts) -> list[list[int]]:
    return hf_greedy(embedded_model, prompts, MAX_NEW)


def _run(embedded_model, prompts, tmp_path, **env):
    log = tmp_path / "dispatch.log"
    result, output = run_engine(
        embedded_model, prompts, MAX_NEW, clean_env(SGLANG_FL_DISPATCH_LOG=str(log), **env)
    )
    assert result is not None, output[-4000:]
    return result, dispatch_lines(log), output


def test_default_config_matches_hf_greedy(embedded_model, prompts, hf_ids, tmp_path):
    result, lines, _ = _run(embedded_model, prompts, tmp_path)
    assert result["platform"] == "sglang_fl_cpu.platform.CpuPlatform"
    assert result["output_ids"] == hf_ids
    assert lines == ALL_LINES


def test_recipe_oot_blacklist_removes_rotary_line(embedded_model, prompts, hf_ids, tmp_path):
    config = tmp_path / "my_config.yaml"
    config.write_text("prefer: reference\noot_blacklist:\n  - RotaryEmbedding\n")
    result, lines, _ = _run(embedded_model, prompts, tmp_path, SGLANG_FL_CONFIG=str(config))
    assert lines == ALL_LINES - {LINE.format("RotaryEmbedding")}
    assert result["output_ids"] == hf_ids  # SGLang's own forward_native takes over


def test_recipe_per_op_with_logged_fallback(embedded_model, prompts, hf_ids, tmp_path):
    # prefer flagos: its kernels are unavailable on CPU, so the ops without a per-op entry fall
    # back to reference with a WARNING naming the skipped implementation and its reason.
    result, lines, output = _run(
        embedded_model, prompts, tmp_path,
        SGLANG_FL_PREFER="flagos", SGLANG_FL_PER_OP="rms_norm=reference;silu_and_mul=reference",
    )  # fmt: skip
    assert lines == ALL_LINES
    assert "Op 'rotary_embedding' fallback to 'reference'" in output
    assert "flagos: unavailable: Triton has no active GPU backend here" in output
    assert "Op 'rms_norm' fallback" not in output  # chosen by policy, not a fallback
    assert result["output_ids"] == hf_ids


def test_plugins_filter_excluding_us_runs_vanilla(embedded_model, prompts, hf_ids, tmp_path):
    # SGLANG_PLUGINS allow-lists general plugins by name; SGLANG_PLATFORM keeps our CPU
    # platform (SGLang has no CPU platform of its own without sgl_kernel).
    result, lines, output = _run(
        embedded_model, prompts, tmp_path, SGLANG_PLUGINS="__none__", SGLANG_PLATFORM="sglang_fl"
    )
    assert lines == set()
    assert "Layer 2: dispatching" not in output
    assert result["output_ids"] == hf_ids


def test_oot_disabled_leaves_every_op_on_sglangs_path(embedded_model, prompts, hf_ids, tmp_path):
    result, lines, output = _run(embedded_model, prompts, tmp_path, SGLANG_FL_OOT_ENABLED="0")
    assert lines == set()
    assert "Layer 2 (fused-op dispatch) disabled by SGLANG_FL_OOT_ENABLED=0" in output
    assert result["output_ids"] == hf_ids


def test_bad_config_fails_before_model_load(embedded_model, prompts, tmp_path):
    start = time.monotonic()
    result, output = run_engine(embedded_model, prompts, 4, clean_env(SGLANG_FL_PREFER="fastest"))
    assert result is None
    assert "SGLANG_FL_PREFER: invalid value 'fastest'" in output
    assert "accepted: flagos, vendor, reference" in output
    assert "Load weight" not in output and "load_weight" not in output
    assert time.monotonic() - start < 120


def test_tensor_parallel_2_over_gloo_matches_tp1(embedded_model, prompts, hf_ids, tmp_path):
    # Two scheduler processes on CPU, all-reduce over gloo (the CPU bundle's backend); the CPU
    # platform splits the cores between the ranks (SGLang otherwise wants one NUMA node each).
    log = tmp_path / "dispatch.log"
    env = clean_env(SGLANG_FL_DISPATCH_LOG=str(log))
    env.pop("SGLANG_CPU_OMP_THREADS_BIND", None)
    result, output = run_engine(
        embedded_model, prompts, MAX_NEW, env, tp_size=2, engine_kwargs={"top_logprobs": 2}
    )
    assert result is not None, output[-4000:]
    assert result["output_ids"] == hf_ids
    raw = log.read_text().splitlines()
    assert set(raw) == ALL_LINES and len(raw) == 2 * len(ALL_LINES)  # one set per rank
    # the logprobs the GPU test compares (test_tensor_parallel_cuda.py): the greedy token is
    # the top-1 at every position
    runs = zip(result["output_ids"], result["logprobs"], result["top"], strict=True)
    for ids, logprobs, top in runs:
        assert [t[0][1] for t in top] == ids and [t[0][0] for t in top] == logprobs
        assert all(t[0][0] >= t[1][0] for t in top)
    # gloo runs on SGLang's own torch.distributed path; sglang-fl only names the backend
    assert "Layer 3: distributed backend gloo (torch.distributed backend 'gloo'" in output


# FlagCX through real SGLang, against the FlagCX test double in multi-process mode: our side of
# the contract (FlagCX as SGLang's torch.distributed backend, end to end), not FlagCX itself.
# The shipped CPU bundle has no flagcx, so a test-only bundle that allows it is installed.


def _flagcx_env(tmp_path, flagcx_path: str, **extra: str) -> dict[str, str]:
    env = clean_env(SGLANG_FL_PLATFORM=CONTRACT_BUNDLE, FLAGCX_PATH=flagcx_path, **extra)
    env.pop("SGLANG_CPU_OMP_THREADS_BIND", None)
    return with_pythonpath(env, install_contract_bundle(tmp_path / "bundle"))


def test_tensor_parallel_2_over_flagcx_matches_tp1(
    embedded_model, prompts, hf_ids, flagcx_double_root, tmp_path
):
    trace = tmp_path / "flagcx-calls.txt"
    env = _flagcx_env(tmp_path, str(flagcx_double_root), FLAGCX_DOUBLE_TRACE=str(trace),
                      **MULTIPROCESS_ENV)  # fmt: skip
    result, output = run_engine(embedded_model, prompts, MAX_NEW, env, tp_size=2)
    assert result is not None, output[-4000:]
    assert result["output_ids"] == hf_ids
    assert (
        "Layer 3: distributed backend flagcx (torch.distributed backend 'sglang_fl_flagcx'"
        in output
    )
    assert "FlagCX 0.13.0 process group rank 1 of 2 on cpu" in output
    calls = trace_calls(trace)
    ranks_of = {name: {pid for pid, n, _ in calls if n == name} for _, name, _ in calls}
    assert len(ranks_of["flagcxCommInitRank"]) == 2  # both scheduler processes
    assert len(ranks_of["flagcxAllReduce"]) == 2  # the row-parallel layers' all-reduces
    assert len([c for c in calls if c[1] == "flagcxAllReduce"]) > 2 * MAX_NEW


def test_flagcx_without_a_library_fails_before_model_load(embedded_model, prompts, tmp_path):
    missing = tmp_path / "no-flagcx"
    start = time.monotonic()
    env = _flagcx_env(tmp_path, str(missing))
    result, output = run_engine(embedded_model, prompts, 4, env)
    assert result is None
    message = (
        f"sglang-fl: FLAGCX_PATH={missing}: no libflagcx.so found (tried "
        f"{missing}/lib/libflagcx.so, {missing}/build/lib/libflagcx.so)"
    )
    assert message in output
    assert "Load weight" not in output and "load_weight" not in output
    assert time.monotonic() - start < 120
