"""The ``sglang-fl conformance`` command: ``register`` adds it to the ``sglang-fl`` parser,
``main`` runs it alone (``python -m sglang_fl.conformance``). Both parse the same options and
end the same way (``sglang_fl.cli_common``), without this package importing the top-level CLI.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from sglang_fl.cli_common import add_json_options, emit_json, parse, run_command

PROG = "sglang-fl conformance"
HELP = "check the platform's vendor backend and a real SGLang run"
DESCRIPTION = """\
Check a platform bundle on this machine: every op of its vendor backend against the reference
backend (dtypes, shapes incl. 1 token, odd sizes, strided inputs, residual and in-place
semantics, rotary modes), then two real SGLang runs through the plugin: the dispatch log under
`prefer: vendor` and greedy ids against the reference backend. With --zoo, tiny checkpoints of
the architectures SGLang serves (sglang_fl.models.zoo) are served too, each against HF
transformers' greedy ids: which architectures this platform serves. Exit code 0: all passed
(an architecture sglang-fl refuses at startup is reported, not failed)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``conformance`` to the ``sglang-fl`` parser."""
    add_arguments(subparsers.add_parser("conformance", help=HELP, description=DESCRIPTION))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sglang_fl.conformance [ARGS]``: the same command on its own parser."""
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)
    add_arguments(parser)
    return run_command(parse(parser, argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
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
        "--zoo",
        nargs="?",
        const="default",
        type=_zoo_models,
        default=(),
        metavar="MODELS",
        help="also serve zoo models (fp32, ~30 s each): alone, a default few (one per kind of "
        "SGLang path a device may lack); 'all'; or a comma list of names",
    )
    add_json_options(parser, "the full report (every case)")
    parser.set_defaults(handler=cmd_conformance)


def _zoo_models(value: str) -> tuple[str, ...]:
    from sglang_fl.conformance.zoo import zoo_models
    from sglang_fl.errors import ConfigError

    try:
        return zoo_models(value)
    except ConfigError as exc:  # argparse shows only its own type errors' messages
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--zoo: ")) from exc


def cmd_conformance(args: argparse.Namespace) -> int:
    from sglang_fl.conformance.report import print_report
    from sglang_fl.conformance.suite import Options, run_suite

    options = Options(
        platform=args.platform,
        device=args.device,
        quick=args.quick,
        ops_only=args.ops_only,
        model_path=args.model_path,
        dtype=args.dtype,
        zoo=args.zoo,
    )
    report = run_suite(options)
    if not emit_json(args, report.to_json()):
        print_report(report, args.json_file)
    return 0 if report.passed else 1
