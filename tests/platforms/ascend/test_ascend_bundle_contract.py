"""Contract tests of the Ascend bundle on CPU: detection, configuration, selection, dispatch.

The fake torch_npu of conftest.py stands in for the vendor stack. These tests prove that our
side works (the bundle is found, detected, configured from ascend.yaml, selected by policy and
reached through the real Dispatcher and bridges); they prove nothing about an NPU.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from sglang_fl_ascend import BUNDLE
from torch import nn

from sglang_fl.backends.reference import ReferenceBackend
from sglang_fl.bundles import detect_bundle, discover_bundles
from sglang_fl.compat import fused_ops
from sglang_fl.config import load_settings
from sglang_fl.dispatch.binder import Dispatcher
from sglang_fl.dispatch.dispatch_log import DispatchLog
from sglang_fl.dispatch.registry import build_registry
from sglang_fl.dispatch.selection import plan_op
from sglang_fl.errors import DispatchError
from sglang_fl.ops.bridges import BRIDGES
from sglang_fl.ops.catalog import OP_NAMES

pytestmark = pytest.mark.ascend_contract

ARROW = "\u2192"
ASCEND = {"SGLANG_FL_PLATFORM": "ascend"}
BLACKLIST = ("full_like", "index_copy_", "gather", "count_nonzero", "index_put_",
             "_index_put_impl_", "cumsum", "fill_scalar_", "argmax", "index", "add_", "conv1d",
             "floor_divide", "true_divide_", "lift_fresh", "conv2d")  # fmt: skip


# --------------------------------------------------------------------------- the bundle


def test_bundle_is_installed_under_its_entry_point():
    bundle = discover_bundles()["ascend"]
    assert bundle is BUNDLE
    assert bundle.names == ("ascend", "npu")
    assert bundle.vendor == "ascend" and bundle.dist_backends == ("hccl", "flagcx")
    assert bundle.platform_class == "sglang_fl_ascend.platform.AscendPlatform"
    assert bundle.detect_priority == 100 and bundle.config_file.is_file()
    assert type(bundle.load_backend()).__name__ == "AscendBackend"


def test_importing_the_bundle_imports_neither_torch_npu_nor_sglang():
    code = (
        "import sys, sglang_fl_ascend\n"
        "bad = [m for m in ('torch_npu', 'sglang', 'torch') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_detect_false_without_torch_npu(no_torch_npu):
    assert BUNDLE.detect() is False
    assert detect_bundle(discover_bundles()).name == "cpu"


def test_detect_false_when_torch_npu_sees_no_device(torch_npu_without_device):
    assert BUNDLE.detect() is False


def test_detect_true_with_torch_npu_and_a_device_and_beats_cpu(fake_npu):
    assert BUNDLE.detect() is True
    assert detect_bundle(discover_bundles()).name == "ascend"


class _RegisteringFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports ``torch_npu`` as the fake module and, like the real one, registers torch.npu."""

    def __init__(self, module, namespace) -> None:
        self.module, self.namespace = module, namespace

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name == "torch_npu" else None

    def create_module(self, spec):
        return self.module

    def exec_module(self, module) -> None:
        torch.npu = self.namespace


def test_detect_imports_torch_npu_before_probing_torch_npu(monkeypatch, fake_npu):
    """torch.npu only exists once torch_npu is imported: probing it first would say "no"."""
    namespace = torch.npu
    monkeypatch.delattr(torch, "npu")
    monkeypatch.delitem(sys.modules, "torch_npu")
    finder = _RegisteringFinder(fake_npu.module, namespace)
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    assert BUNDLE.detect() is True
    assert torch.npu is namespace


# --------------------------------------------------------------------------- configuration


