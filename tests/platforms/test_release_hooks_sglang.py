"""What the installed SGLang release reads of every bundle's platform class.

The decisive case is decode graph capture on NVIDIA: SGLang 0.5.22 replaced
``support_cuda_graph()`` by ``capabilities.graph_capture`` (default False), so a platform that
kept the method would lose decode graphs without a word. These tests ask the way the installed
release asks (``release_view``), on every release of the train.
"""

from __future__ import annotations

import inspect
import pkgutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import release_view
import sglang.srt.platforms  # noqa: F401  (SGLang resolves its platform first, as it does)

from sglang_fl.bundles import discover_bundles

pytestmark = [pytest.mark.sglang, pytest.mark.platform_contract]

TEMPLATE = Path(__file__).resolve().parents[2] / "platforms" / "template"
# bundle -> (captures decode graphs, Triton kernels launch)
DEVICE = {"cpu": (False, False), "nvidia": (True, True), "ascend": (True, True),
          "template": (False, False)}  # fmt: skip
LEGACY_HOOKS = ("support_cuda_graph", "support_piecewise_cuda_graph", "supports_fp8",
                "get_mha_kv_pool_cls", "get_mla_kv_pool_cls", "get_dsa_kv_pool_cls")  # fmt: skip


@pytest.fixture(params=sorted(DEVICE))
def bundle(request) -> str:
    return request.param


def platform_of(bundle: str, monkeypatch) -> object:
    if bundle == "template":
        monkeypatch.syspath_prepend(str(TEMPLATE))
        return pkgutil.resolve_name("sglang_fl_template.platform.TemplatePlatform")()
    return pkgutil.resolve_name(discover_bundles()[bundle].platform_class)()


def test_decode_graph_capture_is_what_sglang_reads(bundle, monkeypatch):
    platform = platform_of(bundle, monkeypatch)
    captures, _ = DEVICE[bundle]
    assert release_view.captures_decode_graphs(platform) is captures
    assert release_view.captures_prefill_graphs(platform) is False  # off under sglang-fl
    runner = release_view.graph_runner_cls(platform)
    assert (runner is not None) is captures


def test_nvidia_captures_decode_graphs_with_sglangs_cuda_runner(monkeypatch):
    from sglang.srt.model_executor.runner.decode_cuda_graph_runner import DecodeCudaGraphRunner

    platform = platform_of("nvidia", monkeypatch)
    assert release_view.captures_decode_graphs(platform)
    assert release_view.graph_runner_cls(platform) is DecodeCudaGraphRunner


def test_capability_struct_on_releases_that_have_it(bundle, monkeypatch):
    platform = platform_of(bundle, monkeypatch)
    if not release_view.has_capability_struct():
        assert not hasattr(platform, "capabilities")
        pytest.skip("this SGLang release has no capability struct (before 0.5.22)")
    captures, triton = DEVICE[bundle]
    assert platform.capabilities.graph_capture is captures
    assert platform.capabilities.supports_triton is triton
    # no hook of the older API is left behind: SGLang would ignore it or warn about it
    assert [h for h in LEGACY_HOOKS if hasattr(platform, h)] == []


def test_mha_pool_and_allocator_are_sglangs_own_on_cpu_like_platforms(monkeypatch):
    from sglang.srt.mem_cache.allocator import PagedTokenToKVPoolAllocator, TokenToKVPoolAllocator
    from sglang.srt.mem_cache.memory_pool import MHATokenToKVPool, MLATokenToKVPool

    for bundle in ("cpu", "template"):
        platform = platform_of(bundle, monkeypatch)
        assert release_view.kv_pool_cls(platform, "mha") is MHATokenToKVPool
        mla = release_view.kv_pool_cls(platform, "mla")
        if release_view.has_capability_struct():
            assert mla is MLATokenToKVPool
        else:  # SGLang's own, taking the argument the out-of-tree builder adds
            assert mla.__mro__[1] is MLATokenToKVPool
            assert "index_head_dim" in inspect.signature(mla.__init__).parameters
        kv = SimpleNamespace()
        token = release_view.make_allocator(platform, 64, page_size=1, kvcache=kv)
        assert type(token) is TokenToKVPoolAllocator
        paged = release_view.make_allocator(platform, 64, page_size=16, kvcache=kv)
        assert type(paged) is PagedTokenToKVPoolAllocator


def test_nvidia_refuses_mla_and_dsa_pools_by_name(monkeypatch):
    from sglang.srt.mem_cache.memory_pool import MHATokenToKVPool

    platform = platform_of("nvidia", monkeypatch)
    assert release_view.kv_pool_cls(platform, "mha") is MHATokenToKVPool
    for kind in ("mla", "dsa"):
        with pytest.raises(NotImplementedError, match=f"{kind.upper()} KV pools"):
            release_view.kv_pool_cls(platform, kind)


# Ascend is left out: torch knows "npu" only once torch_npu is loaded, and SGLang binds its groups
# to the NPU itself whenever torch_npu is (its is_npu()), before it asks the platform.
@pytest.mark.parametrize("bundle", ["cpu", "nvidia", "template"])
def test_process_groups_bind_to_the_platform_device(bundle, monkeypatch):
    import torch

    platform = platform_of(bundle, monkeypatch)
    device = platform.get_group_coordinator_device(1)
    expected = torch.device("cpu") if platform.device_type == "cpu" else torch.device(
        platform.device_type, 1)  # fmt: skip
    assert device == expected
