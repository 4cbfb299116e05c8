"""``sglang-fl bench e2e``: SGLang without the plugin vs with it, end to end, on one GPU.

One invocation runs every configuration in its own process (SGLang loads plugins and sglang-fl
reads its settings once per process) on the same Qwen2.5-0.5B-shaped model with
``load_format=dummy`` (random weights, no download), the same prompts and the same server
arguments: bf16, decode CUDA graphs on, prefill graphs off, Triton attention and PyTorch
sampling (the kernels every SGLang CUDA install has), greedy, ``ignore_eos``. Each batch size
is run ``repeats`` times with fresh random prompts (the same across configurations, so the
radix cache never turns a repeat into a cache hit); the best and the spread are reported, and
every configuration is printed as a ratio to the no-plugin run.

Each configuration also writes a dispatch log, so the run shows which implementation every op
got under it.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sglang_fl.errors import BenchmarkError

# Qwen2.5-0.5B's architecture (config.json of Qwen/Qwen2.5-0.5B-Instruct).
QWEN25_05B = {
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_act": "silu",
    "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
    "num_attention_heads": 14, "num_key_value_heads": 2, "max_position_embeddings": 32768,
    "max_window_layers": 24, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
    "sliding_window": 32768, "use_sliding_window": False, "tie_word_embeddings": True,
    "torch_dtype": "bfloat16", "vocab_size": 151936, "bos_token_id": 151643,
    "eos_token_id": 151645, "attention_dropout": 0.0, "initializer_range": 0.02,
    "use_cache": True,
}  # fmt: skip

BATCH_SIZES = (1, 64, 256)
# Decode graphs at powers of two up to the largest batch (SGLang pads a batch to the next
# captured size); fewer captures than SGLang's default list keep each start short.
GRAPH_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
OUTPUT_TOKENS = 128
INPUT_TOKENS = (128, 256)  # prompt length range


@dataclass(frozen=True)
class Configuration:
    name: str
    env: dict[str, str] = field(default_factory=dict)
    plugin: bool = True


CONFIGURATIONS = (
    # SGLang's plugin allow-list naming no installed plugin: neither our general plugin nor our
    # platform loads, SGLang uses its in-tree CUDA platform.
    Configuration("sglang (no plugin)", {"SGLANG_PLUGINS": "__none__"}, plugin=False),
    Configuration("sglang-fl default"),
    Configuration("USE_FLAGGEMS=0", {"USE_FLAGGEMS": "0"}),
    Configuration("prefer: vendor", {"SGLANG_FL_PREFER": "vendor"}),
    Configuration("prefer: reference", {"SGLANG_FL_PREFER": "reference"}),
)


def write_model(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(QWEN25_05B, indent=1), encoding="utf-8")
    return directory


def prompts(batch: int, repeat: int) -> list[list[int]]:
    import random

    rng = random.Random(batch * 1000 + repeat)
    vocab = QWEN25_05B["vocab_size"]
    return [[rng.randrange(vocab) for _ in range(rng.randint(*INPUT_TOKENS))] for _ in range(batch)]


# The server arguments every GPU comparison (this benchmark, the GPU serving and TP tests) uses
# on both sides: kernels every CUDA SGLang install has (no flashinfer/FA3 needed), bf16,
# decode CUDA graphs on, prefill graphs off (sglang-fl's NVIDIA platform runs without them).
CUDA_COMPARISON_ARGS: dict[str, Any] = {
    "dtype": "bfloat16", "attention_backend": "triton", "sampling_backend": "pytorch",
    "cuda_graph_backend_prefill": "disabled",
}  # fmt: skip


def engine_kwargs(model: Path, max_batch: int) -> dict[str, Any]:
    return {
        **CUDA_COMPARISON_ARGS, "model_path": str(model), "load_format": "dummy",
        "skip_tokenizer_init": True,
        "cuda_graph_bs_decode": [b for b in GRAPH_BATCHES if b <= max_batch],
        "max_running_requests": max_batch,
        "mem_fraction_static": 0.6, "log_level": "warning",
    }  # fmt: skip


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Inside one configuration's process: start the engine, warm up, time every batch size."""
    import sglang

    engine = sglang.Engine(**engine_kwargs(Path(spec["model"]), max(spec["batch_sizes"])))
    sampling = {"temperature": 0.0, "max_new_tokens": spec["output_tokens"], "ignore_eos": True}
    try:
        for batch in spec["batch_sizes"]:  # warm-up: one-off compilation stays out of the timing
            engine.generate(input_ids=prompts(batch, -1), sampling_params=sampling)
        runs: dict[str, list[float]] = {}
        for batch in spec["batch_sizes"]:
            rates = []
            for repeat in range(spec["repeats"]):
                ids = prompts(batch, repeat)
                start = time.perf_counter()
                outputs = engine.generate(input_ids=ids, sampling_params=sampling)
                elapsed = time.perf_counter() - start
                produced = sum(len(o["output_ids"]) for o in outputs)
                rates.append(produced / elapsed)
            runs[str(batch)] = rates
        from sglang.srt.platforms import current_platform

        platform = type(current_platform).__module__ + "." + type(current_platform).__name__
    finally:
        engine.shutdown()
    return {"tok_per_s": runs, "platform": platform}


