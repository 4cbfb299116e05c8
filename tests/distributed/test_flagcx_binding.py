"""sglang-fl's FlagCX ctypes binding and communicator, against a C test double of the C API.

These tests do NOT exercise FlagCX. They compile ``tests/flagcx_double/flagcx_double.c`` -- the
documented v0.13.0 C API implemented for one rank on host memory, recording every call -- into
``<tmp>/lib/libflagcx.so``, load it as ``FLAGCX_PATH=<tmp>`` would, and check OUR side of the
boundary: library discovery, symbol and version checks, dtype/op enums, argument marshalling
(pointers, counts, enums, streams), in-place all_reduce, result-code handling and the
communicator's lifecycle. Several ranks in several processes: ``test_flagcx_multirank.py``;
a real FlagCX build: ``test_flagcx_real.py``.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from flagcx_double import Double, build
from torch.utils._python_dispatch import TorchDispatchMode

from sglang_fl.distributed import flagcx
from sglang_fl.distributed.flagcx import (
    FlagCXLibrary,
    find_library,
    flagcx_dtype,
    flagcx_op,
    load_library,
    version_string,
)
from sglang_fl.distributed.flagcx_communicator import FlagCXCommunicator, default_stream_provider
from sglang_fl.errors import (
    FlagCXCallError,
    FlagCXLibraryError,
    FlagCXUnsupportedError,
    FlagCXUsageError,
)

RAW_STREAM = 0x5EED  # a fake device stream handle; the double only records it
ReduceOp = dist.ReduceOp

# Written out independently of the binding (FlagCX mirrors NCCL's ordering).
EXPECTED_DTYPES = {
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
ALL_DTYPES = sorted(
    {v for v in vars(torch).values() if isinstance(v, torch.dtype)}, key=lambda d: str(d)
)
REJECTED_DTYPES = [d for d in ALL_DTYPES if d not in EXPECTED_DTYPES]
# The functions the brief and the v0.13.0 header require of libflagcx.so.
REQUIRED_SYMBOLS = [
    "flagcxGetVersion", "flagcxGetUniqueId", "flagcxCommInitRank", "flagcxCommDestroy",
    "flagcxCommCount", "flagcxCommUserRank", "flagcxAllReduce", "flagcxAllGather",
    "flagcxReduceScatter", "flagcxBroadcast", "flagcxReduce", "flagcxSend", "flagcxRecv",
    "flagcxGroupStart", "flagcxGroupEnd",
]  # fmt: skip


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def comm(lib: FlagCXLibrary, gloo: object) -> Iterator[FlagCXCommunicator]:
    communicator = FlagCXCommunicator.over_group(
        lib, gloo, device="cpu", stream_provider=lambda: RAW_STREAM
    )
    yield communicator
    communicator.close()


@pytest.fixture
def comm3(lib: FlagCXLibrary) -> Iterator[FlagCXCommunicator]:
    """Rank 1 of a 3-rank double communicator: records calls, moves no data."""
    handle = lib.comm_init_rank(3, lib.get_unique_id(), 1)
    communicator = FlagCXCommunicator.from_comm(
        lib, handle, rank=1, world_size=3, device="cpu", stream_provider=lambda: RAW_STREAM
    )
    yield communicator
    communicator.close()


class RecordAtenOps(TorchDispatchMode):
    """Records every ATen op run while active (allocations and copies included)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


# --------------------------------------------------------------------------- discovery


def test_lib_dir_is_preferred_over_build_lib(c_compiler: str, tmp_path: Path) -> None:
    build(c_compiler, tmp_path, "lib")
    build(c_compiler, tmp_path, "build/lib")
    assert find_library(str(tmp_path)) == (tmp_path / "lib" / "libflagcx.so").resolve()


def test_build_lib_is_used_when_lib_is_absent(c_compiler: str, tmp_path: Path) -> None:
    build(c_compiler, tmp_path, "build/lib")
    assert find_library(str(tmp_path)) == (tmp_path / "build/lib/libflagcx.so").resolve()


