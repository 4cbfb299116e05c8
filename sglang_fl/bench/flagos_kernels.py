"""Latency and bandwidth of the flagos backend's Triton kernels, and a sweep of their heuristics.

    python -m sglang_fl.bench.flagos_kernels [--sweep] [--tokens 1,64,8192] [--json | --json-file F]

Serving shapes in bf16 (the issue's targets): silu_and_mul at I=11008 and I=4096, rms_norm and
fused_add_rms_norm at hidden 4096, neox rope with 32 q / 8 kv heads of 128 (fp32 cache) on q/k
views of a fused qkv tensor. Each is timed with ``triton.testing.do_bench`` (median; it flushes
L2 between calls) and reported as GB/s (bytes read + written once) against a 1 GiB device copy;
``graph``: the same call captured in a CUDA graph and timed by replay (device time as decode
sees it; at small sizes the plain figure can include the host's launch cost).
``--sweep`` also times each candidate launch config per size and prints the fastest, so the
heuristics in ``kernels.py`` can be tuned from one run. ``host_us``: per-call host time of a
launch at 1 token (a loop of launches, one sync), what eager prefill pays per op.
Needs a GPU; the vendor kernels are compared by ``sglang-fl bench ops``, not here.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TextIO

import torch

from sglang_fl.backends.flagos import kernels
from sglang_fl.bench.cli import positive_ints, require_device
from sglang_fl.bench.ops_bench import HEAD_DIM as HEAD
from sglang_fl.bench.ops_bench import (
    HIDDEN,
    KV_HEADS,
    MAX_POSITIONS,
    Q_HEADS,
    TOKENS,
    cos_sin_cache,
)
from sglang_fl.bench.timing import copy_bandwidth_gbps, graph_us, host_us
from sglang_fl.cli_common import add_json_options, emit_json, notes, parse, run_command

DTYPE = torch.bfloat16


Call = Callable[[Any, list[torch.Tensor]], Any]  # (config, inputs) -> the op's outputs


@dataclass(frozen=True)
class Workload:
    name: str
    setup: Callable[[int], tuple[list[torch.Tensor], Call]]  # tokens -> (inputs, call)
    bytes_moved: Callable[[int], int]
    default_config: Callable[[int], Any]  # tokens -> the heuristic's config
    candidates: Callable[[], Iterable[Any]]


def _randn(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, device="cuda").to(DTYPE)


def _silu(inter: int) -> Workload:
    def setup(tokens):
        x = _randn(tokens, 2 * inter)
        return [x, x.new_empty(tokens, inter)], lambda c, t: kernels.silu_and_mul(t[0], t[1], c)

    return Workload(
        f"silu_and_mul I={inter}", setup, lambda t: t * inter * 2 * 3,
        lambda t: kernels.activation_config(inter, 2, t >= kernels.ACTIVATION_MANY_ROWS),
        lambda: (kernels.ActivationConfig(b, r, w)
                 for b, r, w in itertools.product((512, 1024, 2048, 4096), (1, 2, 4), (2, 4, 8, 16))
                 if 4 <= b * r // (32 * w) <= 64),
    )  # fmt: skip


def _norm(residual: bool) -> Workload:
    def setup(tokens):
        x, res, weight = _randn(tokens, HIDDEN), _randn(tokens, HIDDEN), _randn(HIDDEN)
        if residual:

            def call(c, t):
                kernels.fused_add_rms_norm(t[0], t[1], weight, 1e-6, config=c)
                return t[0], t[1]

            return [x, res], call
        norm = kernels.rms_norm
        return [x, torch.empty_like(x)], lambda c, t: norm(t[0], weight, 1e-6, out=t[1], config=c)

    return Workload(
        "fused_add_rms_norm" if residual else "rms_norm", setup,
        lambda t: t * HIDDEN * 2 * (4 if residual else 2),
        lambda t: kernels.norm_config(HIDDEN, 2),
        lambda: (kernels.NormConfig(HIDDEN, r, w)
                 for r, w in itertools.product((1, 2, 4, 8), (2, 4, 8, 16, 32))
                 if 8 <= HIDDEN * r // (32 * w) <= 256),
    )  # fmt: skip


def _rope() -> Workload:
    def setup(tokens):
        cache = cos_sin_cache(torch.device("cuda"))
        qkv = _randn(tokens, (Q_HEADS + 2 * KV_HEADS) * HEAD)
        positions = torch.randint(0, MAX_POSITIONS, (tokens,), device="cuda")

        def call(c, t):
            q, k = t[1][:, : Q_HEADS * HEAD], t[1][:, Q_HEADS * HEAD : (Q_HEADS + KV_HEADS) * HEAD]
            return kernels.rotary_embedding(t[0], q, k, cache, HEAD, HEAD, True, c)

        return [positions, qkv], call

    return Workload(
        "rotary neox 32q/8kv D=128", setup,
        lambda t: t * (Q_HEADS + KV_HEADS) * HEAD * 2 * 2 + t * (HEAD * 4 + 8),
        lambda t: kernels.rotary_config(HEAD, 2),
        lambda: (kernels.RotaryConfig(HEAD // 2, hb, w)
                 for hb, w in itertools.product((2, 4, 8, 16, 32), (1, 2, 4, 8, 16))
                 if 2 <= hb * HEAD // (32 * w) <= 64),
    )  # fmt: skip


WORKLOADS = (_silu(11008), _silu(4096), _norm(False), _norm(True), _rope())


def _time_us(fn: Callable[[], Any]) -> float:
    """do_bench with shorter warm-up/repeat windows: the sweep times hundreds of configs."""
    import triton

    return triton.testing.do_bench(fn, warmup=10, rep=40, return_mode="median") * 1e3


def _outputs(out: Any) -> list[torch.Tensor]:
    return [t for t in (out if isinstance(out, tuple) else (out,)) if t is not None]


def _same_results(call: Call, inputs: list[torch.Tensor], config: Any, baseline: Any) -> bool:
    """A candidate config computes what the heuristic's does (fresh copies of the inputs)."""
    got = _outputs(call(config, [t.clone() for t in inputs]))
    want = _outputs(call(baseline, [t.clone() for t in inputs]))
    return all(
        torch.allclose(g.float(), w.float(), rtol=1e-2, atol=1e-2)
        for g, w in zip(got, want, strict=True)
    )


