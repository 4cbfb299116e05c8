"""The ``sglang-fl`` command: inspect the effective config and op choices, and serve.

sglang-fl config [--json]        effective settings and where each came from
sglang-fl ops [--json]           per op: candidates, availability, the chosen implementation
sglang-fl sample-config PATH     write the documented sample YAML to PATH
sglang-fl serve [SGLANG ARGS]    python -m sglang.launch_server with the plugin; without
                                 --model-path it serves the embedded tiny model
sglang-fl bench dispatch         per-call cost of dispatch vs calling the kernel directly
sglang-fl bench comm             all-reduce bus bandwidth: SGLang's TP group vs torch.distributed
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
    bench.add_argument("what", choices=["dispatch", "comm"],
                       help="dispatch: per-call overhead; comm: all-reduce bandwidth")  # fmt: skip
    bench.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    bench.add_argument("--json", action="store_true", help="one JSON object")
    from sglang_fl.bench.comm import add_arguments as add_comm_arguments

    add_comm_arguments(bench)
    bench.set_defaults(handler=cmd_bench)
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


def cmd_bench(args: argparse.Namespace, rest: list[str]) -> int:
    if args.what == "comm":
        from sglang_fl.bench import comm

        return comm.main(args)
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
