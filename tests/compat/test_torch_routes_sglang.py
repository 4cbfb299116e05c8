"""The PyTorch routes inside the installed SGLang: where each one lands, the softcapping
torch_native backend against SGLang's own, and the startup refusal.

Registrations go into emptied copies of SGLang's registries (restored afterwards), so nothing
here changes SGLang for the other tests of the session.
"""

from __future__ import annotations

import collections
import pkgutil

import pytest
import torch

from sglang_fl.compat import hooks, model_support, torch_routes
from sglang_fl.compat.torch_attention import softcapped_attention, softcapping_backend_cls
from sglang_fl.compat.versions import release, sglang_version

pytestmark = [pytest.mark.sglang]

MLA = "sglang.srt.models.deepseek_common.attention_backend_handler"


@pytest.fixture
def clean_registries(monkeypatch):
    from sglang.srt.layers.attention import attention_registry
    from sglang.srt.plugins.hook_registry import HookRegistry

    registry = pkgutil.resolve_name(f"{MLA}.AttentionBackendRegistry")
    monkeypatch.setattr(HookRegistry, "_hooks", collections.defaultdict(list))
    monkeypatch.setattr(hooks, "_registered", set())
    monkeypatch.setattr(registry, "_handlers", dict(registry._handlers))
    monkeypatch.setattr(
        attention_registry, "ATTENTION_BACKENDS", dict(attention_registry.ATTENTION_BACKENDS)
    )
    return HookRegistry, attention_registry, registry


def test_each_route_lands_where_sglang_looks(clean_registries):
    hook_registry, attention_registry, mla_registry = clean_registries
    from sglang.srt.plugins.hook_registry import HookType

    assert mla_registry.get_handler("torch_native") is mla_registry.get_handler("triton")
    torch_routes.install(torch_routes.ROUTES, "cpu")
    hooked = hook_registry._hooks[torch_routes.FUSED_SOFTCAP]
    assert [(kind, hook) for kind, hook, _ in hooked] == [
        (HookType.REPLACE, torch_routes.softcap_inplace)
    ]
    assert attention_registry.ATTENTION_BACKENDS["torch_native"] is softcapping_backend_cls()
    assert mla_registry.get_handler("torch_native") is pkgutil.resolve_name(
        f"{MLA}._dispatch_mla_subtype"
    )


def test_the_cpu_platform_declares_known_routes_that_all_apply():
    from sglang_fl_cpu.platform import CpuPlatform

    assert CpuPlatform.fl_torch_routes == set(torch_routes.ROUTES)
    assert all(torch_routes.ROUTES[name].applies() for name in CpuPlatform.fl_torch_routes)


# ------------------------------------------------------------------ the softcapping backend


def _batch(seed: int = 0) -> dict:
    """Two requests in a KV cache of 12 slots: 5 tokens (3 cached, 2 new) and 4 new tokens;
    4 query heads over 2 KV heads."""
    generator = torch.Generator().manual_seed(seed)
    req_to_token = torch.tensor([[7, 1, 9, 3, 11, 0], [2, 8, 4, 6, 0, 0]])
    return {
        "k_cache": torch.randn(12, 2, 8, generator=generator) * 3,
        "v_cache": torch.randn(12, 2, 8, generator=generator),
        "req_to_token": req_to_token,
        "req_pool_indices": torch.tensor([0, 1]),
        "seq_lens": torch.tensor([5, 4]),
        "query": torch.randn(6, 4, 8, generator=generator) * 3,
    }


def _backend(cap: float):
    backend = softcapping_backend_cls().__new__(softcapping_backend_cls())  # no model runner
    backend._logit_cap = cap
    return backend


def _extend(backend, batch, window=None):
    output = torch.zeros(6, 4, 8)
    return backend._run_sdpa_forward_extend(
        batch["query"], output, batch["k_cache"], batch["v_cache"], batch["req_to_token"],
        batch["req_pool_indices"], batch["seq_lens"], torch.tensor([3, 0]),
        torch.tensor([2, 4]), None, scaling=0.35, enable_gqa=True, causal=True,
        is_cross_attn=False, sliding_window_size=window,
    )  # fmt: skip


