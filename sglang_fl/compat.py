"""The one module that knows how SGLang differs between the versions we support.

Tested: 0.5.15 (fused ops subclass ``MultiPlatformOp``; the OOT forward is bound eagerly in
``__init__``) and 0.5.21 (``BaseFusedOp``; bound lazily on the first call). Both keep the bound
forward in ``self._forward_method`` and share ``register_oot_forward(op_cls, fn, key)``, keyed
on the exact class. Layer 3 needs the hook registry, ``GroupCoordinator``'s communicator flags
(``use_pymscclpp`` became ``use_mscclpp``) and, outside a server, building SGLang's TP groups
(0.5.21 reads the widths from a published runtime context). Everything else in sglang-fl goes
through the functions here.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterator
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from packaging.version import Version
from torch import nn

from sglang_fl.errors import UnsupportedSGLangError
from sglang_fl.ops.catalog import OpFamily

MIN_VERSION = Version("0.5.15")
MAX_VERSION = Version("0.5.21")
SUPPORTED_RANGE = f">={MIN_VERSION}, <={MAX_VERSION} (tested: 0.5.15, 0.5.21)"

# Modules that define the op families' classes, per family root.
_FAMILY_MODULES = {
    "SiluAndMul": ("sglang.srt.layers.activation",),
    "RMSNorm": ("sglang.srt.layers.layernorm",),
    "GemmaRMSNorm": ("sglang.srt.layers.layernorm",),
    "RotaryEmbedding": ("sglang.srt.layers.rotary_embedding",),
}


@functools.cache
def sglang_version() -> Version:
    try:
        return Version(version("sglang"))
    except PackageNotFoundError as exc:
        raise UnsupportedSGLangError(
            f"SGLang is not installed; sglang-fl supports sglang {SUPPORTED_RANGE}"
        ) from exc


def check_version() -> Version:
    """The installed SGLang version, or an error naming the supported range."""
    found = sglang_version()
    if not MIN_VERSION <= Version(found.base_version) <= MAX_VERSION:
        raise UnsupportedSGLangError(
            f"sglang {found} is installed; sglang-fl supports sglang {SUPPORTED_RANGE}"
        )
    return found


@functools.cache
def fused_op_base() -> type[nn.Module]:
    """The base class SGLang's fused ops inherit in this version (owner of the OOT registry)."""
    from sglang.srt.layers.layernorm import RMSNorm

    for candidate in ("sglang.kernels.fused_op:BaseFusedOp",
                      "sglang.srt.layers.utils.multi_platform:MultiPlatformOp"):  # fmt: skip
        try:
            base = pkgutil.resolve_name(candidate)
        except (ImportError, AttributeError):
            continue
        if issubclass(RMSNorm, base):
            return base
    raise UnsupportedSGLangError(
        f"cannot find SGLang's fused-op base class; sglang-fl supports sglang {SUPPORTED_RANGE}"
    )


def _subclasses(cls: type) -> Iterator[type]:
    yield cls
    for sub in cls.__subclasses__():
        yield from _subclasses(sub)


def _import_family_modules(root: str) -> None:
    for module_name in _FAMILY_MODULES[root]:
        module = importlib.import_module(module_name)
        if hasattr(module, "__path__"):  # a package: import its submodules (subclasses live there)
            for info in pkgutil.iter_modules(module.__path__, module_name + "."):
                importlib.import_module(info.name)


def family_classes(family: OpFamily) -> dict[str, type[nn.Module]]:
    """The classes of ``family`` present in this SGLang, keeping the root's forward semantics.

    A catalogued subclass that overrides ``forward``/``forward_native`` has different
    semantics in this version and is left out (it stays on SGLang's own path).
    """
    _import_family_modules(family.root)
    found = {cls.__name__: cls for cls in _subclasses(_find_root(family.root))}
    root = found[family.root]
    return {
        name: cls
        for name, cls in found.items()
        if name in family.classes and _same_forward(cls, root)
    }


def _find_root(name: str) -> type:
    for module_name in _FAMILY_MODULES[name]:
        cls = getattr(importlib.import_module(module_name), name, None)
        if cls is not None:
            return cls
    raise UnsupportedSGLangError(f"SGLang class {name} not found in {_FAMILY_MODULES[name]}")


def _same_forward(cls: type, root: type) -> bool:
    return all(getattr(cls, m) is getattr(root, m) for m in ("forward", "forward_native"))


def register_oot_forward(op_cls: type, fn: Callable, dispatch_key: str) -> None:
    fused_op_base().register_oot_forward(op_cls, fn, dispatch_key)


