"""sglang-fl's FlagCX torch.distributed backend in one process, against the test double.

What several processes see is in ``test_flagcx_multirank.py``; this covers registration, the
one-tensor-per-process rule, the group's bookkeeping and its cleanup. Registering a torch
backend is process-global, so every test here registers the same (library, device) pair.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
import torch
import torch.distributed as dist
from flagcx_double import Double, trace_calls

from sglang_fl.distributed.flagcx import FlagCXLibrary
from sglang_fl.distributed.flagcx_process_group import (
    TORCH_BACKEND,
    FlagCXProcessGroup,
    register_torch_backend,
)
from sglang_fl.errors import FlagCXUsageError


@pytest.fixture
def live(double: Double):
    """Communicators alive now, counted from the start of the test (the count is global)."""
    start = double.live_comms
    return lambda: double.live_comms - start


@pytest.fixture
def world(lib: FlagCXLibrary, live) -> Iterator[FlagCXProcessGroup]:
    """A world of one process on sglang-fl's FlagCX backend."""
    assert not dist.is_initialized()
    backend = register_torch_backend(lib, "cpu")
    dist.init_process_group(backend, rank=0, world_size=1, store=dist.HashStore())
    yield dist.group.WORLD
    if dist.is_initialized():
        dist.destroy_process_group()


def test_registration_is_idempotent_and_refuses_another_device(lib: FlagCXLibrary) -> None:
    assert register_torch_backend(lib, "cpu") == register_torch_backend(lib, "cpu")
    assert dist.Backend.backend_capability[TORCH_BACKEND] == ["cpu"]
    with pytest.raises(FlagCXUsageError, match=r"already registered for .* on cpu; cannot"):
        register_torch_backend(lib, "npu")


def test_the_default_group_is_a_flagcx_group(world, double: Double, live) -> None:
    assert isinstance(world, FlagCXProcessGroup)
    assert dist.get_backend() == TORCH_BACKEND
    assert world.communicator.world_size == 1 and live() == 1
    tensor = torch.arange(4.0)
    dist.all_reduce(tensor)
    assert double.last().name == b"flagcxAllReduce"
    assert double.last().sendbuff == tensor.data_ptr()  # in place, through the group


def test_the_unique_id_comes_through_the_store(world, double: Double) -> None:
    # the double's ids count up from a pattern; a zeroed buffer would show as all zeros
    uid = double.last_unique_id()
    assert uid != bytes(256) and all(uid[i] == (uid[0] + i) % 256 for i in range(256))


def test_one_tensor_per_process(world) -> None:
    opts = dist.AllreduceOptions()
    with pytest.raises(FlagCXUsageError, match="allreduce needs exactly one entry, got 2"):
        world.allreduce([torch.ones(1), torch.ones(1)], opts)


def test_work_is_complete_at_once(world) -> None:
    work = dist.all_reduce(torch.ones(2), async_op=True)
    assert work.is_completed() and work.wait()
    assert work.get_future().value()[0].tolist() == [1.0, 1.0]


def test_destroying_the_group_destroys_its_communicator(world, live) -> None:
    dist.barrier()
    sub = dist.new_group([0], backend=TORCH_BACKEND)
    assert live() == 2
    dist.destroy_process_group(sub)
    assert live() == 1
    dist.destroy_process_group()
    assert live() == 0 and world.communicator.closed


def test_a_group_left_open_is_destroyed_at_process_exit(flagcx_double_root, tmp_path) -> None:
    # SGLang's scheduler may exit without destroy_process_group: the communicator's finalizer
    # still destroys it at interpreter exit.
    trace = tmp_path / "trace.txt"
    code = (
        "import torch.distributed as dist\n"
        "from sglang_fl.distributed.flagcx import load_library\n"
        "from sglang_fl.distributed.flagcx_process_group import register_torch_backend\n"
        f"backend = register_torch_backend(load_library({str(flagcx_double_root)!r}), 'cpu')\n"
        "dist.init_process_group(backend, rank=0, world_size=1, store=dist.HashStore())\n"
    )
    env = {**os.environ, "FLAGCX_DOUBLE_TRACE": str(trace)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = [name for _, name, _ in trace_calls(trace)]
    assert names == ["flagcxCommInitRank", "flagcxCommDestroy"]
