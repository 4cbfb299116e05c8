"""Helpers for the integration tests: run SGLang in subprocesses, greedy reference with HF."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# The same runner the conformance suite uses: one Engine per process, a RESULT line on stdout.
RUNNER = ("-m", "sglang_fl.conformance.engine")
OUR_PREFIXES = ("SGLANG_FL_", "USE_FLAGGEMS", "SGLANG_FLAGGEMS_", "FLAGCX_PATH", "SGLANG_PLUGINS",
                "SGLANG_PLATFORM")  # fmt: skip


def clean_env(**overrides: str) -> dict[str, str]:
    """The current environment minus every variable that steers sglang-fl, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(OUR_PREFIXES)}
    env.update(overrides)
    return env


def run_engine(model: Path, prompts: list[list[int]], max_new: int, env: dict[str, str],
               timeout: float = 900, tp_size: int = 1,
               engine_kwargs: dict | None = None) -> tuple[dict | None, str]:  # fmt: skip
    """(result, combined output). result is None when the process did not succeed."""
    argv = [sys.executable, *RUNNER, str(model), json.dumps(prompts), str(max_new),
            str(tp_size), json.dumps(engine_kwargs or {})]  # fmt: skip
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    output = proc.stdout + proc.stderr
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT ") and proc.returncode == 0:
            return json.loads(line[len("RESULT ") :]), output
    return None, output


def hf_greedy(model: Path, prompts: list[list[int]], max_new: int) -> list[list[int]]:
    """Greedy continuation with HF transformers in fp32, one full forward per step (no cache)."""
    import torch
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(model, torch_dtype=torch.float32).eval()
    results = []
    with torch.no_grad():
        for prompt in prompts:
            ids = list(prompt)
            for _ in range(max_new):
                logits = hf(torch.tensor([ids])).logits[0, -1]
                ids.append(int(logits.argmax()))
            results.append(ids[len(prompt) :])
    return results


def dispatch_lines(path: Path) -> set[str]:
    return set(path.read_text(encoding="utf-8").splitlines()) if path.exists() else set()
