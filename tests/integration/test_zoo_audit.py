"""The zoo audit's own logic (tests/integration/zoo_audit.py), on canned engine output: no
engine runs here (the audit itself is run by hand, one SGLang release per environment)."""

from __future__ import annotations

from zoo_audit import (
    REFUSAL,
    REPORT_LINE,
    Crash,
    Run,
    _detail,
    _off_verdict,
    first_diff,
    parse_crash,
)

SCHEDULER_FAILURE = """\
[2026-12-07 19:40:01] Scheduler hit an exception: Traceback (most recent call last):
  File "/v/lib/python3.11/site-packages/sglang/srt/managers/scheduler.py", line 3050, in run
    self.event_loop()
  File "/v/lib/python3.11/site-packages/sglang/srt/layers/logits_processor.py", line 1066, in _get_logits
    fused_softcap(logits, self.final_logit_softcapping)
  File "/v/lib/python3.11/site-packages/sglang/kernels/ops/activation/softcap.py", line 64, in _softcap_logits
    softcap_inplace_logits_kernel[grid](
  File "/v/lib/python3.11/site-packages/triton/runtime/driver.py", line 20, in _create_driver
    raise RuntimeError(f"{len(active_drivers)} active drivers ({active_drivers}).")
RuntimeError: 0 active drivers ([]). There should only be one.

Traceback (most recent call last):
  File "/v/lib/python3.11/site-packages/sglang_fl/conformance/engine.py", line 80, in main
    result = generate(model_dir, prompts, max_new, tp_size, kwargs)
ConnectionResetError: [Errno 104] Connection reset by peer
"""  # noqa: E501


def test_parse_crash_takes_the_sglang_failure_not_the_launchers() -> None:
    crash = parse_crash(SCHEDULER_FAILURE)
    assert crash is not None
    assert crash.exception == "RuntimeError: 0 active drivers ([]). There should only be one."
    assert crash.sglang_frames == [
        "sglang/srt/managers/scheduler.py:3050 in run",
        "sglang/srt/layers/logits_processor.py:1066 in _get_logits",
        "sglang/kernels/ops/activation/softcap.py:64 in _softcap_logits",
    ]
    assert crash.innermost == "triton/runtime/driver.py:20 in _create_driver"


def test_parse_crash_without_sglang_frames_takes_the_last_traceback() -> None:
    crash = parse_crash(SCHEDULER_FAILURE.replace("/sglang/", "/other/"))
    assert crash is not None and crash.exception.startswith("ConnectionResetError")
    assert parse_crash("no traceback here\n") is None


def test_report_line_gives_the_model_and_both_class_lists() -> None:
    line = (
        "[2026-12-07 19:40:00] INFO sglang_fl: Layer 2: Qwen3MoeForCausalLM reaches the fused "
        "ops RMSNorm, RotaryEmbedding, TopK; on SGLang's own path: TopK\n"
    )
    match = REPORT_LINE.search(line)
    assert match is not None
    assert match["model"] == "Qwen3MoeForCausalLM"
    assert match["reached"] == "RMSNorm, RotaryEmbedding, TopK"
    assert match["own"] == "TopK"


def test_first_diff_finds_prompt_and_position() -> None:
    assert first_diff([[1, 2], [3, 4]], [[1, 2], [3, 4]]) is None
    assert first_diff([[1, 2], [3, 4]], [[1, 2], [3, 5]]) == {
        "prompt": 1, "pos": 1, "hf": 4, "sglang": 5,
    }  # fmt: skip


def test_layer2_off_verdicts() -> None:
    hf, other = [[1, 2]], [[1, 3]]
    plugin = Run(ids=other)
    assert _off_verdict(Run(ids=hf), plugin, hf) == "matches HF"
    assert _off_verdict(Run(ids=other), plugin, hf) == "differs from HF the same way"
    assert _off_verdict(Run(ids=[[9, 9]]), plugin, hf) == "differs from HF differently"
    crashed = Run(ids=None, crash=Crash(exception="E: x"))
    assert _off_verdict(crashed, Run(ids=None, crash=Crash(exception="E: x")), hf) == (
        "crashes the same way"
    )
    assert _off_verdict(crashed, plugin, hf) == "crashes differently"


def test_detail_names_a_fallback_class_and_the_crash_site() -> None:
    crash = {"exception": "ValueError: bad | style", "sglang_frames": ["a.py:1 in f"]}
    finding = {
        "architecture": "DeepseekV2ForCausalLM",
        "first_diff": None,
        "plugin": {"sglang_model": "TransformersForCausalLM", "crash": crash},
        "import_error": None,
        "layer2_off_verdict": "crashes the same way",
    }
    assert _detail(finding) == (
        "SGLang built TransformersForCausalLM; `ValueError: bad \\| style` at `a.py:1 in f`; "
        "Layer 2 off: crashes the same way"
    )


def test_a_startup_refusal_is_recognised_and_shown() -> None:
    line = (
        "DeepseekV2ForCausalLM cannot be served with sglang 0.5.15 here: SGLang's model module "
        "sglang.srt.models.deepseek_v2 imports 'cutlass' (the CUDA-only CUTLASS DSL, "
        "nvidia-cutlass-dsl), which is not installed"
    )
    output = f"[2026-12-07 21:00:00] ERROR sglang_fl: sglang-fl: {line}\nsglang-fl: {line}\n"
    match = REFUSAL.search(output)
    assert match is not None and match["reason"] == line
    assert REFUSAL.search("sglang-fl: SGLANG_FL_PLATFORM: invalid value 'x'\n") is None
    finding = {"architecture": "DeepseekV2ForCausalLM", "plugin": {"refusal": line}}
    assert _detail(finding) == f"refused at startup: `{line}`"
