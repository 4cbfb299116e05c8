"""The ``sglang-fl`` command: inspect the effective config and op choices, and serve.

sglang-fl config [--json]        effective settings and where each came from
sglang-fl ops [--json]           per op: candidates, availability, the chosen implementation
sglang-fl sample-config PATH     write the documented sample YAML to PATH
sglang-fl serve [SGLANG ARGS]    python -m sglang.launch_server with the plugin; without
                                 --model-path it serves the embedded tiny model
sglang-fl bench dispatch         per-call cost of dispatch vs calling the kernel directly
sglang-fl bench ops              fused ops per backend vs the vendor kernel (GPU)
sglang-fl bench e2e              SGLang without vs with the plugin, end to end (GPU)
sglang-fl bench aten             measure the default set of ATen ops FlagGems replaces (GPU)
sglang-fl bench comm             all-reduce bus bandwidth: SGLang's TP group vs torch.distributed
sglang-fl conformance            check the platform's vendor backend and a real SGLang run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sglang_fl.errors import SglangFLError


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if args.command != "serve" and rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        return args.handler(args, rest)
    except SglangFLError as exc:
        print(f"sglang-fl: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sglang-fl", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    config = sub.add_parser("config", help="show the effective settings and their sources")
    config.add_argument("--json", action="store_true", help="one JSON object")
    config.set_defaults(handler=cmd_config)
    ops = sub.add_parser("ops", help="show per-op candidates, availability and choice")
    ops.add_argument("--json", action="store_true", help="one JSON object")
    ops.set_defaults(handler=cmd_ops)
    sample = sub.add_parser("sample-config", help="write the sample YAML config")
    sample.add_argument("path", type=Path)
    sample.add_argument("--force", action="store_true", help="overwrite an existing file")
    sample.set_defaults(handler=cmd_sample_config)
    serve = sub.add_parser(
        "serve", help="run sglang.launch_server (embedded model without --model-path)",
        description="Every argument is passed to sglang.launch_server.",
    )  # fmt: skip
    serve.set_defaults(handler=cmd_serve)
    bench = sub.add_parser("bench", help="benchmarks")
    kinds = bench.add_subparsers(dest="what", required=True)
    dispatch = kinds.add_parser("dispatch", help="per-call cost of dispatch vs the bound kernel")
    dispatch.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    dispatch.add_argument("--json", action="store_true", help="one JSON object")
    dispatch.set_defaults(handler=cmd_bench_dispatch)
    ops_bench = kinds.add_parser("ops", help="fused ops per backend vs the vendor kernel (GPU)")
    ops_bench.add_argument("--device", default="cuda", help="torch device (default: cuda)")
    ops_bench.add_argument("--dtype", default="bfloat16", choices=DTYPE_NAMES)
    ops_bench.add_argument(
        "--tokens",
        type=_int_list,
        default=None,
        help="comma-separated token counts (default: 1,64,1024,8192,32768)",
    )
    ops_bench.add_argument("--reference", action="store_true", help="also time the reference")
    ops_bench.add_argument("--plot", metavar="FILE.png", help="draw latency vs tokens")
    ops_bench.add_argument("--json", metavar="FILE", help="also write the full report here")
    ops_bench.set_defaults(handler=cmd_bench_ops)
    e2e = kinds.add_parser("e2e", help="SGLang without vs with the plugin, end to end (GPU)")
    e2e.add_argument("--batch-sizes", type=_int_list, default=None, help="default: 1,64,256")
    e2e.add_argument("--repeats", type=int, default=3)
    e2e.add_argument("--output-tokens", type=int, default=128)
    e2e.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="start each configuration this often (order reversed every 2nd round)",
    )
    e2e.add_argument("--timeout", type=float, default=900, help="seconds per configuration")
    e2e.add_argument("--json", metavar="FILE", help="also write the full report here")
    e2e.set_defaults(handler=cmd_bench_e2e)
    aten = kinds.add_parser("aten", help="measure which ATen ops FlagGems should replace (GPU)")
    aten.add_argument("--trace", type=Path, help="use this trace (JSON lines) instead of a run")
    aten.add_argument("--keep-trace", type=Path, help="write the trace run's file here")
    aten.add_argument("--write-yaml", type=Path, metavar="PLATFORM.yaml",
                      help="rewrite the measured flagos_whitelist block of this YAML")  # fmt: skip
    aten.add_argument("--json", metavar="FILE", help="also write the full report here")
    aten.set_defaults(handler=cmd_bench_aten)
    comm = kinds.add_parser("comm", help="all-reduce bus bandwidth: SGLang's TP group vs torch")
    comm.add_argument("--device", default="cpu", help="torch device type (default: cpu)")
    comm.add_argument("--json", action="store_true", help="one JSON object")
    from sglang_fl.bench.comm import add_arguments as add_comm_arguments

    add_comm_arguments(comm)
    comm.set_defaults(handler=cmd_bench_comm)
    from sglang_fl.conformance.cli import add_parser as add_conformance_parser

    add_conformance_parser(sub)
    return parser


def cmd_config(args: argparse.Namespace, rest: list[str]) -> int:
    from sglang_fl.config import load_settings

    data = load_settings().to_public_dict()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    sources = data.pop("sources")
    rows = [(name, _show(value), sources[name]) for name, value in data.items()]
    _print_table(("setting", "value", "source"), rows)
    return 0


def cmd_ops(args: argparse.Namespace, rest: list[str]) -> int:
    from sglang_fl.ops.report import ops_report

    report = ops_report()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for op in report["ops"]:
        print(f"{op['op']}  (classes: {', '.join(op['classes'])})")
        print(f"  order: {' > '.join(op['order'])}   chosen: {op['chosen'] or '-'}")
        for cand in op["implementations"]:
            state = "available" if cand["available"] else f"unavailable: {cand['reason']}"
            impl, kind, prio = cand["impl_id"], cand["kind"], cand["priority"]
            print(f"    {impl:<16} kind={kind:<9} prio={prio:<4} {state}")
        if op["error"]:
            print(f"  ERROR: {op['error']}")
    return 1 if any(op["error"] for op in report["ops"]) else 0


def cmd_sample_config(args: argparse.Namespace, rest: list[str]) -> int:
    from sglang_fl.config import _CONFIG_DIR

    if args.path.exists() and not args.force:
        print(f"sglang-fl: {args.path} exists (use --force to overwrite)", file=sys.stderr)
        return 1
    shutil.copyfile(_CONFIG_DIR / "sample.yaml", args.path)
    print(f"wrote {args.path}")
    return 0


def cmd_serve(args: argparse.Namespace, rest: list[str]) -> int:
    from sglang_fl.config import load_settings

    load_settings()  # fail here, with one clear message, before SGLang starts
    argv = [sys.executable, "-m", "sglang.launch_server", *serve_args(rest)]
    print("sglang-fl: exec " + " ".join(argv), file=sys.stderr, flush=True)
    os.execv(sys.executable, argv)
    return 0  # not reached


def cmd_bench_comm(args: argparse.Namespace, rest: list[str]) -> int:
    from sglang_fl.bench import comm

    return comm.main(args)


def cmd_bench_dispatch(args: argparse.Namespace, rest: list[str]) -> int:
    from sglang_fl.bench.dispatch_overhead import run

    results = [r.as_dict() for r in run(args.device)]
    if args.json:
        print(json.dumps({"device": args.device, "results": results}, indent=2))
        return 0
    header = ("op", "impl", "module(...) us", "installed fwd us", "kernel us", "fwd-kernel us",
              "bridge only us")  # fmt: skip
    keys = ("through_sglang_us", "installed_forward_us", "kernel_direct_us", "overhead_us",
            "bridge_only_us")  # fmt: skip
    rows = [(r["op"], r["impl_id"], *(f"{r[k]:.2f}" for k in keys)) for r in results]
    _print_table(header, rows)
    return 0


def cmd_bench_ops(args: argparse.Namespace, rest: list[str]) -> int:
    from sglang_fl.bench import ops_bench

    tokens = tuple(args.tokens) if args.tokens else ops_bench.TOKENS
    copy_gbps, results = ops_bench.run(
        args.device, args.dtype, tokens, include_reference=args.reference
    )
    env = _environment(args.device)
    if args.plot:
        ops_bench.plot(results, args.plot, f"{env['device_name']}, {args.dtype}")
    if args.json:
        data = {"environment": env, "copy_gbps": copy_gbps,
                "results": [r.as_dict() for r in results]}  # fmt: skip
        Path(args.json).write_text(json.dumps(data, indent=2), encoding="utf-8")
    print(f"{env['device_name']}: device copy bandwidth {copy_gbps:.0f} GB/s")
    rows = [(r.op, r.impl, str(r.tokens), f"{r.latency_us:.1f}", f"{r.gbps:.0f}",
             f"{r.copy_fraction:.0%}", f"{r.of_same_size_copy:.0%}", _ratio(r.vs_vendor),
             _us(r.graph_us), _ratio(r.graph_vs_vendor)) for r in results]  # fmt: skip
    _print_table(("op", "impl", "tokens", "us", "GB/s", "of copy", "of same-size copy",
                  "vs vendor", "graph us", "graph vs vendor"), rows)  # fmt: skip
    return 0


def cmd_bench_e2e(args: argparse.Namespace, rest: list[str]) -> int:
    from sglang_fl.bench import e2e

    report = e2e.run(
        batch_sizes=tuple(args.batch_sizes or e2e.BATCH_SIZES),
        repeats=args.repeats,
        output_tokens=args.output_tokens,
        timeout=args.timeout,
        rounds=args.rounds,
    )
    report["environment"] = _environment("cuda")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")
    batches = report["spec"]["batch_sizes"]
    header = ["configuration", *(f"bs={b} tok/s (spread) best/median ratio" for b in batches)]
    _print_table(header, e2e.summary_rows(report))
    for res in report["results"]:
        if "error" in res:
            print(f"\n{res['name']} failed:\n{res['error']}", file=sys.stderr)
        for line in res.get("dispatch", []):
            print(f"  {res['name']}: {line}")
    return 1 if any("error" in r for r in report["results"]) else 0


def cmd_bench_aten(args: argparse.Namespace, rest: list[str]) -> int:
    import tempfile

    from sglang_fl.bench import aten_set

    with tempfile.TemporaryDirectory(prefix="sglang-fl-aten-") as tmp:
        trace = args.trace or aten_set.trace(args.keep_trace or Path(tmp) / "trace.jsonl")
        report = aten_set.measure(trace)
    report["environment"] = _environment("cuda")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")
    rows = [(r["function"], "kept" if r["kept"] else "not kept", r["reason"])
            for r in report["functions"]]  # fmt: skip
    _print_table(("FlagGems op", "verdict", "why"), rows)
    block = aten_set.whitelist_block(report, report["environment"])
    if args.write_yaml:
        aten_set.write_yaml(args.write_yaml, block)
        print(f"wrote the measured set into {args.write_yaml}")
    else:
        print(block)
    return 0


DTYPE_NAMES = ("bfloat16", "float16", "float32")


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _int_list(raw: str) -> list[int]:
    try:
        values = [int(v) for v in raw.split(",") if v.strip()]
    except ValueError:
        message = f"expected comma-separated integers, got {raw!r}"
        raise argparse.ArgumentTypeError(message) from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {raw!r}")
    return values


def _environment(device: str) -> dict[str, str]:
    """What a figure needs next to it: date, device, versions."""
    import datetime
    from importlib.metadata import PackageNotFoundError, version

    import torch

    versions = {}
    for dist in ("torch", "triton", "sglang", "sglang-kernel", "flag-gems", "sglang-fl"):
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            versions[dist] = "-"
    name = torch.cuda.get_device_name() if device.startswith("cuda") else device
    return {"date": datetime.date.today().isoformat(), "device_name": name, **versions}


def serve_args(rest: list[str]) -> list[str]:
    """SGLang arguments for ``serve``: the embedded model and its defaults when no model given."""
    if any(a == "--model-path" or a.startswith("--model-path=") for a in rest):
        return list(rest)
    from sglang_fl.models.embedded import EMBEDDED_MODEL_NAME, ensure_embedded_model

    args = ["--model-path", str(ensure_embedded_model()), *rest]
    defaults = {"--served-model-name": EMBEDDED_MODEL_NAME, "--dtype": "float32"}
    for flag, value in defaults.items():
        if not any(a == flag or a.startswith(flag + "=") for a in rest):
            args += [flag, value]
    return args


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(value) if value else "[]"
    if isinstance(value, dict):
        return ";".join(f"{k}={'|'.join(v)}" for k, v in value.items()) or "{}"
    return str(value)


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


if __name__ == "__main__":
    raise SystemExit(main())
