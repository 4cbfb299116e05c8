"""Per-rank checks that data really moves through sglang-fl's FlagCX path, for several ranks.

Shared by two runs: on CPU against the test double in multi-process mode
(``test_flagcx_multirank.py``; our side of the contract, every CI run) and on accelerators
against a real FlagCX build (``test_flagcx_real.py``; only where ``FLAGCX_PATH`` points at one).
Each check runs in every rank with the same arguments and asserts this rank's result.
Expected values are written out from the collective's definition, not computed by a second
implementation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist

from sglang_fl.distributed.flagcx_communicator import FlagCXCommunicator

# Exactly representable in every dtype below for up to 4 ranks.
DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.int64, torch.int32, torch.int8)


def sync(device: torch.device) -> None:
    if device.type != "cpu":
        getattr(torch, device.type).synchronize(device)


def triangle(world: int) -> int:
    """1 + 2 + ... + world: the sum over ranks of ``rank + 1``."""
    return world * (world + 1) // 2


# --------------------------------------------------------------------------- the communicator


def check_all_reduce(comm: FlagCXCommunicator, rank: int, world: int) -> None:
    for dtype in DTYPES:
        tensor = torch.full((1024,), rank + 1, dtype=dtype, device=comm.device)
        ptr = tensor.data_ptr()
        comm.all_reduce(tensor)
        sync(comm.device)
        assert tensor.data_ptr() == ptr
        assert torch.all(tensor == triangle(world)), dtype
    expected = {"max": world, "min": 1}
    for op in ("max", "min"):
        tensor = torch.full((8,), float(rank + 1), device=comm.device)
        comm.all_reduce(tensor, op=op)
        sync(comm.device)
        assert torch.all(tensor == expected[op]), op
    tensor = torch.full((8,), float(rank + 1), device=comm.device)
    comm.all_reduce(tensor, op=dist.ReduceOp.AVG)
    sync(comm.device)
    assert torch.allclose(tensor, torch.full_like(tensor, triangle(world) / world))


def check_all_gather_and_reduce_scatter(comm: FlagCXCommunicator, rank: int, world: int) -> None:
    mine = torch.full((2, 3), float(rank), device=comm.device)
    gathered = torch.empty(2 * world, 3, device=comm.device)
    comm.all_gather(gathered, mine)
    source = torch.arange(world * 4, dtype=torch.float32, device=comm.device) + rank
    chunk = torch.empty(4, device=comm.device)
    comm.reduce_scatter(chunk, source)
    sync(comm.device)
    expected_rows = torch.arange(world, device=comm.device).repeat_interleave(2).float()
    assert torch.equal(gathered[:, 0], expected_rows)
    offset = sum(range(world))
    expected = torch.arange(rank * 4, rank * 4 + 4, device=comm.device).float() * world + offset
    assert torch.equal(chunk, expected)


def check_varsized(comm: FlagCXCommunicator, rank: int, world: int) -> None:
    sizes = [r + 1 for r in range(world)]  # uneven on purpose
    sizes[-1] = 0  # and one rank contributes nothing
    mine = torch.full((sizes[rank], 2), float(rank), device=comm.device)
    gathered = torch.empty(sum(sizes), 2, device=comm.device)
    comm.all_gatherv(gathered, mine, sizes)
    sizes_back = list(reversed(sizes))
    source = torch.full((sum(sizes_back), 2), float(rank + 1), device=comm.device)
    reduced = torch.empty(sizes_back[rank], 2, device=comm.device)
    comm.reduce_scatterv(reduced, source, sizes_back)
    sync(comm.device)
    expected = torch.cat([torch.full((n, 2), float(r)) for r, n in enumerate(sizes)])
    assert torch.equal(gathered.cpu(), expected)
    assert torch.all(reduced == triangle(world))


def check_lists(comm: FlagCXCommunicator, rank: int, world: int) -> None:
    """torch's list forms: per-rank tensors of different shapes."""
    outputs = [torch.empty(r + 1, device=comm.device) for r in range(world)]
    comm.all_gather_list(outputs, torch.full((rank + 1,), float(rank * 10), device=comm.device))
    chunks = [torch.full((r + 2,), float(rank + 1), device=comm.device) for r in range(world)]
    mine = torch.empty(rank + 2, device=comm.device)
    comm.reduce_scatter_list(mine, chunks, op="max")
    sync(comm.device)
    assert [o.tolist() for o in outputs] == [[float(r * 10)] * (r + 1) for r in range(world)]
    assert torch.all(mine == world)