def run_configuration(conf: Configuration, spec: dict[str, Any], logdir: Path) -> dict[str, Any]:
    from sglang_fl.config import without_steering

    env = without_steering(os.environ)  # then each configuration sets its own
    dispatch_log = logdir / f"dispatch-{_slug(conf.name)}.log"
    dispatch_log.unlink(missing_ok=True)
    env.update(conf.env)
    if conf.plugin:
        env["SGLANG_FL_DISPATCH_LOG"] = str(dispatch_log)
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "sglang_fl.bench.e2e", "--worker", json.dumps(spec)],
            env=env, capture_output=True, text=True, timeout=spec["timeout"],
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise BenchmarkError(
            f"bench e2e: configuration {conf.name!r} did not finish within {spec['timeout']:g} s "
            "(--timeout sets the limit per configuration)"
        ) from None
    result: dict[str, Any] = {"name": conf.name, "env": conf.env, "returncode": proc.returncode,
                              "wall_s": round(time.perf_counter() - start, 1)}  # fmt: skip
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result.update(json.loads(line[len("RESULT ") :]))
    if "tok_per_s" not in result:
        output = (proc.stdout + proc.stderr)[-3000:]
        result["error"] = output or f"the worker exited {proc.returncode} without a RESULT line"
    if dispatch_log.exists():
        lines = dispatch_log.read_text(encoding="utf-8").splitlines()
        result["dispatch"] = sorted(set(lines))
    return result


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-")


def run(
    batch_sizes: tuple[int, ...] = BATCH_SIZES,
    repeats: int = 3,
    output_tokens: int = OUTPUT_TOKENS,
    configurations: tuple[Configuration, ...] = CONFIGURATIONS,
    timeout: float = 900,
    rounds: int = 1,
) -> dict[str, Any]:
    """``rounds`` > 1 starts every configuration's process again, in reverse order every other
    round: process-to-process variation (allocation, clocks) is most of this benchmark's noise,
    and alternating the order keeps a drift over the run from favouring one configuration."""
    with tempfile.TemporaryDirectory(prefix="sglang-fl-e2e-") as tmp:
        model = write_model(Path(tmp) / "qwen2.5-0.5b-shaped")
        spec = {"model": str(model), "batch_sizes": list(batch_sizes), "repeats": repeats,
                "output_tokens": output_tokens, "timeout": timeout, "rounds": rounds}  # fmt: skip
        by_name: dict[str, list[dict[str, Any]]] = {c.name: [] for c in configurations}
        for round_index in range(rounds):
            order = configurations if round_index % 2 == 0 else configurations[::-1]
            for conf in order:
                by_name[conf.name].append(run_configuration(conf, spec, Path(tmp)))
                # progress on stderr: stdout carries the report (``--json``)
                print("CONFIGURATION " + json.dumps(by_name[conf.name][-1]), file=sys.stderr,
                      flush=True)  # fmt: skip
    results = [merge_rounds(runs) for runs in by_name.values()]
    return {"spec": {k: v for k, v in spec.items() if k != "model"}, "results": results}


def merge_rounds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One configuration's processes as one result: every repeat of every round in
    ``tok_per_s`` (per-round lists kept under ``rounds``); any failed round fails the result."""
    merged = {**runs[0], "wall_s": [r["wall_s"] for r in runs]}
    merged["rounds"] = [r.get("tok_per_s") for r in runs]
    errors = [r["error"] for r in runs if "error" in r]
    if errors:
        merged["error"] = errors[0]
        merged.pop("tok_per_s", None)
    else:
        merged["tok_per_s"] = {
            batch: [rate for r in runs for rate in r["tok_per_s"][batch]]
            for batch in runs[0]["tok_per_s"]
        }
    merged["dispatch"] = sorted({line for r in runs for line in r.get("dispatch", [])})
    return merged


def summary_rows(report: dict[str, Any]) -> list[list[str]]:
    """One row per configuration and batch size: best tok/s (spread over the repeats), and the
    best-to-best and median-to-median ratios to the no-plugin run."""
    results = report["results"]
    base = results[0].get("tok_per_s", {})
    rows = []
    for res in results:
        row = [res["name"]]
        for batch in map(str, report["spec"]["batch_sizes"]):
            rates = res.get("tok_per_s", {}).get(batch)
            if not rates:
                row.append("failed")
                continue
            best, spread = max(rates), (max(rates) - min(rates)) / max(rates)
            if base.get(batch):
                ratios = f"{best / max(base[batch]):.3f}x / " + (
                    f"{statistics.median(rates) / statistics.median(base[batch]):.3f}x"
                )
            else:
                ratios = "-"
            row.append(f"{best:,.0f} (±{spread:.1%}) {ratios}")
        rows.append(row)
    return rows


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        print("RESULT " + json.dumps(worker(json.loads(sys.argv[2]))), flush=True)
    else:
        raise SystemExit("internal worker entry point: use `sglang-fl bench e2e`")
