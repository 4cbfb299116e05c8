"""sglang-fl's FlagCX communicator on a REAL FlagCX build, across two or more devices.

Runs only when ``FLAGCX_PATH`` points at a real ``libflagcx.so`` (not the test double of
``test_flagcx_binding.py``) and the host has two or more accelerator devices, e.g.::

    FLAGCX_PATH=/opt/flagcx pytest -m multigpu tests/distributed/test_flagcx_real.py

These confirm what the double cannot: the ABI assumptions of ``sglang_fl.distributed.flagcx``
(caller-allocated unique id, init by pointer, version code, the ``flagcxStream_t`` box that
wraps a raw device stream) and that data really moves on devices, with uneven ``sizes``
included, through the communicator and through sglang-fl's torch.distributed backend. The
checks are the ones ``test_flagcx_multirank.py`` runs against the double on CPU
(``flagcx_checks.py``). CI has no FlagCX build and no GPU: not run there, and not run anywhere
yet.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from flagcx_checks import COMMUNICATOR_CHECKS, TORCH_CHECKS
from flagcx_double import is_test_double

from sglang_fl.distributed.flagcx import find_library, load_library
from sglang_fl.distributed.flagcx_communicator import FlagCXCommunicator
from sglang_fl.distributed.flagcx_process_group import register_torch_backend
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
    return None if is_test_double(path) else path


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


def _communicator_worker(rank: int, world: int, init_file: str, device_type: str) -> None:
    device = torch.device(device_type, rank)
    getattr(torch, device_type).set_device(device)
    library = load_library(os.environ["FLAGCX_PATH"])
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        with FlagCXCommunicator.over_group(library, None, device=device) as comm:
            for check in (*COMMUNICATOR_CHECKS, _check_side_stream):
                check(comm, rank, world)
    finally:
        dist.destroy_process_group()


def _process_group_worker(rank: int, world: int, init_file: str, device_type: str) -> None:
    """torch.distributed on sglang-fl's FlagCX backend; host tensors (object collectives) are
    staged through the device."""
    device = torch.device(device_type, rank)
    getattr(torch, device_type).set_device(device)
    backend = register_torch_backend(load_library(os.environ["FLAGCX_PATH"]), device_type)
    dist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        for check in TORCH_CHECKS:
            check(device, rank, world)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("worker", [_communicator_worker, _process_group_worker])
def test_collectives_move_data_across_ranks(worker, tmp_path: Path) -> None:
    world = min(DEVICE_COUNT, 4)
    torch.multiprocessing.spawn(
        worker, args=(world, str(tmp_path / "store"), DEVICE_TYPE), nprocs=world, join=True
    )
