"""The CPU bundle's SGLang platform class: defaults only where the user left args unset."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

pytestmark = pytest.mark.sglang


def make():
    from sglang_fl_cpu.platform import CpuPlatform

    return CpuPlatform()


def test_defaults_fill_only_unset_args():
    args = SimpleNamespace(device=None, attention_backend="flex_attention", sampling_backend=None,
                           mem_fraction_static=0.3, disable_cuda_graph=False)  # fmt: skip
    make().apply_server_args_defaults(args)
    assert args.attention_backend == "flex_attention"  # user choice kept
    assert args.mem_fraction_static == 0.3
    assert args.device == "cpu" and args.sampling_backend == "pytorch"
    assert args.disable_cuda_graph is True


def test_identity_and_capabilities():
    platform = make()
    assert platform.is_out_of_tree()
    assert platform.get_device(None) == "cpu" and isinstance(platform.get_device(0), str)
    assert platform.get_torch_distributed_backend_str() == "gloo"
    assert platform.get_dispatch_key_name() == "native"
    assert not platform.support_cuda_graph() and not platform.is_pin_memory_available()
    assert 0 < platform.get_current_memory_usage() < platform.get_device_total_memory()


def test_allocator_factory_picks_token_allocator_for_page_size_one():
    from sglang.srt.mem_cache.allocator import TokenToKVPoolAllocator

    factory = make().get_paged_allocator_cls()
    kv = SimpleNamespace()
    alloc = factory(64, page_size=1, dtype=None, device="cpu", kvcache=kv, need_sort=False)
    assert isinstance(alloc, TokenToKVPoolAllocator)
