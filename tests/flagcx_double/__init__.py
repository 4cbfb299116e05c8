"""The FlagCX test double (``flagcx_double.c``): how to build it and drive its test controls.

The double implements the documented FlagCX v0.13.0 C API on host memory so tests can check
sglang-fl's side of the C boundary. It is not FlagCX; see the comment at the top of the C file
for what it does (one rank; several ranks in one process, recording only; several processes
through shared memory when ``FLAGCX_DOUBLE_MULTIPROCESS=1``).
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from ctypes import c_char, c_int, c_long, c_uint64, c_void_p
from pathlib import Path

SOURCE = Path(__file__).with_name("flagcx_double.c")
# What a test sets so the double moves data between processes (see the C file).
MULTIPROCESS_ENV = {"FLAGCX_DOUBLE_MULTIPROCESS": "1", "FLAGCX_DOUBLE_TIMEOUT_S": "120"}


def find_compiler() -> str | None:
    return shutil.which("cc") or shutil.which("gcc")


def build(compiler: str, root: Path, subdir: str = "lib", omit: tuple[str, ...] = ()) -> Path:
    """Compile the double to ``root/subdir/libflagcx.so`` (``omit``: API symbols left out)."""
    target = root / subdir / "libflagcx.so" if subdir else root / "libflagcx.so"
    target.parent.mkdir(parents=True, exist_ok=True)
    defines = [f"-DOMIT_{name}" for name in omit]
    cmd = [compiler, "-shared", "-fPIC", "-O1", "-std=c11", *defines, "-o", str(target),
           str(SOURCE)]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return target


def is_test_double(library: Path) -> bool:
    """Whether a libflagcx.so is this double (it exports the test controls)."""
    return b"double_set_version" in library.read_bytes()


def trace_calls(path: Path) -> list[tuple[int, str, int]]:
    """The ``FLAGCX_DOUBLE_TRACE`` file as (pid, function, count) lines."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        pid, function, count = line.split()
        rows.append((int(pid), function, int(count)))
    return rows


class CallRecord(ctypes.Structure):
    """Mirror of ``double_call_t`` in flagcx_double.c."""

    _fields_ = (
        ("name", c_char * 32),
        ("sendbuff", c_void_p),
        ("recvbuff", c_void_p),
        ("count", c_uint64),
        ("datatype", c_int),
        ("op", c_int),
        ("root", c_int),
        ("peer", c_int),
        ("comm", c_void_p),
        ("stream", c_void_p),
        ("stream_base", c_void_p),
        ("group_depth", c_int),
    )


class Double:
    """The double's test controls, opened on the same file as the binding (same globals)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.c = ctypes.CDLL(str(path))
        for name in ("double_call_count", "double_init_count", "double_destroy_count",
                     "double_live_comms"):  # fmt: skip
            getattr(self.c, name).restype = c_long
        self.c.double_get_call.argtypes = (c_long, ctypes.POINTER(CallRecord))
        self.c.double_fail_next.argtypes = (ctypes.c_char_p, c_int)

    def reset(self) -> None:
        self.c.double_reset()

    def set_version(self, code: int) -> None:
        self.c.double_set_version(code)

    def fail_next(self, name: str, code: int) -> None:
        self.c.double_fail_next(name.encode(), code)

    def calls(self) -> list[CallRecord]:
        out = []
        for i in range(self.c.double_call_count()):
            record = CallRecord()
            assert self.c.double_get_call(i, ctypes.byref(record)) == 0
            out.append(record)
        return out

    def names(self) -> list[str]:
        return [c.name.decode() for c in self.calls()]

    def last(self, name: str | None = None) -> CallRecord:
        calls = [c for c in self.calls() if name is None or c.name.decode() == name]
        assert calls, f"no call of {name} recorded"
        return calls[-1]

    def last_unique_id(self) -> bytes:
        buf = (ctypes.c_ubyte * 256)()
        self.c.double_last_unique_id(buf)
        return bytes(buf)

    @property
    def destroys(self) -> int:
        return self.c.double_destroy_count()

    @property
    def inits(self) -> int:
        return self.c.double_init_count()

    @property
    def live_comms(self) -> int:
        return self.c.double_live_comms()