def test_forcing_the_platform_loads_ascend_yaml():
    settings = load_settings(env=ASCEND)
    assert (
        settings.platform == "ascend" and settings.sources["platform"] == "env:SGLANG_FL_PLATFORM"
    )
    assert settings.prefer == "flagos"
    assert dict(settings.op_backends) == {
        op: ("vendor", "flagos", "reference")
        for op in ("rms_norm", "gemma_rms_norm", "rotary_embedding")
    }
    assert settings.flagos_blacklist == BLACKLIST
    for field in ("prefer", "op_backends", "flagos_blacklist"):
        assert settings.sources[field] == "platform:ascend", field
    assert settings.dist_backend == "hccl" and settings.sources["dist_backend"] == "platform:ascend"


def test_flagcx_path_makes_flagcx_the_backend_on_ascend():
    settings = load_settings(env={**ASCEND, "FLAGCX_PATH": "/opt/flagcx"})
    assert (settings.dist_backend, settings.sources["dist_backend"]) == (
        "flagcx",
        "env:FLAGCX_PATH",
    )
    assert settings.flagcx_path == "/opt/flagcx"
    chosen = load_settings(
        env={**ASCEND, "FLAGCX_PATH": "/opt/flagcx", "SGLANG_FL_DIST_BACKEND": "hccl"}
    )
    assert chosen.dist_backend == "hccl"


def test_alias_npu_selects_the_ascend_bundle():
    assert load_settings(env={"SGLANG_FL_PLATFORM": "npu"}).platform == "ascend"


def test_detected_platform_is_ascend_with_an_npu(fake_npu):
    settings = load_settings(env={})
    assert settings.platform == "ascend" and settings.sources["platform"] == "default"


def test_blacklist_entries_each_cite_a_source():
    lines = BUNDLE.config_file.read_text(encoding="utf-8").splitlines()
    entries = [line for line in lines if line.startswith("  - ")]
    assert len(entries) == len(BLACKLIST)
    assert all("# [P]" in line or "# [I]" in line for line in entries), entries


@pytest.mark.parametrize("token", ["vendor:ascend", "vendor:npu"])
def test_vendor_ascend_token_and_alias(token):
    settings = load_settings(env={**ASCEND, "SGLANG_FL_PER_OP": f"rms_norm={token}|reference"})
    assert settings.op_backends["rms_norm"] == ("vendor:ascend", "reference")


def test_user_settings_override_the_platform_yaml_whole():
    env = {**ASCEND, "SGLANG_FL_FLAGOS_BLACKLIST": "mul", "SGLANG_FL_PREFER": "reference"}
    settings = load_settings(env=env)
    assert settings.flagos_blacklist == ("mul",) and settings.prefer == "reference"
    assert settings.sources["flagos_blacklist"] == "env:SGLANG_FL_FLAGOS_BLACKLIST"


# --------------------------------------------------------------------------- selection


def plans(env: dict[str, str], ops: tuple[str, ...] = OP_NAMES):
    settings = load_settings(env={**ASCEND, **env})
    registry = build_registry(discover_bundles())
    return {op: plan_op(op, settings, registry) for op in ops}


def test_with_an_npu_vendor_ascend_is_first_for_every_op(fake_npu):
    # rms_norm & co. by ascend.yaml; silu_and_mul because FlagGems is unavailable on CPU
    for op, plan in plans({}).items():
        assert plan.candidates[0].impl_id == "vendor.ascend", op
        assert plan.candidates[-1].impl_id == "reference", op


def test_without_torch_npu_vendor_ascend_is_rejected_with_the_reason(no_torch_npu):
    plan = plans({})["rms_norm"]
    assert plan.candidates[0].impl_id == "reference"
    (rejection,) = [r for r in plan.rejected if r.impl_id == "vendor.ascend"]
    assert rejection.reason.startswith("unavailable: torch_npu cannot be imported")


def test_strict_mode_without_torch_npu_names_the_reason(no_torch_npu):
    with pytest.raises(DispatchError, match=r"'rms_norm'.*vendor\.ascend.*torch_npu cannot be"):
        plans({"SGLANG_FL_STRICT": "1"}, ops=("rms_norm",))


