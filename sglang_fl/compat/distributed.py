"""SGLang's distributed pieces that Layer 3 and the communication benchmark touch.

The ``GroupCoordinator`` constructor flags that create NCCL/CUDA-IPC communicators (renamed over
the releases), and building SGLang's tensor-parallel groups outside a server (0.5.15 takes the
widths as arguments; 0.5.18+ reads them from a published runtime context).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

GROUP_COORDINATOR = "sglang.srt.distributed.parallel_state.GroupCoordinator"

# GroupCoordinator.__init__ flags that build NCCL/CUDA-IPC communicators beside the device
# process group. The MSCCL++ flag is `use_pymscclpp` in 0.5.15, `use_mscclpp` in later releases.
_NCCL_COMMUNICATOR_FLAGS = (
    "use_pynccl", "use_pymscclpp", "use_mscclpp", "use_custom_allreduce",
    "use_torch_symm_mem_all_reduce",
)  # fmt: skip


def nccl_communicator_flags(init: Callable) -> tuple[str, ...]:
    """The flags of ``GroupCoordinator.__init__`` (``init``) that this SGLang has."""
    params = inspect.signature(init).parameters
    return tuple(name for name in _NCCL_COMMUNICATOR_FLAGS if name in params)


def init_tensor_parallel(
    *, world_size: int, rank: int, init_method: str, backend: str, custom_all_reduce: bool
) -> Any:
    """Build SGLang's process groups for tensor parallelism over ``world_size`` ranks, as its
    model runner does, outside a server (benchmarks, tests); returns the TP GroupCoordinator.

    0.5.15 takes the widths as ``initialize_model_parallel`` arguments; later releases read
    them from the published runtime context, so a topology is published first (what SGLang's
    own layer tests do in ``sglang.test.test_utils.publish_build_topology``).
    """
    from sglang.srt.distributed import parallel_state

    parallel_state.set_custom_all_reduce(custom_all_reduce)
    parallel_state.init_distributed_environment(
        world_size=world_size, rank=rank, distributed_init_method=init_method,
        local_rank=rank, backend=backend,
    )  # fmt: skip
    init = parallel_state.initialize_model_parallel
    if "tensor_model_parallel_size" in inspect.signature(init).parameters:
        init(tensor_model_parallel_size=world_size, backend=backend)
    else:
        _publish_topology(parallel_state, tp_size=world_size, world_rank=rank)
        init(backend=backend)
    return parallel_state.get_tp_group()


def _publish_topology(parallel_state: Any, *, tp_size: int, world_rank: int) -> None:
    from sglang.srt.runtime_context import SpawnRanks, get_parallel, publish, reset_context
    from sglang.srt.server_args import ServerArgs

    reset_context()
    publish(
        ServerArgs(model_path="dummy", tp_size=tp_size), role="test",
        ranks=SpawnRanks(world_rank=world_rank),
    )  # fmt: skip
    get_parallel().override_permanently(world_group=parallel_state._WORLD)


def destroy_tensor_parallel() -> None:
    """Tear down what :func:`init_tensor_parallel` built (the same calls on every release)."""
    from sglang.srt.distributed import parallel_state

    parallel_state.destroy_model_parallel()
    parallel_state.destroy_distributed_environment()