def check_broadcast_reduce_and_send_recv(comm: FlagCXCommunicator, rank: int, world: int) -> None:
    tensor = torch.full((16,), float(rank), device=comm.device)
    comm.broadcast(tensor, src=world - 1)
    reduced = torch.full((4,), rank + 1, dtype=torch.int64, device=comm.device)
    comm.reduce(reduced, root=0)
    outgoing = torch.full((4,), float(rank), device=comm.device)
    incoming = torch.empty(4, device=comm.device)
    with comm.group():
        comm.send(outgoing, (rank + 1) % world)
        comm.recv(incoming, (rank - 1) % world)
    sync(comm.device)
    assert torch.all(tensor == world - 1)
    if rank == 0:
        assert torch.all(reduced == triangle(world))
    assert torch.all(incoming == (rank - 1) % world)


COMMUNICATOR_CHECKS: tuple[Callable[[FlagCXCommunicator, int, int], None], ...] = (
    check_all_reduce,
    check_all_gather_and_reduce_scatter,
    check_varsized,
    check_lists,
    check_broadcast_reduce_and_send_recv,
)


# --------------------------------------------------------------------------- torch.distributed


def check_torch_collectives(device: torch.device, rank: int, world: int) -> None:
    """The default group is a FlagCX process group: torch's own API, data moves."""
    tensor = torch.full((5,), float(rank + 1), device=device)
    dist.all_reduce(tensor)
    work = dist.all_reduce(tensor, op=dist.ReduceOp.MAX, async_op=True)
    work.wait()
    gathered = torch.empty(world * 2, device=device)
    dist.all_gather_into_tensor(gathered, torch.full((2,), float(rank), device=device))
    uneven = [torch.empty(r + 1, device=device) for r in range(world)]
    dist.all_gather(uneven, torch.full((rank + 1,), float(rank), device=device))
    scattered = torch.empty(2, device=device)
    dist.reduce_scatter_tensor(scattered, torch.arange(2.0 * world, device=device))
    sync(device)
    assert torch.all(tensor == triangle(world))
    assert gathered.tolist() == [float(r) for r in range(world) for _ in range(2)]
    assert [u.tolist() for u in uneven] == [[float(r)] * (r + 1) for r in range(world)]
    assert scattered.tolist() == [2.0 * rank * world, (2.0 * rank + 1) * world]


def check_torch_rooted_and_p2p(device: torch.device, rank: int, world: int) -> None:
    value = torch.full((3,), float(rank), device=device)
    dist.broadcast(value, src=world - 1)
    total = torch.full((2,), rank + 1, dtype=torch.int32, device=device)
    dist.reduce(total, dst=0)
    bucket = [torch.empty(2, device=device) for _ in range(world)] if rank == 0 else None
    dist.gather(torch.full((2,), float(rank), device=device), bucket, dst=0)
    swapped = torch.empty(world, device=device)
    dist.all_to_all_single(swapped, torch.arange(world, device=device) + 10.0 * rank)
    if rank == 0:
        dist.send(torch.tensor([7.0], device=device), dst=1)
    elif rank == 1:
        got = torch.empty(1, device=device)
        dist.recv(got, src=0)
        assert got.item() == 7.0
    sync(device)
    assert torch.all(value == world - 1)
    if rank == 0:
        assert torch.all(total == triangle(world))
        assert [b.tolist() for b in bucket] == [[float(r)] * 2 for r in range(world)]
    assert swapped.tolist() == [10.0 * r + rank for r in range(world)]


def check_torch_objects_and_barrier(device: torch.device, rank: int, world: int) -> None:
    """Object collectives move host tensors over the (device) group."""
    objects = [{"from": rank, "text": "ß" * rank}] if rank == 0 else [None]
    dist.broadcast_object_list(objects, src=0)
    dist.barrier()
    assert objects == [{"from": 0, "text": ""}]


TORCH_CHECKS: tuple[Callable[[torch.device, int, int], None], ...] = (
    check_torch_collectives,
    check_torch_rooted_and_p2p,
    check_torch_objects_and_barrier,
)
