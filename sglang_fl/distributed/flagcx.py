"""sglang-fl's own ctypes binding to FlagCX's C library, ``libflagcx.so``.

Why our own: the earlier plugin put ``$FLAGCX_PATH`` on ``sys.path`` and imported FlagCX's
Python wrapper, so a wrapper/library mismatch surfaced as an ``AttributeError`` or a crash deep
inside a collective. Here the declarations are written from the documented C API
(``flagcx.h``, v0.13.0) and every failure mode has a message that says what to fix:

- library not found: the paths tried and what ``FLAGCX_PATH`` should point at;
- library too old/new: ctypes cannot detect a changed signature (it would corrupt memory), so
  versions outside :data:`SUPPORTED_VERSIONS` are refused at load time;
- a required symbol missing: its name;
- a call returning non-zero: the function name, the code and FlagCX's error string;
- an unsupported torch dtype or reduce op: the value and the accepted ones.

ABI decisions (basis: the v0.13.0 header as recorded in our research notes):

- ``flagcxUniqueId`` is a caller-allocated 256-byte struct. ``flagcxGetUniqueId`` takes a
  pointer to it (older FlagCX returned a library-allocated pointer instead; not supported);
  ``flagcxCommInitRank(flagcxComm_t *comm, int nranks, flagcxUniqueId_t uid, int rank)``
  takes it by pointer (``flagcxUniqueId_t`` is the pointer typedef).
- ``flagcxGroupStart``/``flagcxGroupEnd`` take the communicator (older FlagCX: no argument).
- Results, data types and reduce ops are C enums (``int``); counts are ``size_t``; buffers,
  communicators and streams are pointers.
- ``flagcxStream_t`` is an opaque FlagCX pointer, not the raw device stream; see
  :mod:`sglang_fl.distributed.flagcx_communicator` for how raw handles are wrapped.
- Version codes are decoded NCCL-style, ``major * 10000 + minor * 100 + patch``. For 0.x both
  NCCL encodings give the same code (0.13.0 -> 1300). The header's exact macro is not in our
  notes; a real build in ``tests/distributed/test_flagcx_real.py`` confirms it.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Mapping
from ctypes import POINTER, c_char_p, c_int, c_size_t, c_void_p
from pathlib import Path
from typing import Any, NoReturn

import torch

from sglang_fl.config.settings import FLAGCX_ENV
from sglang_fl.errors import (
    FlagCXCallError,
    FlagCXLibraryError,
    FlagCXUnsupportedError,
    FlagCXUsageError,
)

LIBRARY_NAME = "libflagcx.so"
UNIQUE_ID_BYTES = 256

# [min, max) of flagcxGetVersion codes this binding was written for: FlagCX 0.13.x.
# Why so narrow: 0.x releases changed signatures (flagcxGetUniqueId, flagcxGroupStart) without
# renaming symbols, and ctypes cannot notice such a change. Widen only after checking the new
# flagcx.h against the declarations below and running test_flagcx_real.py on that build.
SUPPORTED_VERSIONS = (1300, 1400)

# flagcxDataType_t (mirrors NCCL's ordering). Uint32/Uint64 are NCCL's slots 3/5; the earlier
# plugin's wrapper did not map them, but the enum values are fixed by the ordering.
DTYPE_ENUM: Mapping[torch.dtype, int] = {
    torch.int8: 0,
    torch.uint8: 1,
    torch.int32: 2,
    torch.uint32: 3,
    torch.int64: 4,
    torch.uint64: 5,
    torch.float16: 6,
    torch.float32: 7,
    torch.float64: 8,
    torch.bfloat16: 9,
}

# flagcxRedOp_t. Note torch numbers its ReduceOp differently (AVG=1), so ops are mapped by name.
OP_ENUM_BY_NAME: Mapping[str, int] = {"sum": 0, "prod": 1, "max": 2, "min": 3, "avg": 4}
_OP_ALIASES = {"product": "prod"}

_UniqueIdBytes = ctypes.c_ubyte * UNIQUE_ID_BYTES


class FlagCXUniqueId(ctypes.Structure):
    """``flagcxUniqueId``: 256 opaque bytes (unsigned, so ``bytes()`` keeps embedded NULs)."""

    _fields_ = (("internal", _UniqueIdBytes),)


_P = c_void_p  # any pointer: buffers, flagcxComm_t, flagcxStream_t
_E = c_int  # any C enum: flagcxResult_t, flagcxDataType_t, flagcxRedOp_t

# name -> (restype, argtypes). Every function returns flagcxResult_t.
REQUIRED_SIGNATURES: Mapping[str, tuple[Any, list[Any]]] = {
    "flagcxGetVersion": (_E, [POINTER(c_int)]),
    "flagcxGetUniqueId": (_E, [POINTER(FlagCXUniqueId)]),
    "flagcxCommInitRank": (_E, [POINTER(_P), c_int, POINTER(FlagCXUniqueId), c_int]),
    "flagcxCommDestroy": (_E, [_P]),
    "flagcxCommCount": (_E, [_P, POINTER(c_int)]),
    "flagcxCommUserRank": (_E, [_P, POINTER(c_int)]),
    # (sendbuff, recvbuff, count, datatype, op, comm, stream)
    "flagcxAllReduce": (_E, [_P, _P, c_size_t, _E, _E, _P, _P]),
    # (sendbuff, recvbuff, sendcount, datatype, comm, stream)
    "flagcxAllGather": (_E, [_P, _P, c_size_t, _E, _P, _P]),
    # (sendbuff, recvbuff, recvcount, datatype, op, comm, stream)
    "flagcxReduceScatter": (_E, [_P, _P, c_size_t, _E, _E, _P, _P]),
    # (sendbuff, recvbuff, count, datatype, root, comm, stream)
    "flagcxBroadcast": (_E, [_P, _P, c_size_t, _E, c_int, _P, _P]),
    # (sendbuff, recvbuff, count, datatype, op, root, comm, stream)
    "flagcxReduce": (_E, [_P, _P, c_size_t, _E, _E, c_int, _P, _P]),
    # (sendbuff, count, datatype, peer, comm, stream)
    "flagcxSend": (_E, [_P, c_size_t, _E, c_int, _P, _P]),
    # (recvbuff, count, datatype, peer, comm, stream)
    "flagcxRecv": (_E, [_P, c_size_t, _E, c_int, _P, _P]),
    "flagcxGroupStart": (_E, [_P]),
    "flagcxGroupEnd": (_E, [_P]),
}
OPTIONAL_SIGNATURES: Mapping[str, tuple[Any, list[Any]]] = {
    "flagcxGetErrorString": (c_char_p, [_E]),
}


# --------------------------------------------------------------------------- enum mapping


def flagcx_dtype(dtype: torch.dtype) -> int:
    """The ``flagcxDataType_t`` for a torch dtype; raises for dtypes FlagCX cannot carry."""
    try:
        return DTYPE_ENUM[dtype]
    except KeyError:
        accepted = ", ".join(str(d) for d in DTYPE_ENUM)
        raise FlagCXUnsupportedError(
            f"FlagCX has no data type for torch dtype {dtype}; supported: {accepted}"
        ) from None


def _build_op_table() -> dict[Any, int]:
    """Accepted op spellings -> enum: names (any case) and torch's ReduceOp members."""
    table: dict[Any, int] = dict(OP_ENUM_BY_NAME)
    for alias, name in _OP_ALIASES.items():
        table[alias] = OP_ENUM_BY_NAME[name]
    if torch.distributed.is_available():
        red = torch.distributed.ReduceOp.RedOpType
        by_torch_name = {"SUM": "sum", "PRODUCT": "prod", "MAX": "max", "MIN": "min", "AVG": "avg"}
        for torch_name, name in by_torch_name.items():
            table[getattr(red, torch_name)] = OP_ENUM_BY_NAME[name]
    return table


