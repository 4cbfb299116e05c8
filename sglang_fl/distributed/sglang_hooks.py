"""Every SGLang hook Layer 3 installs, in one module.

sglang-fl prefers SGLang's declared mechanisms: the platform's torch distributed backend string
selects the communication library, and ``apply_server_args_defaults`` switches off SGLang's
NCCL-only accelerations for FlagCX. A hook exists only where SGLang offers no mechanism in the
supported releases (0.5.15-0.5.23); each one below says what it does and which releases need it.

Hooks are registered with SGLang's ``HookRegistry`` during ``load_plugin``
(:func:`sglang_fl.compat.hooks.register_hook`: each target resolved at registration, a missing
one an error); SGLang applies them when ``load_plugins()`` returns, in every process, before any
process group is created. The hooks a platform bundle declares to route Triton-only paths to
PyTorch are in :mod:`sglang_fl.compat.torch_routes`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from sglang_fl.compat import distributed as sglang_distributed
from sglang_fl.compat.hooks import HookKind, register_hook, resolve

OWNER = "Layer 3"


def install_flagcx_hooks() -> None:
    """Hooks for ``SGLANG_FL_DIST_BACKEND=flagcx``."""
    init_target = f"{sglang_distributed.GROUP_COORDINATOR}.__init__"
    original_init = resolve(init_target, OWNER)
    flags = sglang_distributed.nccl_communicator_flags(original_init)
    signature = inspect.signature(original_init)

    # GroupCoordinator.__init__, BEFORE -- needed by 0.5.15-0.5.23.
    # SGLang builds PyNccl (and, where asked, custom all-reduce, MSCCL++ and torch symmetric
    # memory) next to every device group on CUDA, and routes CUDA-graph all-reduces and the
    # gathers/scatters through them: those would bypass FlagCX. The server arguments turn off
    # what they can; PyNccl has no per-backend switch (before 0.5.23 SGLang decides by device
    # type; 0.5.23's capabilities.supports_pynccl is per platform, and the NVIDIA platform has
    # PyNccl for its default NCCL backend).
    def without_nccl_communicators(*args: Any, **kwargs: Any) -> tuple[tuple, dict]:
        bound = signature.bind(*args, **kwargs)
        for flag in flags:
            bound.arguments[flag] = False
        return bound.args, bound.kwargs

    _register(init_target, without_nccl_communicators, "BEFORE")


def install_varsized_hooks() -> None:
    """Hooks for every backend on which SGLang has no PyNccl (gloo, hccl, flagcx)."""
    from sglang_fl.distributed import varsized

    # GroupCoordinator.all_gatherv / reduce_scatterv, AROUND -- needed by 0.5.15-0.5.23.
    # Both are implemented only on PyNccl (`assert pynccl_comm is not None`), so DP attention
    # and the MoE dispatchers fail on gloo, HCCL and FlagCX. With PyNccl present, SGLang's own
    # implementation runs unchanged.
    def all_gatherv(original: Callable, self: Any, input_: Any, sizes=None, output=None) -> Any:
        if _has_pynccl(self):
            return original(self, input_, sizes, output)
        return varsized.all_gatherv(self, input_, sizes, output)

    def reduce_scatterv(original: Callable, self: Any, input_: Any, output=None, sizes=None):
        if _has_pynccl(self):
            return original(self, input_, output, sizes)
        return varsized.reduce_scatterv(self, input_, output, sizes)

    _register(f"{sglang_distributed.GROUP_COORDINATOR}.all_gatherv", all_gatherv, "AROUND")
    _register(f"{sglang_distributed.GROUP_COORDINATOR}.reduce_scatterv", reduce_scatterv, "AROUND")


def _has_pynccl(group: Any) -> bool:
    comm = getattr(group, "pynccl_comm", None)
    return comm is not None and getattr(comm, "available", False)


def _register(target: str, hook: Callable, kind: HookKind) -> None:
    register_hook(target, hook, kind, owner=OWNER)