@pytest.mark.parametrize("name", ["ascend", "npu"])
def test_deny_vendors_excludes_ascend(fake_npu, name):
    plan = plans({"SGLANG_FL_DENY_VENDORS": name})["rms_norm"]
    assert "vendor.ascend" not in [c.impl_id for c in plan.candidates]
    assert ("vendor.ascend", "vendor 'ascend' is in deny_vendors") in [
        (r.impl_id, r.reason) for r in plan.rejected
    ]


def test_allow_vendors_keeps_ascend(fake_npu):
    assert load_settings(env={**ASCEND, "SGLANG_FL_ALLOW_VENDORS": "npu"}).allow_vendors == (
        "ascend",
    )
    plan = plans({"SGLANG_FL_ALLOW_VENDORS": "npu"})["rms_norm"]
    assert plan.candidates[0].impl_id == "vendor.ascend"


# --------------------------------------------------------------------------- dispatch


class RMSNormLike(nn.Module):
    """SGLang RMSNorm attribute layout; calls ``self._forward_method`` like SGLang's ops."""

    def __init__(self, hidden: int = 64, dtype=torch.float32) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.linspace(0.5, 1.5, hidden).to(dtype), requires_grad=False)
        self.variance_epsilon = 1e-6
        self.variance_size_override = None
        self.cast_x_before_out_mul = False
        self.fp32_residual = False
        self.override_orig_dtype = None
        self._forward_method = self.forward_native

    def forward(self, *args, **kwargs):
        return self._forward_method(*args, **kwargs)

    def forward_native(self, x, residual=None, post_residual_addition=None):
        raise AssertionError("SGLang's own path must not run here")


class SiluAndMulLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self._forward_method = self.forward_native

    def forward(self, *args, **kwargs):
        return self._forward_method(*args, **kwargs)

    def forward_native(self, x):
        raise AssertionError("SGLang's own path must not run here")


class RotaryLike(nn.Module):
    """SGLang RotaryEmbedding layout: cos_sin_cache [P, rotary_dim] (cos half, sin half)."""

    def __init__(self, head_size=128, rotary_dim=128, is_neox_style=True, dtype=torch.float32):
        super().__init__()
        self.head_size, self.rotary_dim, self.is_neox_style = head_size, rotary_dim, is_neox_style
        inv_freq = 1.0 / (10000 ** (torch.arange(0, rotary_dim, 2).float() / rotary_dim))
        freqs = torch.outer(torch.arange(64).float(), inv_freq)
        cache = torch.cat((freqs.cos(), freqs.sin()), dim=-1).to(dtype)
        self.register_buffer("cos_sin_cache", cache)
        self._forward_method = self.forward_native

    def forward(self, *args, **kwargs):
        return self._forward_method(*args, **kwargs)

    def forward_native(self, positions, query, key, offsets=None, fused_set_kv_buffer_arg=None):
        raise AssertionError("SGLang's own path must not run here")


def dispatcher(env: dict[str, str], log: Path) -> Dispatcher:
    """The real Dispatcher over the real registry (AscendBackend from the bundle's factory)."""
    settings = load_settings(env={**ASCEND, **env})
    registry = build_registry(discover_bundles())
    plans_ = {op: plan_op(op, settings, registry) for op in OP_NAMES}
    return Dispatcher(plans_, DispatchLog(log), fused_ops.install_forward,
                      lambda module: module.forward_native)  # fmt: skip


def attach(module: nn.Module, disp: Dispatcher, class_name: str, op: str) -> nn.Module:
    """What SGLang does with our registered forward: bind it to the instance."""
    module._forward_method = functools.partial(disp.trampoline(BRIDGES[op], class_name), module)
    return module