_OP_TABLE = _build_op_table()
_ACCEPTED_OPS = (
    "'sum', 'prod', 'max', 'min', 'avg' (any case, 'product' too) or "
    "torch.distributed.ReduceOp.SUM/PRODUCT/MAX/MIN/AVG"
)


def flagcx_op(op: object) -> int:
    """The ``flagcxRedOp_t`` for a reduce op name or ``torch.distributed.ReduceOp``.

    Only names and torch's ReduceOp types are looked up. Numbers are refused on purpose: torch's
    and FlagCX's numbering differ (AVG is 1 in torch, 4 in FlagCX), and torch's enum compares
    equal to numbers, so a number would silently pick the wrong op.
    """
    key = _op_key(op)
    if key is not None and key in _OP_TABLE:
        return _OP_TABLE[key]
    raise FlagCXUnsupportedError(f"FlagCX has no reduce op for {op!r}; supported: {_ACCEPTED_OPS}")


def _op_key(op: object) -> object | None:
    if isinstance(op, str):
        return op.lower()
    if not torch.distributed.is_available():
        return None
    reduce_op = torch.distributed.ReduceOp
    if isinstance(op, reduce_op.RedOpType):
        return op
    if isinstance(op, reduce_op):  # the wrapper object, e.g. ReduceOp(ReduceOp.SUM)
        return op.op
    return None


# --------------------------------------------------------------------------- version codes


def version_string(code: int) -> str:
    """``1300`` -> ``"0.13.0"`` (NCCL-style code; see the module docstring)."""
    return f"{code // 10000}.{code // 100 % 100}.{code % 100}"


