"""sglang-fl's FlagCX communicator on a REAL FlagCX build, across two or more devices.

Runs only when ``FLAGCX_PATH`` points at a real ``libflagcx.so`` (not the test double of
``test_flagcx_binding.py``) and the host has two or more accelerator devices, e.g.::

    FLAGCX_PATH=/opt/flagcx pytest -m multigpu tests/distributed/test_flagcx_real.py

These confirm what the double cannot: the ABI assumptions of ``sglang_fl.distributed.flagcx``
(caller-allocated unique id, init by pointer, version code, the ``flagcxStream_t`` box that
wraps a raw device stream) and that data really moves, with uneven ``sizes`` included. CI has
no FlagCX build, so they are skipped there.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from sglang_fl.distributed.flagcx import find_library
from sglang_fl.distributed.flagcx_communicator import FlagCXCommunicator
from sglang_fl.errors import FlagCXLibraryError


def _real_flagcx() -> Path | None:
    """The library FLAGCX_PATH resolves to, unless there is none or it is our test double."""
    raw = os.environ.get("FLAGCX_PATH", "").strip()
    if not raw:
        return None
    try:
        path = find_library(raw)
    except FlagCXLibraryError:
        return None
    return None if b"double_set_version" in path.read_bytes() else path


def _accelerator() -> tuple[str, int]:
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is None or not accelerator.is_available():
        return "none", 0
    return accelerator.current_accelerator().type, accelerator.device_count()


DEVICE_TYPE, DEVICE_COUNT = _accelerator()
pytestmark = [
    pytest.mark.multigpu,
    pytest.mark.skipif(
        _real_flagcx() is None,
        reason="FLAGCX_PATH does not point at a real FlagCX build (not run here)",
    ),
    pytest.mark.skipif(
        DEVICE_COUNT < 2,
        reason=f"a real FlagCX run needs two or more accelerator devices (found {DEVICE_COUNT})",
    ),
]


# --------------------------------------------------------------------------- per-rank checks


def _sync(device: torch.device) -> None:
    getattr(torch, device.type).synchronize(device)


def _check_all_reduce(comm: FlagCXCommunicator, rank: int, world: int) -> None:
    for dtype in (torch.float32, torch.bfloat16, torch.float16, torch.int64):
        tensor = torch.full((1024,), rank + 1, dtype=dtype, device=comm.device)
        ptr = tensor.data_ptr()
        comm.all_reduce(tensor)
        _sync(comm.device)
        assert tensor.data_ptr() == ptr
        assert torch.all(tensor == world * (world + 1) // 2), dtype
    tensor = torch.full((8,), float(rank), device=comm.device)
    comm.all_reduce(tensor, op="max")
    _sync(comm.device)
    assert torch.all(tensor == world - 1)


def _check_all_gather_and_reduce_scatter(comm: FlagCXCommunicator, rank: int, world: int) -> None:
    mine = torch.full((2, 3), float(rank), device=comm.device)
    gathered = torch.empty(2 * world, 3, device=comm.device)
    comm.all_gather(gathered, mine)
    source = torch.arange(world * 4, dtype=torch.float32, device=comm.device) + rank
    chunk = torch.empty(4, device=comm.device)
    comm.reduce_scatter(chunk, source)
    _sync(comm.device)
    expected_rows = torch.arange(world, device=comm.device).repeat_interleave(2).float()
    assert torch.equal(gathered[:, 0], expected_rows)
    offset = sum(range(world))
    expected = torch.arange(rank * 4, rank * 4 + 4, device=comm.device).float() * world + offset
    assert torch.equal(chunk, expected)


def _check_varsized(comm: FlagCXCommunicator, rank: int, world: int) -> None:
    sizes = [r + 1 for r in range(world)]  # uneven on purpose
    mine = torch.full((sizes[rank], 2), float(rank), device=comm.device)
    gathered = torch.empty(sum(sizes), 2, device=comm.device)
    comm.all_gatherv(gathered, mine, sizes)
    sizes_back = list(reversed(sizes))
    source = torch.full((sum(sizes_back), 2), float(rank + 1), device=comm.device)
    reduced = torch.empty(sizes_back[rank], 2, device=comm.device)
    comm.reduce_scatterv(reduced, source, sizes_back)
    _sync(comm.device)
    expected = torch.cat([torch.full((n, 2), float(r)) for r, n in enumerate(sizes)])
    assert torch.equal(gathered.cpu(), expected)
    assert torch.all(reduced == world * (world + 1) // 2)


def _check_broadcast_and_send_recv(comm: FlagCXCommunicator, rank: int, world: int) -> None:
    tensor = torch.full((16,), float(rank), device=comm.device)
    comm.broadcast(tensor, src=world - 1)
    outgoing = torch.full((4,), float(rank), device=comm.device)
    incoming = torch.empty(4, device=comm.device)
    with comm.group():
        comm.send(outgoing, (rank + 1) % world)
        comm.recv(incoming, (rank - 1) % world)
    _sync(comm.device)
    assert torch.all(tensor == world - 1)
    assert torch.all(incoming == (rank - 1) % world)


def _check_side_stream(comm: FlagCXCommunicator, rank: int, world: int) -> None:
    """The default stream provider follows the current stream (a boxed raw handle)."""
    module = getattr(torch, comm.device.type)
    side = module.Stream(comm.device)
    tensor = torch.full((256,), 1.0, device=comm.device)
    side.wait_stream(module.current_stream(comm.device))
    with module.stream(side):
        comm.all_reduce(tensor)
    side.synchronize()
    assert torch.all(tensor == world)


CHECKS = (
    _check_all_reduce,
    _check_all_gather_and_reduce_scatter,
    _check_varsized,
    _check_broadcast_and_send_recv,
    _check_side_stream,
)


def _worker(rank: int, world: int, init_file: str, device_type: str) -> None:
    device = torch.device(device_type, rank)
    getattr(torch, device_type).set_device(device)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        with FlagCXCommunicator(rank, world, dist.group.WORLD, device) as comm:
            for check in CHECKS:
                check(comm, rank, world)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_collectives_move_data_across_ranks(tmp_path: Path) -> None:
    world = min(DEVICE_COUNT, 4)
    torch.multiprocessing.spawn(
        _worker, args=(world, str(tmp_path / "store"), DEVICE_TYPE), nprocs=world, join=True
    )
