"""The ``sglang-fl`` command: inspect the effective config and op choices, serve, benchmark.

sglang-fl config                 effective settings and where each came from
sglang-fl ops                    per op: candidates, availability, the chosen implementation
sglang-fl sample-config PATH     write the documented sample YAML to PATH
sglang-fl serve [SGLANG ARGS]    python -m sglang.launch_server with the plugin; without
                                 --model-path it serves the embedded tiny model
sglang-fl bench dispatch         per-call cost of dispatch vs calling the kernel directly
sglang-fl bench ops              fused ops per backend vs the vendor kernel (GPU)
sglang-fl bench e2e              SGLang without vs with the plugin, end to end (GPU)
sglang-fl bench aten             measure the default set of ATen ops FlagGems replaces (GPU)
sglang-fl bench comm             all-reduce bus bandwidth: SGLang's TP group vs torch.distributed
sglang-fl conformance            check the platform's vendor backend and a real SGLang run
sglang-fl doctor                 check, without loading a model, that SGLang, torch, Triton,
                                 FlagGems, FlagCX, the bundles and the config fit together

Every command that reports takes ``--json`` (the report as one JSON object on stdout instead of
the table) and ``--json-file PATH`` (also write it to PATH). This module adds its own four
commands; ``sglang_fl.bench.cli``, ``sglang_fl.conformance.cli`` and ``sglang_fl.doctor.cli``
add theirs (``register``), and ``sglang_fl.cli_common`` holds what they share.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sglang_fl.bench import cli as bench_cli
from sglang_fl.cli_common import add_json_options, emit_json, parse, print_table, run_command
from sglang_fl.conformance import cli as conformance_cli
from sglang_fl.doctor import cli as doctor_cli


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(parse(_parser(), argv, passthrough={"serve"}))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sglang-fl", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    config = sub.add_parser("config", help="show the effective settings and their sources")
    add_json_options(config, "the settings and their sources")
    config.set_defaults(handler=cmd_config)
    ops = sub.add_parser("ops", help="show per-op candidates, availability and choice")
    add_json_options(ops, "the per-op report")
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
    bench_cli.register(sub)
    conformance_cli.register(sub)
    doctor_cli.register(sub)
    return parser


def cmd_config(args: argparse.Namespace) -> int:
    from sglang_fl.config import load_settings

    data = load_settings().to_public_dict()
    if emit_json(args, data):
        return 0
    sources = data.pop("sources")
    rows = [(name, _show(value), sources[name]) for name, value in data.items()]
    print_table(("setting", "value", "source"), rows)
    return 0


def cmd_ops(args: argparse.Namespace) -> int:
    """Exit status 1 when an op has an error (e.g. strict mode's first choice unavailable),
    with the table or with ``--json`` alike."""
    from sglang_fl.ops.report import ops_report

    report = ops_report()
    status = 1 if any(op["error"] for op in report["ops"]) else 0
    if emit_json(args, report):
        return status
    for op in report["ops"]:
        print(f"{op['op']}  (classes: {', '.join(op['classes'])})")
        print(f"  order: {' > '.join(op['order'])}   chosen: {op['chosen'] or '-'}")
        for cand in op["implementations"]:
            state = "available" if cand["available"] else f"unavailable: {cand['reason']}"
            impl, kind, prio = cand["impl_id"], cand["kind"], cand["priority"]
            print(f"    {impl:<16} kind={kind:<9} prio={prio:<4} {state}")
        if op["error"]:
            print(f"  ERROR: {op['error']}")
    return status


def cmd_sample_config(args: argparse.Namespace) -> int:
    from sglang_fl.config import _CONFIG_DIR

    if args.path.exists() and not args.force:
        print(f"sglang-fl: {args.path} exists (use --force to overwrite)", file=sys.stderr)
        return 1
    shutil.copyfile(_CONFIG_DIR / "sample.yaml", args.path)
    print(f"wrote {args.path}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from sglang_fl.config import load_settings

    load_settings()  # fail here, with one clear message, before SGLang starts
    argv = [sys.executable, "-m", "sglang.launch_server", *serve_args(args.passthrough)]
    print("sglang-fl: exec " + " ".join(argv), file=sys.stderr, flush=True)
    os.execv(sys.executable, argv)
    return 0  # not reached


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


if __name__ == "__main__":
    raise SystemExit(main())