def check_version(code: int, path: Path) -> None:
    """Refuse a library whose ABI this binding was not written for."""
    low, high = SUPPORTED_VERSIONS
    if low <= code < high:
        return
    raise FlagCXLibraryError(
        f"{path} reports FlagCX version {version_string(code)} (flagcxGetVersion={code}); "
        f"sglang-fl's FlagCX binding supports versions >= {version_string(low)} and < "
        f"{version_string(high)} (codes {low}..{high - 1}), the C API it was written against. "
        f"Point {FLAGCX_ENV} at a FlagCX build in that range."
    )


# --------------------------------------------------------------------------- discovery


def candidate_paths(flagcx_path: str) -> list[Path]:
    """Where libflagcx.so is looked for, in order, for a ``FLAGCX_PATH`` value."""
    root = Path(flagcx_path).expanduser()
    if root.is_file():
        return [root]
    return [root / "lib" / LIBRARY_NAME, root / "build" / "lib" / LIBRARY_NAME]


def find_library(flagcx_path: str | None) -> Path:
    """Resolve libflagcx.so from a ``FLAGCX_PATH`` value (``Settings.flagcx_path``).

    The value is passed in rather than read here: the environment is read only by
    :mod:`sglang_fl.config.settings`.
    """
    raw = (flagcx_path or "").strip()
    hint = (
        f"set {FLAGCX_ENV} to a FlagCX install or build directory (one containing "
        f"lib/{LIBRARY_NAME} or build/lib/{LIBRARY_NAME}) or to the {LIBRARY_NAME} file itself"
    )
    if not raw:
        raise FlagCXLibraryError(
            f"{FLAGCX_ENV} is not set, so {LIBRARY_NAME} cannot be found: {hint}"
        )
    tried = candidate_paths(raw)
    for path in tried:
        if path.is_file():
            return path.resolve()
    shown = ", ".join(str(p) for p in tried)
    raise FlagCXLibraryError(f"{FLAGCX_ENV}={raw}: no {LIBRARY_NAME} found (tried {shown}); {hint}")


_LOADED: dict[Path, FlagCXLibrary] = {}
_LOAD_LOCK = threading.Lock()


def load_library(flagcx_path: str | None) -> FlagCXLibrary:
    """The process-wide binding for the libflagcx.so that ``flagcx_path`` (a ``FLAGCX_PATH``
    value, normally ``Settings.flagcx_path``) resolves to.

    Loaded, symbol-checked and version-checked once per resolved path; later calls return the
    same object. A refused library is not cached.
    """
    path = find_library(flagcx_path)
    with _LOAD_LOCK:
        lib = _LOADED.get(path)
        if lib is None:
            lib = _LOADED[path] = FlagCXLibrary(path)
        return lib


# --------------------------------------------------------------------------- the binding


def _bind(cdll: ctypes.CDLL, name: str, signature: tuple[Any, list[Any]]) -> Any:
    function = getattr(cdll, name)
    function.restype, function.argtypes = signature
    return function


