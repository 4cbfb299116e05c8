"""Layer 3 inside real SGLang process groups: two ranks, SGLang's own GroupCoordinator.

Each test spawns two processes that install Layer 3 as ``load_plugin`` does, let SGLang apply
the hooks, and build SGLang's tensor-parallel groups the way its model runner does:

- gloo (the CPU platform's backend): SGLang has no PyNccl there, so ``all_gatherv`` /
  ``reduce_scatterv`` run on sglang-fl's implementation -- uneven sizes, list inputs, given
  output buffers -- and give exact results.
- flagcx against the test double (multi-process mode): every device group is sglang-fl's FlagCX
  process group, PyNccl is not built (the ``GroupCoordinator.__init__`` hook), SGLang's
  collectives -- all_reduce, all_gather, reduce_scatter, broadcast, send/recv, the v-forms --
  give exact results, the double's call log shows FlagCX did the work, and
  ``destroy_model_parallel`` / ``destroy_distributed_environment`` destroy every FlagCX
  communicator. This proves our side against the double, not FlagCX.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch
from flagcx_double import MULTIPROCESS_ENV, Double

from sglang_fl.compat import distributed as sglang_distributed
from sglang_fl.compat.hooks import hook_registry
from sglang_fl.config import load_settings
from sglang_fl.distributed import layer3
from sglang_fl.distributed.flagcx_process_group import FlagCXProcessGroup

pytestmark = [pytest.mark.sglang, pytest.mark.slow]
WORLD = 2


def _start(rank: int, store: str, **changes):
    """Layer 3 as load_plugin installs it, SGLang's hooks applied, TP groups built."""
    settings = dataclasses.replace(load_settings(env={}), **changes)
    layer3.install(settings, "cpu")
    registry, _ = hook_registry()
    registry.apply_hooks()
    return sglang_distributed.init_tensor_parallel(
        world_size=WORLD, rank=rank, init_method=f"file://{store}",
        backend=layer3.torch_backend(settings, "cpu"), custom_all_reduce=False,
    )  # fmt: skip


def _check_varsized(tp, rank: int) -> None:
    sizes = [3, 1]
    mine = torch.full((sizes[rank], 2), float(rank + 1))
    (gathered,) = tp.all_gatherv(mine, sizes=sizes)
    assert gathered.tolist() == [[1.0, 1.0]] * 3 + [[2.0, 2.0]]
    given = torch.empty(4, 2)
    (result,) = tp.all_gatherv(mine, sizes=sizes, output=given)
    assert result is given and torch.equal(given, gathered)
    first, second = tp.all_gatherv([torch.full((2,), float(rank)), torch.ones(1, 3) * rank])
    assert first.tolist() == [0.0, 0.0, 1.0, 1.0] and second.shape == (2, 3)
    rows = torch.arange(8.0).reshape(4, 2) * (rank + 1)
    mine_back = tp.reduce_scatterv(rows, sizes=sizes)
    expected = (torch.arange(8.0).reshape(4, 2) * 3).split(sizes)[rank]
    assert torch.equal(mine_back, expected)
    assert torch.equal(rows, torch.arange(8.0).reshape(4, 2) * (rank + 1))  # input intact
    equal = tp.reduce_scatterv(torch.ones(4, 1) * (rank + 1))
    assert equal.tolist() == [[3.0], [3.0]]


def _check_group_collectives(tp, rank: int) -> None:
    reduced = tp.all_reduce(torch.full((3,), float(rank + 1)))
    assert reduced.tolist() == [3.0, 3.0, 3.0]
    gathered = tp.all_gather(torch.full((1, 2), float(rank)), dim=0)
    assert gathered.tolist() == [[0.0, 0.0], [1.0, 1.0]]
    # (reduce_scatter_tensor on CPU tensors takes a CUDA-only custom op in SGLang itself)
    out = torch.empty(1)
    tp.reduce_scatter(out, [torch.tensor([1.0]), torch.tensor([2.0])] * 1)
    assert out.item() == 2.0 * (rank + 1)
    assert tp.broadcast(torch.full((2,), float(rank)), src=1).tolist() == [1.0, 1.0]
    if rank == 0:
        tp.send(torch.tensor([5.0, 6.0]), dst=1)
    else:
        assert tp.recv(torch.Size([2]), torch.float32, src=0).tolist() == [5.0, 6.0]


def _gloo_worker(rank: int, store: str) -> None:
    tp = _start(rank, store)
    try:
        assert tp.pynccl_comm is None or not tp.pynccl_comm.available
        _check_varsized(tp, rank)
    finally:
        sglang_distributed.destroy_tensor_parallel()


def _flagcx_worker(rank: int, store: str, root: str) -> None:
    os.environ.update(MULTIPROCESS_ENV)
    controls = Double(Path(root) / "lib" / "libflagcx.so")
    tp = _start(rank, store, dist_backend="flagcx", flagcx_path=root)
    try:
        assert isinstance(tp.device_group, FlagCXProcessGroup)
        assert tp.pynccl_comm is None and tp.ca_comm is None  # the __init__ hook
        controls.reset()  # the call log from here on
        _check_group_collectives(tp, rank)
        _check_varsized(tp, rank)
        used = set(controls.names())
        assert {"flagcxAllReduce", "flagcxAllGather", "flagcxBroadcast", "flagcxReduce",
                "flagcxGroupStart"} <= used  # fmt: skip
        assert ("flagcxSend" if rank == 0 else "flagcxRecv") in used
        assert controls.live_comms > 0
    finally:
        sglang_distributed.destroy_tensor_parallel()
    assert controls.live_comms == 0


def test_gloo_varsized_collectives_run_without_pynccl(tmp_path: Path) -> None:
    torch.multiprocessing.spawn(_gloo_worker, args=(str(tmp_path / "store"),), nprocs=WORLD)


def test_flagcx_carries_sglangs_collectives(flagcx_double_root: Path, tmp_path: Path) -> None:
    torch.multiprocessing.spawn(
        _flagcx_worker, args=(str(tmp_path / "store"), str(flagcx_double_root)), nprocs=WORLD
    )
