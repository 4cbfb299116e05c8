"""Run pytest and fail on what a plain pytest run would let through in CI.

- exit code 5 ("no tests collected") is a failure, not a pass;
- a test skipped because a dependency is missing (pytest.importorskip, or our conftest's
  "missing dependency" skip) is a failure: every dependency a CI env selects must be there.
Usage: python ci/run_pytest.py [pytest args...]
"""

from __future__ import annotations

import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

MISSING_DEPENDENCY = ("missing dependency", "could not import")


def main(args: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        code = pytest.main([*args, f"--junitxml={junit}", "-p", "no:cacheprovider"])
        if code == pytest.ExitCode.NO_TESTS_COLLECTED:
            print("ci/run_pytest: no tests were collected: failing", file=sys.stderr)
            return 1
        if code != pytest.ExitCode.OK:
            return int(code)
        bad = _dependency_skips(junit)
    for name, message in bad:
        print(
            f"ci/run_pytest: skipped for a missing dependency: {name}: {message}", file=sys.stderr
        )
    return 1 if bad else 0


def _dependency_skips(junit: Path) -> list[tuple[str, str]]:
    found = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        for skipped in case.findall("skipped"):
            message = (skipped.get("message") or "").lower()
            if any(marker in message for marker in MISSING_DEPENDENCY):
                found.append((f"{case.get('classname')}::{case.get('name')}", message))
    return found


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
