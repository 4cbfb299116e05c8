"""Conformance results: one row per check, a pass/fail table for people, JSON for machines."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sglang_fl.cli_common import print_table, write_json
from sglang_fl.ops.catalog import OP_NAMES


class Status(str, enum.Enum):
    PASS = "pass"
    FAIL = "fail"
    # the backend declined this instance through OpImpl.supports: selection falls back, which
    # is allowed, but a vendor wants to see every such case
    REFUSED = "refused"
    # the check does not apply here (e.g. no vendor backend), with the reason in the detail
    NOT_APPLICABLE = "n/a"


@dataclass(frozen=True)
class Check:
    part: str  # "ops" | "platform" | "dispatch" | "generate"
    name: str
    status: Status
    detail: str = ""
    max_abs_error: float | None = None


@dataclass
class Report:
    platform: str
    vendor: str | None
    device: str
    versions: dict[str, str]
    checks: list[Check] = field(default_factory=list)

    def extend(self, checks: Sequence[Check]) -> None:
        self.checks.extend(checks)

    def counts(self) -> dict[str, int]:
        return {s.value: sum(c.status is s for c in self.checks) for s in Status}

    @property
    def passed(self) -> bool:
        """No failure, and at least one check that really ran."""
        counts = self.counts()
        return counts[Status.FAIL.value] == 0 and counts[Status.PASS.value] > 0

    def to_json(self) -> dict[str, Any]:
        return {
            "platform": self.platform,
            "vendor": self.vendor,
            "device": self.device,
            "versions": self.versions,
            "passed": self.passed,
            "counts": self.counts(),
            "checks": [{**asdict(c), "status": c.status.value} for c in self.checks],
        }

    def write_json(self, path: Path) -> None:
        write_json(path, self.to_json())


def summary_rows(report: Report) -> list[tuple[str, str, str, str]]:
    """The table: one row per op (its cases folded), then every failed or refused op case, then
    the serving checks. The JSON report keeps every single case."""
    rows: list[tuple[str, str, str, str]] = []
    cases = [c for c in report.checks if _op_of(c)]
    for op in dict.fromkeys(_op_of(c) for c in cases):
        of_op = [c for c in cases if _op_of(c) == op]
        rows.append(("ops", op, _fold_status(of_op), _fold_detail(of_op)))
    for case in cases:
        if case.status in (Status.FAIL, Status.REFUSED) and case.name != _op_of(case):
            rows.append(("ops", "  " + case.name, case.status.value, case.detail))
    for check in report.checks:
        if not _op_of(check):
            rows.append((check.part, check.name, check.status.value, check.detail))
    return rows


def _op_of(check: Check) -> str | None:
    """The op an "ops" row belongs to (its name is the op, or "<op> <case label>")."""
    op = check.name.split(" ", 1)[0]
    return op if check.part == "ops" and op in OP_NAMES else None


def _fold_status(cases: Sequence[Check]) -> str:
    statuses = {c.status for c in cases}
    for status in (Status.FAIL, Status.PASS, Status.REFUSED):
        if status in statuses:
            return status.value
    return Status.NOT_APPLICABLE.value


def _fold_detail(cases: Sequence[Check]) -> str:
    if len(cases) == 1 and cases[0].name == _op_of(cases[0]):
        return cases[0].detail  # an op-level row (not implemented, unavailable...)
    count = {s: sum(c.status is s for c in cases) for s in Status}
    errors = [c.max_abs_error for c in cases if c.max_abs_error is not None]
    parts = [f"{len(cases)} cases: {count[Status.PASS]} pass"]
    if count[Status.REFUSED]:
        parts.append(f"{count[Status.REFUSED]} refused")
    if count[Status.FAIL]:
        parts.append(f"{count[Status.FAIL]} FAIL")
    text = ", ".join(parts)
    return f"{text}; max |err| {max(errors):.2e}" if errors else text


def print_report(report: Report, json_path: Path | None) -> None:
    """The table on stdout, in the style of the other ``sglang-fl`` commands."""
    vendor = f"vendor.{report.vendor}" if report.vendor else "no vendor backend"
    versions = ", ".join(f"{k} {v}" for k, v in report.versions.items())
    print(
        f"sglang-fl conformance: platform {report.platform} ({vendor}), device "
        f"{report.device}; {versions}\n"
    )
    rows = summary_rows(report)
    print_table(("part", "check", "result", "detail"), rows)
    counts = report.counts()
    verdict = "PASS" if report.passed else "FAIL"
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    if not counts[Status.PASS.value] and not counts[Status.FAIL.value]:
        summary = f"nothing was checked ({summary})"
    where = f"; JSON report: {json_path}" if json_path else ""
    print(f"\nconformance {verdict}: {summary}{where}")
