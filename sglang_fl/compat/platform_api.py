"""SGLang's platform API on every supported release, behind sglang-fl's own declarations.

A bundle's platform class says what its device can do in sglang-fl's terms, which do not
change between releases (the ``fl_`` names on :class:`~sglang_fl.platform_base.FLPlatform`):
``fl_capabilities`` (a :class:`Capabilities`), ``fl_kv_pool_cls(kind)``,
``fl_graph_runner_cls()`` and ``fl_paged_allocator_cls()``, each ``None`` for "SGLang's own".
:func:`release_hooks` gives the base of ``FLPlatform`` that turns them into the hooks the
installed release reads, and defines no other:

- 0.5.22+ (:class:`CapabilityStructHooks`): the ``capabilities`` struct (its fields all
  default to False, so a platform that only overrides the older methods silently loses
  decode graphs), ``get_kv_pool_cls(*, kind)`` and the Optional factories, where ``None``
  means SGLang's in-tree class.
- 0.5.15-0.5.21 (:class:`LegacyHooks`): ``support_cuda_graph()``,
  ``support_piecewise_cuda_graph()``, ``supports_fp8()``, ``get_{mha,mla,dsa}_kv_pool_cls()``
  and factories that must return a class (SGLang's in-tree ones are supplied here; its MLA
  pool through :func:`legacy_mla_kv_pool`, as these releases build an out-of-tree MLA pool
  with an argument SGLang's own does not take). Defining these on 0.5.22+ would earn a
  deprecation warning (the KV-pool hooks) or be ignored (the rest).

The release is told apart by its API (is there a ``PlatformCapabilities``?), not by number.
This module imports SGLang only when asked about the installed release, so the platform
contract can be checked against a synthetic API without SGLang.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import Any, Literal

KVPoolKind = Literal["mha", "mla", "dsa"]

# Hooks sglang-fl's platform classes define that some supported releases do not have yet, with
# the first release that calls them. On an older release they are dormant: SGLang never calls
# them. The platform contract accepts exactly these as absent from an older release's base.
HOOKS_ADDED: dict[str, str] = {
    "get_torch_profiler_activity": "0.5.16",
    "get_torch_profiler_activity_str": "0.5.16",
    "post_load_model": "0.5.22",
    "get_group_coordinator_device": "0.5.23",
}


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """What a platform's device can do, in the words of SGLang's newest capability struct.

    supports_triton:        Triton kernels launch on the device (without it SGLang 0.5.22+
                            uses its torch-native allocator and req-to-token writers).
    graph_capture:          decode graphs are captured (``fl_graph_runner_cls`` gives the
                            runner).
    piecewise_graph:        prefill piecewise graphs (torch.compile) run.
    hicache_device_kernels: sgl_kernel's HiCache transfer kernels exist for the device.
    supports_pynccl:        SGLang's PyNccl communicator works on the device (0.5.23+ reads it).
    supports_fp8:           FP8 quantization (only releases before 0.5.22 ask).
    """

    supports_triton: bool = False
    graph_capture: bool = False
    piecewise_graph: bool = False
    hicache_device_kernels: bool = False
    supports_pynccl: bool = False
    supports_fp8: bool = False


CAPABILITY_NAMES: frozenset[str] = frozenset(f.name for f in dataclasses.fields(Capabilities))


def capability_struct() -> type | None:
    """The installed SGLang's capability struct class (0.5.22+), None before."""
    from sglang.srt.platforms import interface

    return getattr(interface, "PlatformCapabilities", None)


def struct_fields(struct: type) -> tuple[str, ...]:
    """The field names of a msgspec struct class."""
    return tuple(struct.__struct_fields__)


def to_struct(capabilities: Capabilities, struct: type) -> Any:
    """``capabilities`` as the release's struct: its fields we know, the others False."""
    known = {name: getattr(capabilities, name) for name in struct_fields(struct)
             if name in CAPABILITY_NAMES}  # fmt: skip
    return struct(**known)


def in_tree_kv_pool(kind: KVPoolKind) -> type:
    """SGLang's own KV pool class for ``kind`` (what 0.5.22+ uses when a platform says None)."""
    from sglang.srt.mem_cache import memory_pool

    return {
        "mha": memory_pool.MHATokenToKVPool,
        "mla": memory_pool.MLATokenToKVPool,
        "dsa": memory_pool.DSATokenToKVPool,
    }[kind]


