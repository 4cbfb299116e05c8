"""``sglang-fl bench KIND``: the benchmarks' command line.

Every option is declared and validated here, by argparse: sizes, counts and lists go through
``type=`` callables that name the bad value and what is accepted, so a typo stops the command
before anything is measured. The handlers call the measurement modules (``dispatch_overhead``,
``ops_bench``, ``e2e``, ``aten_set``, ``comm``) and print a table, or JSON with ``--json`` /
``--json-file`` as every sglang-fl command does. A benchmark that cannot run here (no such
device, no FlagGems, a worker that died) raises :class:`~sglang_fl.errors.BenchmarkError`: one
line and exit status 1.

The measurement modules import torch and SGLang; this module imports neither at import time,
because the top-level parser (``sglang-fl config`` included) is built from it.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from sglang_fl.cli_common import add_json_options, emit_json, notes, print_table
from sglang_fl.errors import BenchmarkError

DTYPE_NAMES = ("bfloat16", "float16", "float32")
DEFAULT_SIZES = "1MiB,16MiB,256MiB"
SIZE_UNITS = {"": 1, "B": 1, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "KB": 10**3,
              "MB": 10**6, "GB": 10**9}  # fmt: skip
SIZES_ACCEPTED = (
    "comma-separated sizes > 0 such as 4KiB,16MiB,1GB (units B, KiB, MiB, GiB, KB, MB, GB)"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``bench`` and one subcommand per benchmark to the ``sglang-fl`` parser."""
    bench = subparsers.add_parser("bench", help="benchmarks")
    kinds = bench.add_subparsers(dest="what", required=True)
    for add in (_add_dispatch, _add_ops, _add_e2e, _add_aten, _add_comm):
        add(kinds)


# --------------------------------------------------------------------------- option types


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


positive_int = int_at_least(1)


def positive_seconds(text: str) -> float:
    """An argparse type: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def positive_ints(text: str) -> list[int]:
    """An argparse type: comma-separated positive integers (token counts, batch sizes)."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items or not all(re.fullmatch(r"\d+", item) and int(item) > 0 for item in items):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers such as 1,64,256, got {text!r}"
        )
    return [int(item) for item in items]