def _decode(backend, batch, window=None):
    output = torch.zeros(2, 4, 8)
    return backend._run_sdpa_forward_decode(
        batch["query"][:2], output, batch["k_cache"], batch["v_cache"], batch["req_to_token"],
        batch["req_pool_indices"], batch["seq_lens"], None, scaling=0.35, enable_gqa=True,
        causal=False, is_cross_attn=False, sliding_window_size=window,
    )  # fmt: skip


@pytest.mark.parametrize("window", [None, 1])
@pytest.mark.parametrize("run", [_extend, _decode])
def test_an_uncapped_layer_runs_sglangs_own_sdpa_and_a_loose_cap_matches_it(run, window):
    """Same gather, queries, masks and GQA as SGLang's loop: a cap too large to bite gives
    SGLang's own result (and cap 0 is SGLang's own code)."""
    batch = _batch()
    own = run(_backend(0.0), batch, window)
    capped = run(_backend(1.0e6), batch, window)
    torch.testing.assert_close(capped, own, rtol=1e-5, atol=1e-5)


def test_a_cap_applies_per_request_to_the_cached_keys():
    batch = _batch(seed=3)
    got = _extend(_backend(2.0), batch, window=None)
    # request 0: queries at positions 3, 4 over its 5 cached slots
    keys = batch["req_to_token"][0, :5]
    q = batch["query"][:2].movedim(0, 1)
    k = batch["k_cache"][keys].movedim(0, 1)
    v = batch["v_cache"][keys].movedim(0, 1)
    mask = torch.arange(5)[None, :] <= torch.arange(3, 5)[:, None]
    expected = softcapped_attention(q, k, v, scale=0.35, cap=2.0, mask=mask).movedim(0, 1)
    torch.testing.assert_close(got[:2], expected)
    assert not torch.allclose(got, _extend(_backend(0.0), batch), atol=1e-3)


def test_the_cap_is_set_for_the_layer_being_run_only():
    from types import SimpleNamespace

    backend = _backend(0.0)
    seen = []

    def forward_extend(self, q, k, v, layer, forward_batch, *args, **kwargs):
        seen.append(self._logit_cap)
        return q

    base = softcapping_backend_cls().__mro__[1]
    layer = SimpleNamespace(logit_cap=30.0, logit_capping_method="tanh")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(base, "forward_extend", forward_extend)
        backend.forward_extend(torch.zeros(1), None, None, layer, None)
        backend.forward_extend(torch.zeros(1), None, None, SimpleNamespace(logit_cap=0.0), None)
    assert seen == [30.0, 0.0] and backend._logit_cap == 0.0


# ------------------------------------------------------------------ the startup refusal


def test_deepseek_v2_is_refused_exactly_where_its_module_needs_cutlass():
    reason = model_support.refusal(["DeepseekV2ForCausalLM"])
    if str(release(sglang_version())) == "0.5.15":
        assert reason is not None and reason.startswith("DeepseekV2ForCausalLM cannot be served")
        assert "sglang.srt.models.deepseek_v2 imports 'cutlass'" in reason
    else:
        assert reason is None
    assert model_support.refusal(["Qwen2ForCausalLM", "Gemma2ForCausalLM"]) is None


def test_the_platform_ends_startup_with_the_refusal_line(monkeypatch, capsys):
    from types import SimpleNamespace

    from sglang_fl import platform_base

    line = "XForCausalLM cannot be served with sglang 0.5.15 here: it needs y"
    monkeypatch.setattr(model_support, "refusal_for_model", lambda path, revision: line)
    with pytest.raises(SystemExit) as info:
        platform_base.refuse_unservable_model(SimpleNamespace(model_path="/m", revision=None))
    assert info.value.code == 2
    assert capsys.readouterr().err == f"sglang-fl: {line}\n"
    monkeypatch.setattr(model_support, "refusal_for_model", lambda path, revision: None)
    platform_base.refuse_unservable_model(SimpleNamespace(model_path="/m", revision=None))