class FlagCXLibrary:
    """Typed access to one loaded libflagcx.so. Use :func:`load_library` rather than this.

    Pointers (buffers, ``comm``, ``stream``) are plain ints; ``datatype``/``op`` are the enum
    values from :func:`flagcx_dtype`/:func:`flagcx_op`. Every method raises
    :class:`FlagCXCallError` on a non-zero result. Function pointers are bound once here.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._cdll = ctypes.CDLL(str(path))
        except OSError as exc:
            raise FlagCXLibraryError(
                f"{path} exists but cannot be loaded: {exc}. Check that it was built for this "
                f"machine and that its own dependencies (the vendor runtime) are on the loader "
                f"path, or point {FLAGCX_ENV} at another build."
            ) from exc
        self._functions = {
            name: self._require(name, sig) for name, sig in REQUIRED_SIGNATURES.items()
        }
        self._error_string = self._optional("flagcxGetErrorString")
        f = self._functions
        self._all_reduce, self._all_gather = f["flagcxAllReduce"], f["flagcxAllGather"]
        self._reduce_scatter, self._broadcast = f["flagcxReduceScatter"], f["flagcxBroadcast"]
        self._reduce, self._send, self._recv = f["flagcxReduce"], f["flagcxSend"], f["flagcxRecv"]
        self._group_start, self._group_end = f["flagcxGroupStart"], f["flagcxGroupEnd"]
        self.version = self.get_version()
        check_version(self.version, path)

    def _require(self, name: str, signature: tuple[Any, list[Any]]) -> Any:
        try:
            return _bind(self._cdll, name, signature)
        except AttributeError:
            raise FlagCXLibraryError(
                f"{self.path} does not export {name}, which sglang-fl's FlagCX binding needs "
                f"(written for FlagCX {version_string(SUPPORTED_VERSIONS[0])}); point "
                f"{FLAGCX_ENV} at a complete FlagCX build of a supported version."
            ) from None

    def _optional(self, name: str) -> Any | None:
        try:
            return _bind(self._cdll, name, OPTIONAL_SIGNATURES[name])
        except AttributeError:
            return None

    def __repr__(self) -> str:
        return f"FlagCXLibrary({str(self.path)!r}, version={version_string(self.version)})"

    # ------------------------------------------------------------------ results

    def error_string(self, code: int) -> str:
        """FlagCX's text for a result code, or a note saying why there is none."""
        if self._error_string is None:
            return "no error text: the library does not export flagcxGetErrorString"
        text = self._error_string(code)
        return text.decode(errors="replace") if text else "no error text"

    def _fail(self, function: str, code: int) -> NoReturn:
        raise FlagCXCallError(function, code, self.error_string(code))

    def _call(self, name: str, *args: Any) -> None:
        code = self._functions[name](*args)
        if code:
            self._fail(name, code)

    # ------------------------------------------------------------------ setup

    def get_version(self) -> int:
        version = c_int()
        self._call("flagcxGetVersion", ctypes.byref(version))
        return version.value

    def get_unique_id(self) -> bytes:
        """A fresh ``flagcxUniqueId`` (256 bytes) in caller-allocated storage."""
        uid = FlagCXUniqueId()
        self._call("flagcxGetUniqueId", ctypes.byref(uid))
        return bytes(uid)

    def comm_init_rank(self, nranks: int, unique_id: bytes, rank: int) -> int:
        """Create this rank's communicator; returns the ``flagcxComm_t`` as an int."""
        if len(unique_id) != UNIQUE_ID_BYTES:
            raise FlagCXUsageError(
                f"a flagcxUniqueId has {UNIQUE_ID_BYTES} bytes, got {len(unique_id)}"
            )
        uid = FlagCXUniqueId.from_buffer_copy(unique_id)
        comm = c_void_p()
        self._call("flagcxCommInitRank", ctypes.byref(comm), nranks, ctypes.byref(uid), rank)
        if not comm.value:
            raise FlagCXCallError("flagcxCommInitRank", 0, "returned success but a NULL comm")
        return comm.value

    def comm_destroy(self, comm: int) -> None:
        self._call("flagcxCommDestroy", comm)

    def comm_count(self, comm: int) -> int:
        count = c_int()
        self._call("flagcxCommCount", comm, ctypes.byref(count))
        return count.value

    def comm_user_rank(self, comm: int) -> int:
        rank = c_int()
        self._call("flagcxCommUserRank", comm, ctypes.byref(rank))
        return rank.value

    # ------------------------------------------------------------------ collectives (hot path)

    def all_reduce(
        self, send: int, recv: int, count: int, datatype: int, op: int, comm: int, stream: int
    ) -> None:
        code = self._all_reduce(send, recv, count, datatype, op, comm, stream)
        if code:
            self._fail("flagcxAllReduce", code)

    def all_gather(
        self, send: int, recv: int, send_count: int, datatype: int, comm: int, stream: int
    ) -> None:
        code = self._all_gather(send, recv, send_count, datatype, comm, stream)
        if code:
            self._fail("flagcxAllGather", code)

    def reduce_scatter(
        self, send: int, recv: int, recv_count: int, datatype: int, op: int, comm: int, stream: int
    ) -> None:
        code = self._reduce_scatter(send, recv, recv_count, datatype, op, comm, stream)
        if code:
            self._fail("flagcxReduceScatter", code)

    def broadcast(
        self, send: int, recv: int, count: int, datatype: int, root: int, comm: int, stream: int
    ) -> None:
        code = self._broadcast(send, recv, count, datatype, root, comm, stream)
        if code:
            self._fail("flagcxBroadcast", code)

    def reduce(
        self,
        send: int,
        recv: int,
        count: int,
        datatype: int,
        op: int,
        root: int,
        comm: int,
        stream: int,
    ) -> None:
        code = self._reduce(send, recv, count, datatype, op, root, comm, stream)
        if code:
            self._fail("flagcxReduce", code)

    def send(self, send: int, count: int, datatype: int, peer: int, comm: int, stream: int) -> None:
        code = self._send(send, count, datatype, peer, comm, stream)
        if code:
            self._fail("flagcxSend", code)

    def recv(self, recv: int, count: int, datatype: int, peer: int, comm: int, stream: int) -> None:
        code = self._recv(recv, count, datatype, peer, comm, stream)
        if code:
            self._fail("flagcxRecv", code)

    def group_start(self, comm: int) -> None:
        code = self._group_start(comm)
        if code:
            self._fail("flagcxGroupStart", code)

    def group_end(self, comm: int) -> None:
        code = self._group_end(comm)
        if code:
            self._fail("flagcxGroupEnd", code)
