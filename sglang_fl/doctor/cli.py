"""The ``sglang-fl doctor`` command: ``register`` adds it to the ``sglang-fl`` parser, ``main``
runs it alone (``python -m sglang_fl.doctor``). Like every command it takes ``--json`` and
``--json-file PATH`` (``sglang_fl.cli_common``); the checks are imported only when it runs.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sglang_fl.cli_common import add_json_options, emit_json, parse, run_command

if TYPE_CHECKING:
    from sglang_fl.doctor.checks import Report

PROG = "sglang-fl doctor"
STATUS_WIDTH = len("warning")
HELP = "check that SGLang, torch, Triton, FlagGems, FlagCX, the bundles and the config fit"
DESCRIPTION = """\
Check this machine without loading a model: the effective config, the SGLang release against
the supported range (and the platform contract), each platform bundle's detection, the torch
build against the accelerator present, Triton's active backend, FlagGems where Layer 1 is on,
the FlagCX library where it is the distributed backend, torch_npu where an Ascend NPU may be
meant, and the selected bundle's vendor backend. One row per check: ok, warning or error, and
the fix. Exit code 1 if any check is an error, 0 otherwise (warnings included)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``doctor`` to the ``sglang-fl`` parser."""
    add_arguments(subparsers.add_parser("doctor", help=HELP, description=DESCRIPTION))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sglang_fl.doctor [ARGS]``: the same command on its own parser."""
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)
    add_arguments(parser)
    return run_command(parse(parser, argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_json_options(parser, "the checks (ok, error and warning counts, one object per check)")
    parser.set_defaults(handler=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    from sglang_fl.doctor.checks import run_checks

    report = run_checks()
    status = 0 if report.ok else 1
    if emit_json(args, report.to_json()):
        return status
    print_checks(report)
    return status


def print_checks(report: Report, width: int = 100) -> None:
    """One entry per check: status, name and detail, then the fix on its own line, wrapped to
    ``width`` (details name paths and versions: a table of them would be hundreds wide)."""
    name_width = max((len(check.name) for check in report.checks), default=0)
    indent = " " * (STATUS_WIDTH + 2 + name_width + 2)
    for check in report.checks:
        head = f"{check.status.value:<{STATUS_WIDTH}}  {check.name:<{name_width}}  "
        print(textwrap.fill(check.detail, width, initial_indent=head, subsequent_indent=indent))
        if check.fix:
            print(textwrap.fill(f"fix: {check.fix}", width, initial_indent=indent,
                                subsequent_indent=indent + "     "))  # fmt: skip
    print(f"\n{report.summary()}")
