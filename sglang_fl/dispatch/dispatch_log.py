"""The dispatch log (``SGLANG_FL_DISPATCH_LOG``): one line per op class and implementation.

Several SGLang processes (one scheduler per TP rank, restarts) append to the same file, so each
line is written with a single ``write`` on an ``O_APPEND`` descriptor under an advisory lock:
lines never interleave or tear.
"""

from __future__ import annotations

import fcntl
import os
import re
import threading
from pathlib import Path

ARROW = "\u2192"
_LINE = re.compile(rf"^\[OOT-DISPATCH\] (\S+) {ARROW} (\w+)\(([^()]+)\)$")


def format_line(class_name: str, kind: str, impl_id: str) -> str:
    """``[OOT-DISPATCH] RMSNorm → reference(reference)``"""
    return f"[OOT-DISPATCH] {class_name} {ARROW} {kind}({impl_id})"


def parse_line(line: str) -> tuple[str, str, str] | None:
    """``(class_name, kind, impl_id)`` of a line written by :func:`format_line`, else None."""
    match = _LINE.match(line.strip())
    return (match[1], match[2], match[3]) if match else None


class DispatchLog:
    """Records each (op class, implementation) once per process."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._written: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def record(self, class_name: str, kind: str, impl_id: str) -> None:
        if self.path is None:
            return
        key = (class_name, impl_id)
        with self._lock:
            if key in self._written:
                return
            self._written.add(key)
            data = (format_line(class_name, kind, impl_id) + "\n").encode("utf-8")
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                os.write(fd, data)
            finally:
                os.close(fd)  # closing releases the lock