def measure(workload: Workload, tokens: int, copy_gbs: float, sweep: bool) -> dict[str, Any]:
    inputs, call = workload.setup(tokens)
    config = workload.default_config(tokens)
    us = _time_us(functools.partial(call, config, inputs))
    gbs = workload.bytes_moved(tokens) / (us * 1e3)
    row = {"op": workload.name, "tokens": tokens, "us": us, "config": config._asdict(),
           "gbs": gbs, "copy_fraction": gbs / copy_gbs}  # fmt: skip
    row["graph_us"] = graph_us(functools.partial(call, config, inputs))
    if tokens == 1:
        row["host_us"] = host_us(functools.partial(call, config, inputs), calls=3000, rounds=1)
    if sweep:
        row["sweep"] = [
            {"config": c._asdict(), "us": _time_us(functools.partial(call, c, inputs)),
             "same_results": _same_results(call, inputs, c, config)}
            for c in workload.candidates()
        ]  # fmt: skip
        best = min(row["sweep"], key=lambda entry: entry["us"])
        row.update(best_us=best["us"], best_config=best["config"])
        row["wrong"] = [e["config"] for e in row["sweep"] if not e["same_results"]]
    return row


def run(
    tokens: Iterable[int] = TOKENS, sweep: bool = False, progress: TextIO = sys.stdout
) -> dict[str, Any]:
    """Every workload at every token count; each row is printed to ``progress`` as it is done
    (a sweep takes minutes)."""
    copy = copy_bandwidth_gbps()
    rows = []
    for workload in WORKLOADS:
        for t in tokens:
            rows.append(measure(workload, t, copy, sweep))
            print(_format(rows[-1]), file=progress, flush=True)
    return {"copy_gbs": copy, "device": torch.cuda.get_device_name(), "rows": rows}


def _format(row: dict[str, Any]) -> str:
    text = (
        f"{row['op']:<28} {row['tokens']:>6} {row['us']:9.1f} us {row['gbs']:7.0f} GB/s"
        f" {100 * row['copy_fraction']:5.1f}% copy  {tuple(row['config'].values())}"
    )
    text += f"  graph {row['graph_us']:.1f} us"
    if "host_us" in row:
        text += f"  host {row['host_us']:.1f} us"
    if "best_us" in row:
        text += f"  | best {row['best_us']:.1f} us {tuple(row['best_config'].values())}"
        text += f" WRONG RESULTS: {row['wrong']}" if row["wrong"] else ""
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sglang_fl.bench.flagos_kernels", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--sweep", action="store_true", help="also time every candidate config")
    parser.add_argument(
        "--tokens", type=positive_ints, default=TOKENS,
        help=f"comma-separated token counts (default: {','.join(map(str, TOKENS))})",
    )  # fmt: skip
    add_json_options(parser, "the results")
    parser.set_defaults(handler=_command)
    return run_command(parse(parser, argv))


def _command(args: argparse.Namespace) -> int:
    require_device("cuda", "flagos_kernels")
    import triton

    out = notes(args)  # the rows as they come, on stderr under --json
    name = torch.cuda.get_device_name()
    print(f"{name}, torch {torch.__version__}, triton {triton.__version__}", file=out)
    result = run(args.tokens, args.sweep, progress=out)
    print(f"copy bandwidth: {result['copy_gbs']:.0f} GB/s", file=out)
    emit_json(args, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