def install_forward(module: nn.Module, forward: Callable) -> None:
    """Make ``forward`` what ``module.forward`` calls from now on (both versions read this)."""
    module._forward_method = forward


def own_path(module: nn.Module, dispatch_key: str) -> Callable:
    """What SGLang itself runs for ``module`` on an OOT platform with ``dispatch_key``:

    ``forward_<key>`` if the op class (not the base) defines it, else ``forward_native``.
    """
    base = fused_op_base()
    name = f"forward_{dispatch_key}"
    for klass in type(module).__mro__:
        if klass is base:
            break
        if name in klass.__dict__:
            return getattr(module, name)
    return module.forward_native


def mha_kv_pool_cls() -> type:
    from sglang.srt.mem_cache.memory_pool import MHATokenToKVPool

    return MHATokenToKVPool


def allocator_factory() -> Callable[..., object]:
    """SGLang calls ``get_paged_allocator_cls()(size, page_size=, dtype=, device=, kvcache=,
    need_sort=)`` on OOT platforms; page size 1 takes the token allocator."""
    from sglang.srt.mem_cache.allocator import PagedTokenToKVPoolAllocator, TokenToKVPoolAllocator

    def make_allocator(size, page_size, dtype, device, kvcache, need_sort):
        if page_size == 1:
            return TokenToKVPoolAllocator(size, dtype, device, kvcache, need_sort)
        return PagedTokenToKVPoolAllocator(size, page_size, dtype, device, kvcache, need_sort)

    return make_allocator


def decode_graph_runner_cls() -> type:
    """SGLang's CUDA decode-graph runner (same module path in 0.5.15 and 0.5.21)."""
    from sglang.srt.model_executor.runner.decode_cuda_graph_runner import DecodeCudaGraphRunner

    return DecodeCudaGraphRunner


@functools.cache
def cuda_rope_kernel() -> Callable[..., None]:
    """SGLang's CUDA rope kernel ``apply_rope_with_cos_sin_cache_inplace(q, k, cos_sin_cache,
    positions, *, is_neox)`` (in place on ``[tokens, heads, rotary_dim]`` views, fp32 cache).

    It moved from ``sglang.jit_kernel.rope`` (0.5.15) to ``sglang.kernels.ops.attention.rope``.
    """
    for candidate in ("sglang.kernels.ops.attention.rope:apply_rope_with_cos_sin_cache_inplace",
                      "sglang.jit_kernel.rope:apply_rope_with_cos_sin_cache_inplace"):  # fmt: skip
        try:
            return pkgutil.resolve_name(candidate)
        except (ImportError, AttributeError):
            continue
    raise UnsupportedSGLangError(
        f"cannot find SGLang's CUDA rope kernel; sglang-fl supports sglang {SUPPORTED_RANGE}"
    )


def publish_default_server_args() -> None:
    """Give op constructors the global server args a running server would have published.

    SGLang < 0.5.18 reads them in some fused-op constructors (SiluAndMul, RotaryEmbedding);
    needed only when building op modules outside a server (benchmarks, tests).
    """
    if sglang_version() >= Version("0.5.18"):
        return
    from sglang.srt.server_args import ServerArgs, set_global_server_args_for_scheduler

    set_global_server_args_for_scheduler(ServerArgs(model_path="dummy"))


def hook_registry() -> tuple[type, type]:
    """SGLang's ``(HookRegistry, HookType)`` (``sglang.srt.plugins.hook_registry`` in 0.5.15
    and 0.5.21)."""
    from sglang.srt.plugins.hook_registry import HookRegistry, HookType

    return HookRegistry, HookType


GROUP_COORDINATOR = "sglang.srt.distributed.parallel_state.GroupCoordinator"

# GroupCoordinator.__init__ flags that build NCCL/CUDA-IPC communicators beside the device
# process group. The MSCCL++ flag is `use_pymscclpp` in 0.5.15 and `use_mscclpp` in 0.5.21.
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

    0.5.15 takes the widths as ``initialize_model_parallel`` arguments; 0.5.21 reads them from
    the published runtime context, so a topology is published first (what SGLang's own layer
    tests do in ``sglang.test.test_utils.publish_build_topology``).
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
    """Tear down what :func:`init_tensor_parallel` built (the same calls in both versions)."""
    from sglang.srt.distributed import parallel_state

    parallel_state.destroy_model_parallel()
    parallel_state.destroy_distributed_environment()
