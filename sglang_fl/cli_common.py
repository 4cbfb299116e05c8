"""What every ``sglang-fl`` command shares, so that each command module (``sglang_fl.cli``,
``sglang_fl.bench.cli``, ``sglang_fl.conformance.cli``) can add its own subparser and they all
still behave alike:

- The JSON options, one meaning everywhere: ``--json`` prints the command's report as one JSON
  object on stdout (and nothing else there); ``--json-file PATH`` also writes it to PATH.
- How a command ends: an sglang-fl error becomes one line on stderr and an exit status, never a
  traceback. 1: the command ran and something failed (a benchmark, a check); 2: a bad setting
  or argument (argparse's own status for usage errors).
- The plain-text table the commands print.

It imports nothing of sglang-fl but the errors, and neither torch nor SGLang: the parser is
built for every command, ``sglang-fl config`` included, which must work where only
sglang-fl's own dependencies are installed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from sglang_fl.errors import BenchmarkError, SglangFLError

JSON_HINT = "--json takes no value: it prints JSON on stdout; --json-file PATH writes it to a file"


def add_json_options(parser: argparse.ArgumentParser, what: str) -> None:
    """``--json`` and ``--json-file PATH`` for a command whose report is ``what``."""
    parser.add_argument(
        "--json",
        action="store_true",
        help=f"print {what} as one JSON object on stdout, not the table",
    )
    parser.add_argument(
        "--json-file", type=Path, metavar="PATH", help=f"also write {what} as JSON to PATH"
    )


def emit_json(args: argparse.Namespace, data: Any) -> bool:
    """Send ``data`` where the JSON options ask. True when stdout got the JSON: the caller then
    prints nothing else there (notes go to stderr), so the output parses as one object."""
    if args.json_file is not None:
        write_json(args.json_file, data)
    if args.json:
        print(json.dumps(data, indent=2))
    return bool(args.json)


def notes(args: argparse.Namespace):
    """Where a command's remarks go (``wrote FILE``...): stdout, or stderr under ``--json``."""
    return sys.stderr if getattr(args, "json", False) else sys.stdout


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def parse(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    passthrough: Collection[str] = (),
) -> argparse.Namespace:
    """Parse ``argv``. Arguments the parser does not know are an error, except for the commands
    named in ``passthrough`` (``serve`` hands them on), which get them as ``args.passthrough``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args, rest = parser.parse_known_args(argv)
    if rest and getattr(args, "command", None) not in passthrough:
        # the likely mistake: the earlier `--json FILE` of some commands
        hint = f" ({JSON_HINT})" if "--json" in argv else ""
        parser.error(f"unrecognized arguments: {' '.join(rest)}{hint}")
    args.passthrough = rest
    return args


def run_command(args: argparse.Namespace) -> int:
    """Run the chosen command's handler; its sglang-fl errors end it with one line."""
    try:
        return args.handler(args)
    except BenchmarkError as exc:
        return _fail(exc, 1)
    except SglangFLError as exc:
        return _fail(exc, 2)


def _fail(exc: SglangFLError, status: int) -> int:
    print(f"sglang-fl: {exc}", file=sys.stderr)
    return status


def print_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], *, right: bool = False
) -> None:
    """Columns as wide as their widest cell, left-aligned (``right``: right-aligned, for
    tables of figures)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        pairs = zip(row, widths, strict=True)
        print("  ".join(str(c).rjust(w) if right else str(c).ljust(w) for c, w in pairs).rstrip())