def test_flagcx_path_may_name_the_library_itself(c_compiler: str, tmp_path: Path) -> None:
    so = build(c_compiler, tmp_path, "")
    assert find_library(str(so)) == so.resolve()


def test_the_environment_is_not_read(
    flagcx_double_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only sglang_fl.config.settings reads FLAGCX_PATH; the binding takes the value it is given.
    monkeypatch.setenv("FLAGCX_PATH", str(flagcx_double_root))
    with pytest.raises(FlagCXLibraryError, match="FLAGCX_PATH is not set"):
        find_library(None)


def test_missing_library_lists_the_paths_tried(tmp_path: Path) -> None:
    with pytest.raises(FlagCXLibraryError) as info:
        find_library(str(tmp_path))
    message = str(info.value)
    assert str(tmp_path / "lib" / "libflagcx.so") in message
    assert str(tmp_path / "build" / "lib" / "libflagcx.so") in message
    assert "set FLAGCX_PATH to a FlagCX install or build directory" in message


@pytest.mark.parametrize("value", [None, "", "   "])
def test_unset_flagcx_path_says_what_to_set(value: str | None) -> None:
    with pytest.raises(FlagCXLibraryError, match="FLAGCX_PATH is not set"):
        load_library(value)


def test_unloadable_file_is_reported_with_the_loader_error(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "libflagcx.so").write_text("not an ELF file")
    with pytest.raises(FlagCXLibraryError, match="exists but cannot be loaded"):
        load_library(str(tmp_path))


def test_library_is_loaded_once_per_path(lib: FlagCXLibrary, flagcx_double_root: Path) -> None:
    assert load_library(str(flagcx_double_root)) is lib
    assert load_library(str(flagcx_double_root / "lib" / "libflagcx.so")) is lib


# --------------------------------------------------------------------------- versions


@pytest.mark.parametrize("code", [0, 1200, 1299, 1400, 10000])
def test_unsupported_version_is_refused(code: int, c_compiler: str, tmp_path: Path) -> None:
    controls = Double(build(c_compiler, tmp_path))
    controls.set_version(code)
    with pytest.raises(FlagCXLibraryError) as info:
        load_library(str(tmp_path))
    message = str(info.value)
    assert f"version {version_string(code)} (flagcxGetVersion={code})" in message
    assert ">= 0.13.0 and < 0.14.0" in message
    assert "FLAGCX_PATH" in message
    controls.set_version(1300)  # a refused library is not cached: fixing it makes it loadable
    assert load_library(str(tmp_path)).version == 1300


@pytest.mark.parametrize("code", [1300, 1301, 1399])
def test_supported_version_loads(code: int, c_compiler: str, tmp_path: Path) -> None:
    Double(build(c_compiler, tmp_path)).set_version(code)
    assert load_library(str(tmp_path)).version == code


def test_version_codes_decode_nccl_style() -> None:
    assert version_string(1300) == "0.13.0"
    assert version_string(1512) == "0.15.12"
    assert version_string(21903) == "2.19.3"


def test_failing_version_query_names_the_function(c_compiler: str, tmp_path: Path) -> None:
    Double(build(c_compiler, tmp_path)).fail_next("flagcxGetVersion", 2)
    with pytest.raises(FlagCXCallError, match="flagcxGetVersion failed with flagcxResult_t 2"):
        load_library(str(tmp_path))


# --------------------------------------------------------------------------- symbols


def test_binding_requires_exactly_the_documented_functions() -> None:
    assert sorted(flagcx.REQUIRED_SIGNATURES) == sorted(REQUIRED_SYMBOLS)


@pytest.mark.parametrize("symbol", REQUIRED_SYMBOLS)
def test_missing_symbol_is_named(symbol: str, c_compiler: str, tmp_path: Path) -> None:
    build(c_compiler, tmp_path, omit=(symbol,))
    with pytest.raises(FlagCXLibraryError) as info:
        load_library(str(tmp_path))
    assert f"does not export {symbol}," in str(info.value)


def test_error_string_is_optional(c_compiler: str, tmp_path: Path) -> None:
    build(c_compiler, tmp_path, omit=("flagcxGetErrorString",))
    stripped = load_library(str(tmp_path))
    Double(stripped.path).fail_next("flagcxGroupStart", 3)
    with pytest.raises(FlagCXCallError, match="does not export flagcxGetErrorString"):
        stripped.group_start(stripped.comm_init_rank(1, stripped.get_unique_id(), 0))


# --------------------------------------------------------------------------- dtypes and ops


@pytest.mark.parametrize("dtype", list(EXPECTED_DTYPES), ids=str)
def test_supported_dtype_maps_to_its_enum(dtype: torch.dtype) -> None:
    assert flagcx_dtype(dtype) == EXPECTED_DTYPES[dtype]


@pytest.mark.parametrize("dtype", REJECTED_DTYPES, ids=str)
def test_unsupported_dtype_is_rejected_by_name(dtype: torch.dtype) -> None:
    with pytest.raises(FlagCXUnsupportedError) as info:
        flagcx_dtype(dtype)
    message = str(info.value)
    assert f"torch dtype {dtype};" in message
    assert "supported: torch.int8, torch.uint8," in message and "torch.bfloat16" in message


@pytest.mark.parametrize("dtype", list(EXPECTED_DTYPES), ids=str)
def test_dtype_enum_reaches_the_library(dtype: torch.dtype, comm, double: Double) -> None:
    comm.all_reduce(torch.zeros(5, dtype=dtype))
    assert double.last("flagcxAllReduce").datatype == EXPECTED_DTYPES[dtype]


def test_rejected_dtype_makes_no_call(comm, double: Double) -> None:
    calls = len(double.calls())
    with pytest.raises(FlagCXUnsupportedError, match=r"torch\.bool"):
        comm.all_reduce(torch.zeros(3, dtype=torch.bool))
    assert len(double.calls()) == calls


ACCEPTED_OPS = [
    ("sum", 0), ("SUM", 0), ("prod", 1), ("product", 1), ("max", 2), ("min", 3), ("avg", 4),
    (ReduceOp.SUM, 0), (ReduceOp.PRODUCT, 1), (ReduceOp.MAX, 2), (ReduceOp.MIN, 3),
    (ReduceOp.AVG, 4), (ReduceOp(ReduceOp.AVG), 4), (ReduceOp(ReduceOp.MAX), 2),
]  # fmt: skip
REJECTED_OPS = [
    ReduceOp.BAND, ReduceOp.BOR, ReduceOp.BXOR, ReduceOp.PREMUL_SUM,
    dist._make_nccl_premul_sum(2.0), "band", "mean", "", None,
    0, 1, 4, True, 1.0,  # numbers: torch's AVG is 1, FlagCX's is 4 -- never guess
]  # fmt: skip


@pytest.mark.parametrize(("op", "enum"), ACCEPTED_OPS, ids=repr)
def test_supported_op_maps_to_its_enum(op: object, enum: int) -> None:
    assert flagcx_op(op) == enum


@pytest.mark.parametrize("op", REJECTED_OPS, ids=repr)
def test_unsupported_op_is_rejected_with_the_accepted_list(op: object) -> None:
    with pytest.raises(FlagCXUnsupportedError) as info:
        flagcx_op(op)
    assert f"no reduce op for {op!r}; supported: 'sum', 'prod', 'max', 'min', 'avg'" in str(
        info.value
    )


@pytest.mark.parametrize(("op", "enum"), [(ReduceOp.AVG, 4), ("max", 2), (ReduceOp.PRODUCT, 1)])
def test_op_enum_reaches_the_library(op: object, enum: int, comm, double: Double) -> None:
    comm.all_reduce(torch.ones(2), op=op)
    comm.reduce_scatter(torch.ones(2), torch.ones(2), op=op)
    assert double.last("flagcxAllReduce").op == enum
    assert double.last("flagcxReduceScatter").op == enum


# --------------------------------------------------------------------------- creation


def test_unique_id_travels_whole_over_the_gloo_group(comm, double: Double) -> None:
    uid = double.last_unique_id()
    assert 0 in uid[1:]  # bytes after a NUL arrived too
    assert all(uid[i] == (uid[0] + i) % 256 for i in range(256))
    assert (comm.rank, comm.world_size, comm.device) == (0, 1, torch.device("cpu"))
    assert double.inits == 1


def test_get_unique_id_returns_256_bytes(lib: FlagCXLibrary) -> None:
    uid = lib.get_unique_id()
    assert len(uid) == 256 and all(uid[i] == (uid[0] + i) % 256 for i in range(256))


def test_unique_id_of_wrong_length_is_refused(lib: FlagCXLibrary) -> None:
    with pytest.raises(FlagCXUsageError, match="256 bytes, got 3"):
        lib.comm_init_rank(1, b"abc", 0)


def test_a_process_group_is_required(lib: FlagCXLibrary) -> None:
    with pytest.raises(FlagCXUsageError, match="init_process_group first"):
        FlagCXCommunicator.over_group(lib, None, device="cpu")


def test_create_joins_with_a_shared_unique_id(lib: FlagCXLibrary, double: Double) -> None:
    uid = lib.get_unique_id()
    with FlagCXCommunicator.create(lib, uid, rank=2, world_size=3, device="cpu") as communicator:
        assert (communicator.rank, communicator.world_size) == (2, 3)
        assert double.last_unique_id() == uid
    assert double.destroys == 1


def test_init_failure_names_the_function(lib: FlagCXLibrary, gloo, double: Double) -> None:
    double.fail_next("flagcxCommInitRank", 2)
    with pytest.raises(FlagCXCallError) as info:
        FlagCXCommunicator.over_group(lib, gloo, device="cpu")
    assert (info.value.function, info.value.code) == ("flagcxCommInitRank", 2)
    assert "unhandled system error" in str(info.value)


def test_comm_with_another_rank_layout_is_refused_and_destroyed(
    lib: FlagCXLibrary, double: Double
) -> None:
    handle = lib.comm_init_rank(3, lib.get_unique_id(), 2)
    with pytest.raises(FlagCXUsageError, match="rank 2 of 3, expected rank 0 of 3"):
        FlagCXCommunicator.from_comm(lib, handle, rank=0, world_size=3, device="cpu")
    assert double.destroys == 1


def test_default_stream_on_cpu_is_the_null_handle() -> None:
    assert default_stream_provider(torch.device("cpu"))() == 0


# --------------------------------------------------------------------------- marshalling


def test_all_reduce_is_in_place_without_allocating(comm, double: Double) -> None:
    tensor = torch.arange(6, dtype=torch.float32)
    ptr = tensor.data_ptr()
    with RecordAtenOps() as aten:
        result = comm.all_reduce(tensor)
    assert aten.ops == []  # no empty_like, no copy_
    assert result is tensor and tensor.data_ptr() == ptr
    call = double.last()
    assert call.name == b"flagcxAllReduce"
    assert call.sendbuff == call.recvbuff == ptr
    assert (call.count, call.datatype, call.op) == (6, 7, 0)
    assert call.comm == comm._comm and call.group_depth == 0
    assert torch.equal(tensor, torch.arange(6, dtype=torch.float32))


def test_stream_handle_is_wrapped_once_and_passed(comm, double: Double) -> None:
    comm.all_reduce(torch.ones(1))
    first = double.last()
    comm.all_reduce(torch.ones(1))
    second = double.last()
    assert first.stream_base == second.stream_base == RAW_STREAM
    assert first.stream == second.stream and first.stream  # the cached flagcxStream_t
    comm.all_reduce(torch.ones(1), stream=0xABC)
    assert double.last().stream_base == 0xABC and double.last().stream != first.stream


def test_null_stream_handle_reaches_the_library_as_null(lib, gloo, double: Double) -> None:
    with FlagCXCommunicator.over_group(
        lib, gloo, device="cpu", stream_provider=lambda: None
    ) as communicator:
        communicator.all_reduce(torch.ones(1))
    call = double.last("flagcxAllReduce")
    assert call.stream and call.stream_base is None


def test_all_gather_marshals_and_copies(comm, double: Double) -> None:
    source, out = torch.tensor([1, 2, 3], dtype=torch.int64), torch.zeros(3, dtype=torch.int64)
    assert comm.all_gather(out, source) is out
    call = double.last()
    assert (call.name, call.sendbuff, call.recvbuff) == (
        b"flagcxAllGather",
        source.data_ptr(),
        out.data_ptr(),
    )
    assert (call.count, call.datatype) == (3, 4)
    assert torch.equal(out, source)


def test_all_gather_counts_per_rank_elements(comm3, double: Double) -> None:
    comm3.all_gather(torch.zeros(3, 4), torch.zeros(1, 4))
    assert double.last().count == 4


def test_reduce_scatter_counts_output_elements(comm3, double: Double) -> None:
    source, out = torch.zeros(6, 2, dtype=torch.bfloat16), torch.zeros(2, 2, dtype=torch.bfloat16)
    comm3.reduce_scatter(out, source, op="min")
    call = double.last()
    assert (call.name, call.count, call.datatype, call.op) == (b"flagcxReduceScatter", 4, 9, 3)
    assert (call.sendbuff, call.recvbuff) == (source.data_ptr(), out.data_ptr())


def test_broadcast_is_in_place_with_root(comm3, double: Double) -> None:
    tensor = torch.zeros(4, dtype=torch.float16)
    comm3.broadcast(tensor, src=2)
    call = double.last()
    assert (call.name, call.root, call.count, call.datatype) == (b"flagcxBroadcast", 2, 4, 6)
    assert call.sendbuff == call.recvbuff == tensor.data_ptr()


def test_send_recv_pair_in_a_group(comm, double: Double) -> None:
    source, out = torch.tensor([4.0, 5.0]), torch.zeros(2)
    with comm.group():
        comm.send(source, 0)
        comm.recv(out, 0)
    assert double.names()[-4:] == ["flagcxGroupStart", "flagcxSend", "flagcxRecv",
                                   "flagcxGroupEnd"]  # fmt: skip
    send, recv = double.last("flagcxSend"), double.last("flagcxRecv")
    assert (send.sendbuff, send.peer, send.count, send.group_depth) == (source.data_ptr(), 0, 2, 1)
    assert (recv.recvbuff, recv.peer, recv.count, recv.group_depth) == (out.data_ptr(), 0, 2, 1)
    assert torch.equal(out, source)


def test_all_gatherv_broadcasts_each_ranks_rows(comm3, double: Double) -> None:
    sizes, width = [2, 1, 3], 4
    out, mine = torch.zeros(6, width), torch.zeros(1, width)
    comm3.all_gatherv(out, mine, sizes)
    assert double.names() == ["flagcxGroupStart", *["flagcxBroadcast"] * 3, "flagcxGroupEnd"]
    casts = [c for c in double.calls() if c.name == b"flagcxBroadcast"]
    base, row_bytes = out.data_ptr(), width * out.element_size()
    assert [c.root for c in casts] == [0, 1, 2]
    assert [c.count for c in casts] == [8, 4, 12]
    assert [c.recvbuff for c in casts] == [base, base + 2 * row_bytes, base + 3 * row_bytes]
    assert [c.sendbuff for c in casts] == [base, mine.data_ptr(), base + 3 * row_bytes]
    assert all(c.group_depth == 1 and c.stream_base == RAW_STREAM for c in casts)


def test_reduce_scatterv_reduces_each_ranks_rows(comm3, double: Double) -> None:
    sizes = [3, 2, 0]
    source, mine = torch.zeros(5, 2, 2, dtype=torch.int32), torch.zeros(2, 2, 2, dtype=torch.int32)
    comm3.reduce_scatterv(mine, source, sizes, op=ReduceOp.MAX)
    reduces = [c for c in double.calls() if c.name == b"flagcxReduce"]
    base, row_bytes = source.data_ptr(), 4 * source.element_size()
    assert [c.root for c in reduces] == [0, 1, 2]
    assert [c.count for c in reduces] == [12, 8, 0]
    # rank 2's chunk is empty: count 0, so its (null) pointers are never read
    assert [c.sendbuff for c in reduces[:2]] == [base, base + 3 * row_bytes]
    assert [c.recvbuff for c in reduces[:2]] == [base, mine.data_ptr()]
    assert {(c.op, c.datatype, c.group_depth) for c in reduces} == {(2, 2, 1)}
    assert double.names()[0] == "flagcxGroupStart" and double.names()[-1] == "flagcxGroupEnd"


def test_all_gather_list_broadcasts_each_ranks_tensor(comm3, double: Double) -> None:
    outputs = [torch.zeros(2), torch.zeros(1), torch.zeros(3)]  # per-rank sizes differ
    mine = torch.ones(1)
    assert comm3.all_gather_list(outputs, mine) is outputs
    casts = [c for c in double.calls() if c.name == b"flagcxBroadcast"]
    assert [(c.root, c.count) for c in casts] == [(0, 2), (1, 1), (2, 3)]
    assert [c.recvbuff for c in casts] == [o.data_ptr() for o in outputs]
    assert [c.sendbuff for c in casts] == [outputs[0].data_ptr(), mine.data_ptr(),
                                           outputs[2].data_ptr()]  # fmt: skip
    assert double.names()[0] == "flagcxGroupStart" and double.names()[-1] == "flagcxGroupEnd"


def test_reduce_scatter_list_reduces_each_chunk(comm3, double: Double) -> None:
    chunks = [torch.zeros(4, dtype=torch.float64), torch.zeros(2, dtype=torch.float64),
              torch.zeros(1, dtype=torch.float64)]  # fmt: skip
    mine = torch.zeros(2, dtype=torch.float64)
    assert comm3.reduce_scatter_list(mine, chunks, op="min") is mine
    reduces = [c for c in double.calls() if c.name == b"flagcxReduce"]
    assert [(c.root, c.count, c.op, c.datatype) for c in reduces] == [
        (0, 4, 3, 8), (1, 2, 3, 8), (2, 1, 3, 8)
    ]  # fmt: skip
    assert [c.sendbuff for c in reduces] == [c.data_ptr() for c in chunks]
    assert reduces[1].recvbuff == mine.data_ptr()


def test_reduce_is_in_place_at_the_root(comm3, double: Double) -> None:
    tensor = torch.zeros(3, dtype=torch.int8)
    assert comm3.reduce(tensor, root=2, op="prod") is tensor
    call = double.last()
    assert (call.name, call.root, call.op, call.datatype, call.count) == (
        b"flagcxReduce", 2, 1, 0, 3
    )  # fmt: skip
    assert call.sendbuff == call.recvbuff == tensor.data_ptr()


@pytest.mark.parametrize(
    ("outputs", "match"),
    [
        ([torch.zeros(1)] * 2, r"one tensor per rank \(world_size=3\); got 2"),
        ([torch.zeros(1), torch.zeros(1, dtype=torch.int32), torch.zeros(1)],
         r"outputs\[1\] is torch.int32, expected torch.float32"),
        ([torch.zeros(1), torch.zeros(2), torch.zeros(1)],
         r"outputs\[1\] \(this rank's\) needs shape \(1,\); got \(2,\)"),
        ([torch.zeros(1), torch.zeros(1), torch.zeros(4, 4).t()],
         r"outputs\[2\] must be contiguous"),
    ],
)  # fmt: skip
def test_list_arguments_are_checked_before_any_call(comm3, double: Double, outputs, match):
    with pytest.raises(FlagCXUsageError, match=match):
        comm3.all_gather_list(outputs, torch.zeros(1))
    assert double.names() == []


def test_varsized_collectives_move_data_on_one_rank(comm) -> None:
    source = torch.arange(6.0).reshape(3, 2)
    gathered = torch.zeros(3, 2)
    comm.all_gatherv(gathered, source, [3])
    assert torch.equal(gathered, source)
    scattered = torch.zeros(3, 2)
    comm.reduce_scatterv(scattered, source, (n for n in [3]))  # any iterable of sizes
    assert torch.equal(scattered, source)


@pytest.mark.parametrize(
    ("sizes", "out_shape", "local_shape", "match"),
    [
        ([2, 1], (3, 4), (1, 4), "one non-negative dim-0 size per rank"),
        ([2, -1, 5], (6, 4), (-1, 4), "one non-negative dim-0 size per rank"),
        ([2, 1, 3], (5, 4), (1, 4), r"dim 0 == sum\(sizes\) == 6"),
        ([2, 1, 3], (6, 4), (2, 4), r"needs shape \(1, 4\) \(sizes\[1\] rows\)"),
        ([2, 1, 3], (6, 4), (1, 5), r"needs shape \(1, 4\)"),
    ],
)
def test_varsized_arguments_are_checked_before_any_call(
    comm3, double: Double, sizes, out_shape, local_shape, match
) -> None:
    local = torch.zeros(*[max(d, 0) for d in local_shape])
    with pytest.raises(FlagCXUsageError, match=match):
        comm3.all_gatherv(torch.zeros(out_shape), local, sizes)
    with pytest.raises(FlagCXUsageError, match=match):
        comm3.reduce_scatterv(local, torch.zeros(out_shape), sizes)
    assert double.names() == []


def test_tensor_arguments_are_checked(comm3, double: Double) -> None:
    with pytest.raises(FlagCXUsageError, match="contiguous"):
        comm3.all_reduce(torch.zeros(4, 4).t())
    with pytest.raises(FlagCXUsageError, match="is on meta, but this communicator runs on cpu"):
        comm3.all_reduce(torch.zeros(4, device="meta"))
    with pytest.raises(FlagCXUsageError, match=r"output is torch\.float16 but input is"):
        comm3.all_gather(torch.zeros(3, dtype=torch.float16), torch.zeros(1))
    with pytest.raises(FlagCXUsageError, match=r"output.numel\(\) == input.numel\(\) \* world"):
        comm3.all_gather(torch.zeros(4), torch.zeros(1))
    with pytest.raises(FlagCXUsageError, match=r"input.numel\(\) == output.numel\(\) \* world"):
        comm3.reduce_scatter(torch.zeros(2), torch.zeros(5))
    with pytest.raises(FlagCXUsageError, match=r"src=3 is not a rank of this group \(0..2\)"):
        comm3.broadcast(torch.zeros(1), src=3)
    with pytest.raises(FlagCXUsageError, match="dst=-1"):
        comm3.send(torch.zeros(1), -1)
    assert double.names() == []


# --------------------------------------------------------------------------- result codes


def _run_all_reduce(c: FlagCXCommunicator) -> None:
    c.all_reduce(torch.ones(2))


CALLS_BY_FUNCTION = {
    "flagcxAllReduce": _run_all_reduce,
    "flagcxAllGather": lambda c: c.all_gather(torch.zeros(3), torch.zeros(1)),
    "flagcxReduceScatter": lambda c: c.reduce_scatter(torch.zeros(1), torch.zeros(3)),
    "flagcxBroadcast": lambda c: c.broadcast(torch.zeros(1), 0),
    "flagcxSend": lambda c: c.send(torch.zeros(1), 0),
    "flagcxRecv": lambda c: c.recv(torch.zeros(1), 0),
    "flagcxReduce": lambda c: c.reduce_scatterv(torch.zeros(1), torch.zeros(3), [1, 1, 1]),
    "flagcxGroupStart": lambda c: c.all_gatherv(torch.zeros(3), torch.zeros(1), [1, 1, 1]),
    "flagcxGroupEnd": lambda c: c.all_gatherv(torch.zeros(3), torch.zeros(1), [1, 1, 1]),
}


@pytest.mark.parametrize("function", list(CALLS_BY_FUNCTION))
def test_non_zero_result_raises_with_function_code_and_text(
    function: str, comm3, double: Double
) -> None:
    double.fail_next(function, 3)
    with pytest.raises(FlagCXCallError) as info:
        CALLS_BY_FUNCTION[function](comm3)
    assert (info.value.function, info.value.code, info.value.reason) == (
        function, 3, "internal error"
    )  # fmt: skip
    assert str(info.value) == f"{function} failed with flagcxResult_t 3 (internal error)"


def test_library_side_validation_surfaces_as_call_error(lib: FlagCXLibrary, comm3) -> None:
    with pytest.raises(FlagCXCallError, match=r"flagcxBroadcast failed .* 4 \(invalid argument\)"):
        lib.broadcast(0, 0, 0, 7, 9, comm3._comm, 0)  # root 9 of 3 ranks


def test_failure_inside_a_group_still_ends_the_group(comm3, double: Double) -> None:
    double.fail_next("flagcxBroadcast", 5)
    with pytest.raises(FlagCXCallError, match="flagcxBroadcast failed with flagcxResult_t 5"):
        comm3.all_gatherv(torch.zeros(3), torch.zeros(1), [1, 1, 1])
    assert double.names() == ["flagcxGroupStart", "flagcxBroadcast", "flagcxGroupEnd"]
    comm3.all_gatherv(torch.zeros(3), torch.zeros(1), [1, 1, 1])  # group state is clean


# --------------------------------------------------------------------------- lifecycle


def test_close_destroys_once(lib: FlagCXLibrary, gloo, double: Double) -> None:
    communicator = FlagCXCommunicator.over_group(lib, gloo, device="cpu")
    handle = communicator._comm
    communicator.close()
    communicator.close()
    assert communicator.closed and double.destroys == 1
    assert double.last("flagcxCommDestroy").comm == handle
    with pytest.raises(FlagCXUsageError, match="closed"):
        communicator.all_reduce(torch.ones(1))


def test_garbage_collection_destroys_once(lib: FlagCXLibrary, gloo, double: Double) -> None:
    communicator = FlagCXCommunicator.over_group(lib, gloo, device="cpu")
    communicator.all_reduce(torch.ones(1))
    del communicator
    gc.collect()
    assert double.destroys == 1


def test_context_manager_closes(lib: FlagCXLibrary, gloo, double: Double) -> None:
    with FlagCXCommunicator.over_group(lib, gloo, device="cpu") as communicator:
        pass
    assert communicator.closed and double.destroys == 1


def test_destroy_failure_raises_from_close_once(lib: FlagCXLibrary, gloo, double) -> None:
    communicator = FlagCXCommunicator.over_group(lib, gloo, device="cpu")
    double.fail_next("flagcxCommDestroy", 3)
    with pytest.raises(FlagCXCallError, match="flagcxCommDestroy failed"):
        communicator.close()
    communicator.close()  # no second destroy of the same handle
    assert [n for n in double.names() if n == "flagcxCommDestroy"] == ["flagcxCommDestroy"]


def test_destroy_failure_during_collection_is_logged(
    lib: FlagCXLibrary, gloo, double: Double, caplog: pytest.LogCaptureFixture
) -> None:
    communicator = FlagCXCommunicator.over_group(lib, gloo, device="cpu")
    double.fail_next("flagcxCommDestroy", 3)
    with caplog.at_level(logging.WARNING, logger="sglang_fl.distributed.flagcx_communicator"):
        del communicator
        gc.collect()
    assert "FlagCX communicator cleanup failed" in caplog.text
