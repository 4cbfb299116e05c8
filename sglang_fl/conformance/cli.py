"""The ``sglang-fl conformance`` subcommand (hooked into sglang_fl/cli.py's parser)."""

from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = """\
Check a platform bundle on this machine: every op of its vendor backend against the reference
backend (dtypes, shapes incl. 1 token, odd sizes, strided inputs, residual and in-place
semantics, rotary modes), then two real SGLang runs through the plugin: the dispatch log under
`prefer: vendor` and greedy ids against the reference backend. Exit code 0: all passed."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "conformance",
        help="check the platform's vendor backend and a real SGLang run",
        description=DESCRIPTION,
    )
    parser.add_argument(
        "--platform",
        help="bundle name or alias (default: SGLANG_FL_PLATFORM or the detected bundle)",
    )
    parser.add_argument(
        "--device",
        help="torch device of the op checks (default: the current accelerator, else cpu)",
    )
    parser.add_argument("--quick", action="store_true", help="fewer op cases, one short prompt")
    parser.add_argument(
        "--ops-only",
        action="store_true",
        help="only the op checks (no SGLang run; SGLang need not be installed)",
    )
    parser.add_argument(
        "--model-path", type=Path, help="model of the SGLang runs (default: the embedded model)"
    )
    parser.add_argument("--dtype", default="float32", help="model dtype of the SGLang runs")
    parser.add_argument(
        "--json",
        type=Path,
        dest="json_path",
        metavar="PATH",
        help="also write the full report (every case) as JSON to PATH",
    )
    parser.set_defaults(handler=cmd_conformance)


def cmd_conformance(args: argparse.Namespace, rest: list[str]) -> int:
    from sglang_fl.conformance.report import print_report
    from sglang_fl.conformance.suite import Options, run_suite

    options = Options(
        platform=args.platform,
        device=args.device,
        quick=args.quick,
        ops_only=args.ops_only,
        model_path=args.model_path,
        dtype=args.dtype,
    )
    report = run_suite(options)
    if args.json_path:
        report.write_json(args.json_path)
    print_report(report, args.json_path)
    return 0 if report.passed else 1
