"""sglang-fl's FlagCX path across several processes, against the test double (CPU, every CI run).

The double (``tests/flagcx_double``) in multi-process mode moves data between processes through
shared memory, so these tests check OUR side end to end with real data and several ranks: the
unique id reaching every rank (over a gloo group, or through torch.distributed's store), our
argument marshalling for each collective including uneven sizes and groups, the
torch.distributed backend built on it, and cleanup. They prove nothing about FlagCX itself;
``test_flagcx_real.py`` runs the same checks on a real build.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from flagcx_checks import COMMUNICATOR_CHECKS, TORCH_CHECKS
from flagcx_double import MULTIPROCESS_ENV, Double

from sglang_fl.distributed.flagcx import load_library
from sglang_fl.distributed.flagcx_communicator import FlagCXCommunicator
from sglang_fl.distributed.flagcx_process_group import (
    TORCH_BACKEND,
    FlagCXProcessGroup,
    register_torch_backend,
)

pytestmark = pytest.mark.slow
WORLD = 3
CPU = torch.device("cpu")


def _spawn(worker, *args) -> None:
    torch.multiprocessing.spawn(worker, args=(WORLD, *args), nprocs=WORLD, join=True)


def _communicator_worker(rank: int, world: int, root: str, store: str) -> None:
    os.environ.update(MULTIPROCESS_ENV)
    library = load_library(root)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        with FlagCXCommunicator.over_group(library, None, device="cpu") as comm:
            for check in COMMUNICATOR_CHECKS:
                check(comm, rank, world)
        assert Double(library.path).live_comms == 0
    finally:
        dist.destroy_process_group()


def _process_group_worker(rank: int, world: int, root: str, store: str) -> None:
    os.environ.update(MULTIPROCESS_ENV)
    library = load_library(root)
    backend = register_torch_backend(library, "cpu")
    dist.init_process_group(backend, init_method=f"file://{store}", rank=rank, world_size=world)
    controls = Double(library.path)
    try:
        world_group = dist.group.WORLD
        assert isinstance(world_group, FlagCXProcessGroup)
        assert dist.get_backend(world_group) == TORCH_BACKEND
        for check in TORCH_CHECKS:
            check(CPU, rank, world)
        pair = dist.new_group([0, 2], backend=backend)  # every rank calls new_group
        if rank in (0, 2):
            tensor = torch.tensor([rank + 1.0])
            dist.all_reduce(tensor, group=pair)
            assert tensor.item() == 4.0
            assert pair.communicator.world_size == 2
            dist.destroy_process_group(pair)
        assert controls.live_comms == 1  # WORLD's; the pair's is gone
    finally:
        dist.destroy_process_group()
    assert controls.live_comms == 0


def test_communicator_moves_data_between_processes(flagcx_double_root: Path, tmp_path) -> None:
    _spawn(_communicator_worker, str(flagcx_double_root), str(tmp_path / "store"))


def test_torch_distributed_runs_on_the_flagcx_backend(flagcx_double_root: Path, tmp_path) -> None:
    _spawn(_process_group_worker, str(flagcx_double_root), str(tmp_path / "store"))