def test_dispatch_log_names_vendor_ascend(fake_npu, tmp_path):
    log = tmp_path / "dispatch.log"
    disp = dispatcher({}, log)
    norm = attach(RMSNormLike(), disp, "RMSNorm", "rms_norm")
    act = attach(SiluAndMulLike(), disp, "SiluAndMul", "silu_and_mul")
    rope = attach(RotaryLike(), disp, "RotaryEmbedding", "rotary_embedding")

    x, residual = torch.randn(4, 64), torch.randn(4, 64)
    out, new_residual = norm(x, residual)
    ref_out, ref_residual = (
        ReferenceBackend()
        .implementations()["rms_norm"]
        .bind(BRIDGES["rms_norm"].params(norm, (x, residual), {}))(x, residual)
    )
    torch.testing.assert_close((out, new_residual), (ref_out, ref_residual))
    norm(x)
    act(torch.randn(4, 128))
    rope(torch.tensor([1, 2, 3, 4]), torch.randn(4, 256), torch.randn(4, 128))

    assert log.read_text(encoding="utf-8").splitlines() == [
        f"[OOT-DISPATCH] RMSNorm {ARROW} vendor(vendor.ascend)",
        f"[OOT-DISPATCH] SiluAndMul {ARROW} vendor(vendor.ascend)",
        f"[OOT-DISPATCH] RotaryEmbedding {ARROW} vendor(vendor.ascend)",
    ]
    assert fake_npu.calls == {"npu_add_rms_norm": 1, "npu_rms_norm": 1, "npu_swiglu": 1,
                              "npu_mrope": 1}  # fmt: skip


def test_unsupported_instance_falls_back_to_reference(fake_npu, tmp_path, caplog):
    """bf16 rotary_dim 16: npu_mrope needs a multiple of 32, so this instance takes the next
    candidate (flagos is unavailable on CPU: the reference) and the warning says why."""
    caplog.set_level(logging.WARNING, logger="sglang_fl")
    log = tmp_path / "dispatch.log"
    disp = dispatcher({}, log)
    rope = attach(RotaryLike(head_size=64, rotary_dim=16, dtype=torch.bfloat16), disp,
                  "RotaryEmbedding", "rotary_embedding")  # fmt: skip
    positions = torch.tensor([0, 5, 9])
    query = torch.randn(3, 128).to(torch.bfloat16)
    key = torch.randn(3, 64).to(torch.bfloat16)
    q_out, k_out = rope(positions, query, key)

    ref = (
        ReferenceBackend()
        .implementations()["rotary_embedding"]
        .bind(BRIDGES["rotary_embedding"].params(rope, (positions, query, key), {}))
    )
    ref_q, ref_k = ref(positions, query, key)
    assert torch.equal(q_out, ref_q) and torch.equal(k_out, ref_k)
    assert fake_npu.calls["npu_mrope"] == 0
    assert log.read_text(encoding="utf-8") == (
        f"[OOT-DISPATCH] RotaryEmbedding {ARROW} reference(reference)\n"
    )
    warnings = [
        r.getMessage() for r in caplog.records if "fallback to 'reference'" in r.getMessage()
    ]
    assert len(warnings) == 1
    assert "vendor.ascend: npu_mrope needs rotary_dim to be a multiple of 32" in warnings[0]

    # a supported instance of the same class still gets the vendor kernel
    full = attach(RotaryLike(dtype=torch.bfloat16), disp, "RotaryEmbedding", "rotary_embedding")
    full(positions, torch.randn(3, 256).to(torch.bfloat16), torch.randn(3, 128).to(torch.bfloat16))
    assert fake_npu.calls["npu_mrope"] == 1


def test_denied_vendor_is_never_called(fake_npu, tmp_path):
    log = tmp_path / "dispatch.log"
    disp = dispatcher({"SGLANG_FL_DENY_VENDORS": "ascend"}, log)
    attach(RMSNormLike(), disp, "RMSNorm", "rms_norm")(torch.randn(2, 64))
    assert sum(fake_npu.calls.values()) == 0
    assert (
        log.read_text(encoding="utf-8") == f"[OOT-DISPATCH] RMSNorm {ARROW} reference(reference)\n"
    )