@functools.cache
def legacy_mla_kv_pool() -> type:
    """SGLang's MLA KV pool as releases before 0.5.22 build one for an out-of-tree platform.

    They pass ``index_head_dim`` (the DSA indexer's width; None on this path, which serves MLA
    models without DSA) to the platform's MLA pool class, an argument only the NPU pool takes:
    SGLang's own ``MLATokenToKVPool`` raises a TypeError, so DeepSeek-V2 could not start on
    0.5.15-0.5.21. This subclass takes the argument and builds SGLang's pool without it.
    """
    pool = in_tree_kv_pool("mla")
    if "index_head_dim" in inspect.signature(pool.__init__).parameters:
        return pool

    class OutOfTreeMLATokenToKVPool(pool):
        """SGLang's ``MLATokenToKVPool``, taking the out-of-tree builder's ``index_head_dim``."""

        def __init__(self, *args: Any, index_head_dim: int | None = None, **kwargs: Any):
            super().__init__(*args, **kwargs)

    return OutOfTreeMLATokenToKVPool


def in_tree_allocator_factory() -> Callable[..., object]:
    """What releases before 0.5.22 need from an OOT platform's ``get_paged_allocator_cls()``:
    called as ``(size, page_size=, dtype=, device=, kvcache=, need_sort=)``; page size 1
    takes SGLang's token allocator, as its in-tree path does."""
    from sglang.srt.mem_cache.allocator import PagedTokenToKVPoolAllocator, TokenToKVPoolAllocator

    def make_allocator(size, page_size, dtype, device, kvcache, need_sort):
        if page_size == 1:
            return TokenToKVPoolAllocator(size, dtype, device, kvcache, need_sort)
        return PagedTokenToKVPoolAllocator(size, page_size, dtype, device, kvcache, need_sort)

    return make_allocator


def cuda_decode_graph_runner_cls() -> type:
    """SGLang's CUDA decode-graph runner (the same module path on every supported release)."""
    from sglang.srt.model_executor.runner.decode_cuda_graph_runner import DecodeCudaGraphRunner

    return DecodeCudaGraphRunner


class CapabilityStructHooks:
    """SGLang 0.5.22+: the capability struct and Optional factories (None = in-tree).

    The ``fl_`` declarations it reads are FLPlatform's (and its bundles').
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Every platform class gets the struct of its own (possibly inherited) declaration.
        super().__init_subclass__(**kwargs)
        struct = capability_struct()
        assert struct is not None, "CapabilityStructHooks on a release without capabilities"
        cls.capabilities = to_struct(cls.fl_capabilities, struct)

    def get_kv_pool_cls(self, *, kind: KVPoolKind) -> type | None:
        return self.fl_kv_pool_cls(kind)

    def get_graph_runner_cls(self) -> type | None:
        return self.fl_graph_runner_cls()

    def get_paged_allocator_cls(self) -> type | None:
        return self.fl_paged_allocator_cls()


class LegacyHooks:
    """SGLang 0.5.15-0.5.21: capability methods, one KV-pool hook per kind, and factories that
    must return a class."""

    def support_cuda_graph(self) -> bool:
        return self.fl_capabilities.graph_capture

    def support_piecewise_cuda_graph(self) -> bool:
        return self.fl_capabilities.piecewise_graph

    def supports_fp8(self) -> bool:
        return self.fl_capabilities.supports_fp8

    def get_mha_kv_pool_cls(self) -> type:
        return self.fl_kv_pool_cls("mha") or in_tree_kv_pool("mha")

    def get_mla_kv_pool_cls(self) -> type:
        return self.fl_kv_pool_cls("mla") or legacy_mla_kv_pool()

    def get_dsa_kv_pool_cls(self) -> type:
        return self.fl_kv_pool_cls("dsa") or in_tree_kv_pool("dsa")

    def get_graph_runner_cls(self) -> type:
        runner = self.fl_graph_runner_cls()
        if runner is None:  # what SGLang's own base does: this platform captures no graphs
            raise NotImplementedError(f"{type(self).__name__} has no graph runner")
        return runner

    def get_paged_allocator_cls(self) -> Any:
        return self.fl_paged_allocator_cls() or in_tree_allocator_factory()


ADAPTER_CLASSES: tuple[type, ...] = (CapabilityStructHooks, LegacyHooks)


def release_hooks() -> type:
    """The hooks class for the installed release (a base of FLPlatform)."""
    return LegacyHooks if capability_struct() is None else CapabilityStructHooks