def message_sizes(text: str) -> list[int]:
    """An argparse type: ``"1MiB,16MiB"`` -> bytes; units B, KiB, MiB, GiB (powers of 2) or KB,
    MB, GB (powers of 10), case-insensitive; a bare number is bytes."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError(
            f"no message sizes in {text!r}; accepted: {SIZES_ACCEPTED}"
        )
    sizes = []
    for item in items:
        match = re.fullmatch(r"(\d+)\s*([A-Za-z]*)", item)
        unit = match.group(2).upper() if match else None
        if unit not in SIZE_UNITS or int(match.group(1)) == 0:
            raise argparse.ArgumentTypeError(
                f"bad message size {item!r}; accepted: {SIZES_ACCEPTED}"
            )
        sizes.append(int(match.group(1)) * SIZE_UNITS[unit])
    return sizes


def existing_file(text: str) -> Path:
    """An argparse type: a file that exists (read before anything is measured)."""
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"expected an existing file, got {text!r}")
    return path


# --------------------------------------------------------------------------- dispatch


def _add_dispatch(kinds: argparse._SubParsersAction) -> None:
    parser = kinds.add_parser("dispatch", help="per-call cost of dispatch vs the bound kernel")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    add_json_options(parser, "the timings")
    parser.set_defaults(handler=cmd_dispatch)


def cmd_dispatch(args: argparse.Namespace) -> int:
    from sglang_fl.bench.dispatch_overhead import run

    require_device(args.device, "bench dispatch")
    results = [r.as_dict() for r in run(args.device)]
    if emit_json(args, {"device": args.device, "results": results}):
        return 0
    header = ("op", "impl", "module(...) us", "installed fwd us", "kernel us", "fwd-kernel us",
              "bridge only us")  # fmt: skip
    keys = ("through_sglang_us", "installed_forward_us", "kernel_direct_us", "overhead_us",
            "bridge_only_us")  # fmt: skip
    print_table(header, [(r["op"], r["impl_id"], *(f"{r[k]:.2f}" for k in keys)) for r in results])
    return 0


# --------------------------------------------------------------------------- ops


def _add_ops(kinds: argparse._SubParsersAction) -> None:
    parser = kinds.add_parser(
        "ops", help="fused ops per backend vs the vendor kernel or SGLang's own path (GPU)"
    )
    parser.add_argument("--device", default="cuda", help="torch device (default: cuda)")
    parser.add_argument("--dtype", default="bfloat16", choices=DTYPE_NAMES)
    parser.add_argument(
        "--tokens", type=positive_ints, default=None,
        help="comma-separated token counts (default: 1,64,1024,8192,32768)",
    )  # fmt: skip
    parser.add_argument("--reference", action="store_true", help="also time the reference")
    parser.add_argument("--plot", metavar="FILE.png", help="draw latency vs tokens")
    add_json_options(parser, "the full report")
    parser.set_defaults(handler=cmd_ops)


def cmd_ops(args: argparse.Namespace) -> int:
    from sglang_fl.bench import ops_bench

    require_device(args.device, "bench ops")
    tokens = tuple(args.tokens) if args.tokens else ops_bench.TOKENS
    copy_gbps, results = ops_bench.run(
        args.device, args.dtype, tokens, include_reference=args.reference
    )
    env = environment(args.device)
    if args.plot:
        ops_bench.plot(results, args.plot, f"{env['device_name']}, {args.dtype}")
    data = {"environment": env, "copy_gbps": copy_gbps, "results": [r.as_dict() for r in results]}
    if emit_json(args, data):
        return 0
    print(f"{env['device_name']}: device copy bandwidth {copy_gbps:.0f} GB/s")
    print_table(OPS_HEADER, ops_rows(results))
    print(f"baseline: the vendor kernel where a vendor backend takes the case, else SGLang's own "
          f"path ({ops_bench.NATIVE})")  # fmt: skip
    return 0


OPS_HEADER = ("op", "impl", "tokens", "us", "GB/s", "of copy", "of same-size copy", "baseline",
              "vs baseline", "graph us", "graph vs baseline")  # fmt: skip


def ops_rows(results) -> list[tuple[str, ...]]:
    """One row per timing; ``baseline`` names what the ratios are against (a vendor backend,
    or SGLang's own forward_native where no vendor kernel takes the case)."""
    return [(r.op, r.impl, str(r.tokens), f"{r.latency_us:.1f}", f"{r.gbps:.0f}",
             f"{r.copy_fraction:.0%}", f"{r.of_same_size_copy:.0%}", r.baseline or "-",
             _ratio(r.vs_baseline), _us(r.graph_us), _ratio(r.graph_vs_baseline))
            for r in results]  # fmt: skip


# --------------------------------------------------------------------------- e2e


def _add_e2e(kinds: argparse._SubParsersAction) -> None:
    parser = kinds.add_parser("e2e", help="SGLang without vs with the plugin, end to end (GPU)")
    parser.add_argument("--batch-sizes", type=positive_ints, default=None,
                        help="comma-separated batch sizes (default: 1,64,256)")  # fmt: skip
    parser.add_argument("--repeats", type=positive_int, default=3,
                        help="timed runs per batch size (default: 3)")  # fmt: skip
    parser.add_argument("--output-tokens", type=positive_int, default=128,
                        help="tokens generated per request (default: 128)")  # fmt: skip
    parser.add_argument(
        "--rounds", type=positive_int, default=1,
        help="start each configuration this often (order reversed every 2nd round)",
    )  # fmt: skip
    parser.add_argument("--timeout", type=positive_seconds, default=900.0,
                        help="seconds per configuration")  # fmt: skip
    add_json_options(parser, "the full report")
    parser.set_defaults(handler=cmd_e2e)


def cmd_e2e(args: argparse.Namespace) -> int:
    from sglang_fl.bench import e2e

    require_device("cuda", "bench e2e")
    report = e2e.run(
        batch_sizes=tuple(args.batch_sizes or e2e.BATCH_SIZES),
        repeats=args.repeats,
        output_tokens=args.output_tokens,
        timeout=args.timeout,
        rounds=args.rounds,
    )
    report["environment"] = environment("cuda")
    failed = 1 if any("error" in r for r in report["results"]) else 0
    if emit_json(args, report):
        return failed
    batches = report["spec"]["batch_sizes"]
    header = ["configuration", *(f"bs={b} tok/s (spread) best/median ratio" for b in batches)]
    print_table(header, e2e.summary_rows(report))
    for res in report["results"]:
        if "error" in res:
            print(f"\n{res['name']} failed:\n{res['error']}", file=sys.stderr)
        for line in res.get("dispatch", []):
            print(f"  {res['name']}: {line}")
    return failed


# --------------------------------------------------------------------------- aten


def _add_aten(kinds: argparse._SubParsersAction) -> None:
    parser = kinds.add_parser("aten", help="measure which ATen ops FlagGems should replace (GPU)")
    parser.add_argument("--trace", type=existing_file,
                        help="use this trace (JSON lines) instead of a run")  # fmt: skip
    parser.add_argument("--keep-trace", type=Path, help="write the trace run's file here")
    parser.add_argument(
        "--write-yaml", type=existing_file, metavar="PLATFORM.yaml",
        help="rewrite the measured flagos_whitelist block of this YAML",
    )  # fmt: skip
    add_json_options(parser, "the full report")
    parser.set_defaults(handler=cmd_aten)


def cmd_aten(args: argparse.Namespace) -> int:
    from sglang_fl.bench import aten_set

    require_device("cuda", "bench aten")
    aten_set.require_flaggems()
    with tempfile.TemporaryDirectory(prefix="sglang-fl-aten-") as tmp:
        trace = args.trace or aten_set.trace(args.keep_trace or Path(tmp) / "trace.jsonl")
        report = aten_set.measure(trace)
    report["environment"] = environment("cuda")
    block = aten_set.whitelist_block(report, report["environment"])
    if not emit_json(args, report):
        rows = [(r["function"], "kept" if r["kept"] else "not kept", r["reason"])
                for r in report["functions"]]  # fmt: skip
        print_table(("FlagGems op", "verdict", "why"), rows)
        if not args.write_yaml:
            print(block)
    if args.write_yaml:
        aten_set.write_yaml(args.write_yaml, block)
        print(f"wrote the measured set into {args.write_yaml}", file=notes(args))
    return 0


# --------------------------------------------------------------------------- comm


def _add_comm(kinds: argparse._SubParsersAction) -> None:
    parser = kinds.add_parser("comm", help="all-reduce bus bandwidth: SGLang's TP group vs torch")
    parser.add_argument("--device", default="cpu", help="torch device type (default: cpu)")
    parser.add_argument("--nprocs", type=int_at_least(2),
                        help="processes/devices (default: all; on cpu 2)")  # fmt: skip
    parser.add_argument("--sizes", type=message_sizes, default=DEFAULT_SIZES,
                        help=f"message sizes (default: {DEFAULT_SIZES})")  # fmt: skip
    parser.add_argument("--iters", type=positive_int, default=20, help="calls per timing round")
    add_json_options(parser, "the report")
    parser.set_defaults(handler=cmd_comm)


def cmd_comm(args: argparse.Namespace) -> int:
    from sglang_fl.bench import comm

    require_device(args.device, "bench comm")
    report = comm.run(args.device, args.nprocs, args.sizes, args.iters)
    if emit_json(args, report):
        return 0
    print(
        f"all_reduce, {report['nprocs']} x {report['device']}, {report['dtype']}, platform "
        f"{report['platform']}: "
        f"sglang-fl = SGLang TP group on '{report['torch_backend']}' "
        f"(SGLANG_FL_DIST_BACKEND={report['dist_backend']}), torch.distributed = "
        f"'{report['baseline_backend']}'"
    )
    rows = [
        (_size(r["bytes"]), f"{r['torch_us']:.1f}", f"{r['torch_busbw_gbps']:.2f}",
         f"{r['sglang_fl_us']:.1f}", f"{r['sglang_fl_busbw_gbps']:.2f}", f"{r['ratio']:.3f}")
        for r in report["results"]
    ]  # fmt: skip
    header = ("size", "torch us", "torch GB/s", "sglang-fl us", "sglang-fl GB/s", "ratio")
    print_table(header, rows, right=True)
    return 0


# --------------------------------------------------------------------------- shared


def require_device(device: str, command: str) -> None:
    """Stop with one line when this process cannot use ``device`` (a typo, no GPU here)."""
    import torch

    try:
        kind = torch.device(device).type
    except RuntimeError as exc:
        raise BenchmarkError(f"{command}: {device!r} is not a torch device ({exc})") from None
    if kind == "cpu":
        return
    backend = getattr(torch, kind, None)
    if backend is None or not backend.is_available():
        raise BenchmarkError(
            f"{command} needs a {kind} device and torch {torch.__version__} sees none here"
        )


def environment(device: str) -> dict[str, str]:
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


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} B"
