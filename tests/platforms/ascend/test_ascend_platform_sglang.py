"""Contract tests of the Ascend bundle's SGLang platform class, with a fake torch.npu on CPU.

They check what our platform class tells SGLang (identity, dispatch key, memory queries routed
to torch.npu, graph capture, SGLang's NPU KV pool / allocator / graph runner classes, server
defaults, HCCL) against real SGLang; they do not run anything on an NPU.

SGLang's NPU modules are imported here, at collection, before any fake torch.npu exists: some
SGLang modules cache ``is_npu()`` at import, and must not see the fake.
"""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
from types import SimpleNamespace

import pytest
import release_view
from sglang.srt.hardware_backend.npu.allocator_npu import NPUPagedTokenToKVPoolAllocator
from sglang.srt.hardware_backend.npu.graph_runner.npu_graph_runner import NPUGraphRunner
from sglang.srt.hardware_backend.npu.memory_pool_npu import (
    NPUMHATokenToKVPool,
    NPUMLATokenToKVPool,
)
from sglang.srt.mem_cache.allocator import PagedTokenToKVPoolAllocator
from sglang.srt.platforms.interface import SRTPlatform
from sglang_fl_ascend.platform import AscendPlatform

import sglang_fl.platform_base as platform_base
from sglang_fl import plugin
from sglang_fl.config import get_settings, load_settings

pytestmark = [pytest.mark.sglang, pytest.mark.ascend_contract]


@pytest.fixture
def ascend_settings(monkeypatch):
    """The process settings as on an Ascend host (the bundle's YAML, HCCL)."""
    settings = load_settings(env={"SGLANG_FL_PLATFORM": "ascend"})
    monkeypatch.setattr(platform_base, "get_settings", lambda: settings)
    return settings


@pytest.fixture
def fresh_settings(monkeypatch):
    """get_settings() re-read from the (monkeypatched) environment, then forgotten again."""
    for name in ("SGLANG_FL_PLATFORM", "SGLANG_FL_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_identity_and_dispatch_key():
    platform = AscendPlatform()
    assert platform.is_out_of_tree() and not platform.is_npu()  # OOT: SGLang's rule
    assert platform.device_name == platform.device_type == "npu"
    assert platform.get_dispatch_key_name() == "npu"  # fall-through: SGLang's forward_npu
    assert platform.get_device(None) == "npu" and platform.get_device(3) == "npu:3"
    assert platform.get_device_capability() == (0, 0)
    assert platform.is_pin_memory_available() and not platform.is_pin_memory_available("cpu")


def test_hccl_is_the_distributed_backend(ascend_settings):
    assert ascend_settings.dist_backend == "hccl"
    assert AscendPlatform().get_torch_distributed_backend_str() == "hccl"


def test_memory_and_device_queries_go_to_torch_npu(fake_npu):
    platform, device = AscendPlatform(), fake_npu.device
    assert platform.get_device_total_memory(0) == device.total_memory
    assert platform.get_available_memory(1) == (device.free_memory, device.total_memory)
    assert platform.get_current_memory_usage() == float(device.max_allocated)
    assert platform.get_device_name(0) == device.name
    assert platform.get_device_uuid(1) == "fake-uuid-1"
    platform.set_device(platform.get_device(1))
    platform.empty_cache()
    platform.synchronize()
    assert device.current == 1
    assert [name for name, _ in device.calls] == ["set_device", "empty_cache", "synchronize"]


def test_graph_capture_as_sglang_supports_it_on_npu():
    platform = AscendPlatform()
    assert release_view.captures_decode_graphs(platform)
    assert not release_view.captures_prefill_graphs(platform)
    assert release_view.graph_runner_cls(platform) is NPUGraphRunner
    assert platform.get_default_attention_backend() == "ascend"


def test_compile_backend_needs_torchair(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchair", None)
    with pytest.raises(ImportError, match="needs torchair"):
        AscendPlatform().get_compile_backend("npugraph_ex")


def test_kv_pools_and_allocator_are_sglangs_npu_classes():
    platform = AscendPlatform()
    assert release_view.kv_pool_cls(platform, "mha") is NPUMHATokenToKVPool
    assert release_view.kv_pool_cls(platform, "mla") is NPUMLATokenToKVPool
    allocator = platform.get_paged_allocator_cls()  # SGLang's NPU page size is 128
    assert allocator is NPUPagedTokenToKVPoolAllocator
    assert issubclass(allocator, PagedTokenToKVPoolAllocator)
    with pytest.raises(NotImplementedError, match="DSA"):
        release_view.kv_pool_cls(platform, "dsa")


def test_server_defaults_fill_only_unset_args():
    args = SimpleNamespace(device=None, attention_backend="torch_native", page_size=None,
                           disable_custom_all_reduce=False)  # fmt: skip
    AscendPlatform().apply_server_args_defaults(args)
    assert args.device == "npu" and args.page_size == 128
    assert args.attention_backend == "torch_native"  # the user's choice is kept
    assert args.disable_custom_all_reduce is True  # no custom all-reduce on NPU


def test_flagcx_forces_off_what_would_bypass_it(monkeypatch, flagcx_double_root):
    settings = load_settings(env={"SGLANG_FL_PLATFORM": "ascend",
                                  "FLAGCX_PATH": str(flagcx_double_root)})  # fmt: skip
    monkeypatch.setattr(platform_base, "get_settings", lambda: settings)
    args = SimpleNamespace(device=None, attention_backend=None, page_size=None,
                           disable_custom_all_reduce=False, enable_mscclpp=False,
                           enable_torch_symm_mem=False, enable_symm_mem=False,
                           enforce_disable_flashinfer_allreduce_fusion=False)  # fmt: skip
    AscendPlatform().apply_server_args_defaults(args)
    assert args.disable_custom_all_reduce and args.enforce_disable_flashinfer_allreduce_fusion
    assert not (args.enable_mscclpp or args.enable_torch_symm_mem or args.enable_symm_mem)


def test_flagcx_is_the_torch_backend_for_npu_tensors(flagcx_double_root):
    # A fresh process: registering a torch.distributed backend is process-global.
    # SGLang asks the active platform, as its model runner does.
    code = (
        "import torch.distributed as dist\n"
        "from sglang.srt import platforms\n"
        "name = platforms.current_platform.get_torch_distributed_backend_str()\n"
        "print(type(platforms.current_platform).__name__, name,"
        " dist.Backend.backend_capability[name])\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SGLANG_FL_", "FLAGCX"))}
    env.update(SGLANG_FL_PLATFORM="ascend", FLAGCX_PATH=str(flagcx_double_root))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines()[-1] == "AscendPlatform sglang_fl_flagcx ['npu']"


def test_init_backend_without_a_device_says_so(torch_npu_without_device):
    with pytest.raises(RuntimeError, match="no NPU is visible"):
        AscendPlatform().init_backend()


def test_init_backend_explains_a_late_torch_npu(fake_npu):
    with pytest.raises(RuntimeError, match="TORCH_DEVICE_BACKEND_AUTOLOAD"):
        AscendPlatform().init_backend()


def test_forced_platform_activates_the_ascend_class(monkeypatch, fresh_settings, no_torch_npu):
    monkeypatch.setenv("SGLANG_FL_PLATFORM", "npu")
    path = plugin.activate_platform()
    assert path == "sglang_fl_ascend.platform.AscendPlatform"
    assert issubclass(pkgutil.resolve_name(path), SRTPlatform)


def test_detected_npu_activates_the_ascend_class(fresh_settings, fake_npu):
    assert plugin.activate_platform() == "sglang_fl_ascend.platform.AscendPlatform"
