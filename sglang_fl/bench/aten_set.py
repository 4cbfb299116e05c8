"""``sglang-fl bench aten``: choose, by measurement, which ATen ops FlagGems replaces by default.

1. Trace: real SGLang serves a Qwen2.5-0.5B-shaped model (random weights) at batch 1, 64 and
   256 with ``SGLANG_FL_ATEN_TRACE`` set, so the scheduler records every ATen op it calls and
   each distinct argument signature (:mod:`sglang_fl.aten_trace`). CUDA graphs and
   overlap scheduling are off in that run so every op is dispatched eagerly in the traced thread.
2. Measure: every traced CUDA signature of an op that FlagGems implements is replayed with
   inputs drawn from the recorded shapes, strides, dtypes and value ranges, timed with
   PyTorch's own kernel and with FlagGems' (``flag_gems.use_gems(include=[op])``), both as an
   eager loop (host launch cost included: what prefill pays) and as CUDA-graph replays (device
   time: what decode pays).
3. Keep a FlagGems op only if it is not slower than PyTorch in both measures at every traced
   signature (ratio <= ``THRESHOLD``); the kept names are the platform's ``flagos_whitelist``
   (``--write-yaml`` rewrites that block of the platform YAML).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from sglang_fl.bench.timing import graph_us, host_us
from sglang_fl.errors import BenchmarkError
from sglang_fl.flaggems import flaggems_import_error

THRESHOLD = 1.0
MAX_SIGNATURES_PER_OP = 6
TRACE_BATCHES = (1, 64, 256)
TRACE_OUTPUT_TOKENS = 3
BEGIN_MARK = "# BEGIN measured ATen set"
END_MARK = "# END measured ATen set"


# --------------------------------------------------------------------------- 1. trace


def trace(out: Path, timeout: float = 600) -> Path:
    """Serve the model once with the trace on; returns the trace file (JSON lines)."""
    from sglang_fl.bench.e2e import write_model
    from sglang_fl.config import without_steering

    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    env = without_steering(os.environ)
    env.update({"SGLANG_FL_ATEN_TRACE": str(out), "USE_FLAGGEMS": "0"})
    with tempfile.TemporaryDirectory(prefix="sglang-fl-aten-") as tmp:
        model = write_model(Path(tmp) / "qwen2.5-0.5b-shaped")
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "sglang_fl.bench.aten_set", "--trace-worker", str(model)],
                env=env, capture_output=True, text=True, timeout=timeout,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise BenchmarkError(f"bench aten: the trace run took over {timeout:g} s") from None
    if proc.returncode != 0 or not out.exists():
        raise BenchmarkError(
            f"bench aten: the trace run exited {proc.returncode}"
            + ("" if out.exists() else " without writing a trace")
            + f"; its output ends: {output_tail(proc.stdout + proc.stderr)}"
        )
    return out


def output_tail(output: str, lines: int = 5) -> str:
    """The last non-empty lines of a worker's output, as one line (a traceback's last lines
    name the exception)."""
    kept = [line.strip() for line in output.splitlines() if line.strip()][-lines:]
    return " | ".join(kept) if kept else "(no output)"


def _trace_worker(model: str) -> None:
    import sglang

    from sglang_fl.bench.e2e import engine_kwargs, prompts

    kwargs = engine_kwargs(Path(model), max(TRACE_BATCHES))
    kwargs.update(disable_cuda_graph=True, disable_overlap_schedule=True)
    engine = sglang.Engine(**kwargs)
    sampling = {"temperature": 0.0, "max_new_tokens": TRACE_OUTPUT_TOKENS, "ignore_eos": True}
    try:
        for batch in TRACE_BATCHES:
            engine.generate(input_ids=prompts(batch, 0), sampling_params=sampling)
    finally:
        engine.shutdown()


def read_trace(path: Path) -> dict[str, list[dict[str, Any]]]:
    """op key -> distinct replayable CUDA signatures (a few, spread over sizes)."""
    by_op: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for line in path.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        if entry["replayable"] and _on_cuda(entry):
            by_op[entry["op"]][line] = entry
    return {op: _spread(list(found.values())) for op, found in by_op.items()}


def _on_cuda(entry: dict[str, Any]) -> bool:
    return any(_tensors(a, "cuda") for a in [*entry["args"], *entry["kwargs"].values()])


def _tensors(spec: Any, device: str) -> bool:
    if isinstance(spec, dict) and spec.get("tensor"):
        return spec["device"] == device
    if isinstance(spec, dict) and "list" in spec:
        return any(_tensors(s, device) for s in spec["list"])
    return False


def _numel(entry: dict[str, Any]) -> int:
    def size(spec):
        if isinstance(spec, dict) and spec.get("tensor"):
            return math.prod(spec["shape"])
        if isinstance(spec, dict) and "list" in spec:
            return sum(size(s) for s in spec["list"])
        return 0

    return sum(size(a) for a in [*entry["args"], *entry["kwargs"].values()])


def _spread(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """At most MAX_SIGNATURES_PER_OP signatures, from the smallest to the largest."""
    entries.sort(key=_numel)
    if len(entries) <= MAX_SIGNATURES_PER_OP:
        return entries
    step = (len(entries) - 1) / (MAX_SIGNATURES_PER_OP - 1)
    return [entries[round(i * step)] for i in range(MAX_SIGNATURES_PER_OP)]


# --------------------------------------------------------------------------- 2. measure


def build(spec: Any, gen) -> Any:
    """An argument from its description: tensors drawn from the recorded range."""
    import torch

    if isinstance(spec, dict) and spec.get("tensor"):
        dtype = getattr(torch, spec["dtype"])
        device = torch.device(spec["device"])
        shape, stride = spec["shape"], spec["stride"]
        needed = 1 + sum((n - 1) * s for n, s in zip(shape, stride, strict=True) if n > 0)
        base = torch.empty(needed if math.prod(shape) else 0, dtype=dtype, device=device)
        if base.numel():
            _fill(base, spec.get("range"), gen)
        return base.as_strided(shape, stride)
    if "value" in spec:
        return spec["value"]
    if "dtype_value" in spec:
        return getattr(torch, spec["dtype_value"])
    if "device_value" in spec:
        return torch.device(spec["device_value"])
    if "torch_attr" in spec:
        return getattr(torch, spec["torch_attr"])
    return [build(s, gen) for s in spec["list"]]


def _fill(tensor, value_range, gen) -> None:
    import torch

    lo, hi = value_range if value_range else (0, 1)
    if tensor.dtype == torch.bool:
        tensor.copy_(torch.randint(int(lo), int(hi) + 1, tensor.shape, generator=gen,
                                   device=tensor.device).bool())  # fmt: skip
    elif tensor.dtype.is_floating_point:
        tensor.uniform_(float(lo), float(hi), generator=gen) if hi > lo else tensor.fill_(lo)
    else:
        tensor.copy_(torch.randint(int(lo), int(hi) + 1, tensor.shape, generator=gen,
                                   device=tensor.device))  # fmt: skip


def require_flaggems() -> None:
    """Stop before a trace run of minutes when FlagGems, which the measurement times, cannot
    load here."""
    reason = flaggems_import_error()
    if reason:
        raise BenchmarkError(f"bench aten times FlagGems against PyTorch: {reason}")


def flaggems_functions() -> dict[str, str]:
    """ATen op key -> the FlagGems function name that replaces it (the names lists use)."""
    import flag_gems

    with flag_gems.use_gems():
        return dict(zip(flag_gems.all_registered_keys(), flag_gems.all_registered_ops(),
                        strict=True))  # fmt: skip


def measure_signature(func_name: str, entry: dict[str, Any]) -> dict[str, Any]:
    import flag_gems
    import torch

    gen = torch.Generator(device="cuda").manual_seed(0)
    op = getattr(torch.ops.aten, entry["op"].split(".")[0])
    overload = getattr(op, entry["op"].split(".")[1] if "." in entry["op"] else "default")
    args = [build(a, gen) for a in entry["args"]]
    kwargs = {k: build(v, gen) for k, v in entry["kwargs"].items()}
    result: dict[str, Any] = {"op": entry["op"], "numel": _numel(entry)}

    def call():
        return overload(*args, **kwargs)

    try:
        call()
        torch.cuda.synchronize()
    except Exception as exc:
        return {**result, "skipped": f"PyTorch rejects the synthetic inputs: {exc!r}"[:300]}
    result["torch_eager_us"] = host_us(call)
    result["torch_graph_us"] = graph_us(call, calls=20)
    try:
        with flag_gems.use_gems(include=[func_name]):
            result["gems_eager_us"] = host_us(call)
            result["gems_graph_us"] = graph_us(call, calls=20)
    except Exception as exc:
        torch.cuda.synchronize()
        return {**result, "gems_error": repr(exc)[:300]}
    return result


def verdict(signatures: list[dict[str, Any]]) -> tuple[bool, str]:
    """Keep only if FlagGems is not slower in both measures at every measured signature."""
    measured = [s for s in signatures if "skipped" not in s]
    if not measured:
        return False, "no replayable signature"
    for s in measured:
        if "gems_error" in s:
            return False, f"FlagGems failed at {s['op']}: {s['gems_error']}"
        eager = s["gems_eager_us"] / s["torch_eager_us"]
        if eager > THRESHOLD:
            return False, f"{s['op']} (numel {s['numel']}): eager {eager:.3f}x PyTorch"
        if s["torch_graph_us"] is not None:
            if s["gems_graph_us"] is None:
                return False, f"{s['op']}: FlagGems' kernel cannot be captured in a CUDA graph"
            graph = s["gems_graph_us"] / s["torch_graph_us"]
            if graph > THRESHOLD:
                return False, f"{s['op']} (numel {s['numel']}): device {graph:.3f}x PyTorch"
    return True, f"not slower at {len(measured)} signature(s)"


def measure(trace_file: Path) -> dict[str, Any]:
    """Per FlagGems function: every traced signature timed, and whether it is kept."""
    require_flaggems()
    functions = flaggems_functions()
    per_function: dict[str, list[dict[str, Any]]] = defaultdict(list)
    untraced = sorted(set(functions.values()))
    for op, entries in sorted(read_trace(trace_file).items()):
        func_name = functions.get(op)
        if func_name is None:
            continue
        for entry in entries:
            per_function[func_name].append(measure_signature(func_name, entry))
    report = []
    for func_name, signatures in sorted(per_function.items()):
        keep, reason = verdict(signatures)
        report.append({"function": func_name, "kept": keep, "reason": reason,
                       "signatures": signatures})  # fmt: skip
    traced = set(per_function)
    return {
        "threshold": THRESHOLD,
        "functions": report,
        "whitelist": [r["function"] for r in report if r["kept"]],
        "not_traced": [f for f in untraced if f not in traced],
    }


# --------------------------------------------------------------------------- 3. write


def whitelist_block(report: dict[str, Any], environment: dict[str, str]) -> str:
    """The platform YAML block: the kept names, and why every traced op was kept or not."""
    lines = [
        BEGIN_MARK + " (generated by `sglang-fl bench aten --write-yaml`; do not edit by hand)",
        f"# Measured {environment.get('date')} on {environment.get('device_name')}: torch "
        f"{environment.get('torch')}, FlagGems {environment.get('flag-gems')},",
        f"# SGLang {environment.get('sglang')}. The ATen ops SGLang calls while serving (traced); "
        "each is kept only",
        f"# if FlagGems is not slower than PyTorch (ratio <= {THRESHOLD}) both as an eager loop "
        "and in CUDA-graph",
        "# replays, at every traced signature. Not kept (first signature that failed the rule):",
    ]
    lines += [f"#   {r['function']}: {r['reason']}" for r in report["functions"] if not r["kept"]]
    names = report["whitelist"]
    lines.append("flagos_whitelist: [" + ", ".join(names) + "]")
    lines.append(END_MARK)
    return "\n".join(lines) + "\n"


def write_yaml(path: Path, block: str) -> None:
    """Replace the marked block of ``path`` (or append it when the file has none)."""
    text = path.read_text(encoding="utf-8")
    if BEGIN_MARK in text and END_MARK in text:
        head, rest = text.split(BEGIN_MARK, 1)
        tail = rest.split(END_MARK, 1)[1].lstrip("\n")
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--trace-worker":
        _trace_worker(sys.argv[2])
    else:
        raise SystemExit("internal worker entry point: use `sglang-fl bench aten`")
