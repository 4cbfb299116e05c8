"""The PyTorch routes' math and their table, without SGLang (tests/compat/
test_torch_routes_sglang.py installs them into real SGLang; tests/integration/test_zoo_serving.py
serves the models that need them)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from packaging.version import Version

from sglang_fl.compat import torch_routes
from sglang_fl.compat.torch_attention import softcapped_attention
from sglang_fl.compat.torch_routes import ROUTES, softcap_inplace
from sglang_fl.errors import PlatformError


def test_softcap_is_in_place_and_is_cap_tanh_x_over_cap():
    logits = torch.randn(3, 16, dtype=torch.float64) * 50
    untouched = logits[:, 1::2].clone()
    view = logits[:, ::2]  # SGLang may hand over a strided view of a buffer
    expected = 30.0 * torch.tanh(view / 30.0)
    assert softcap_inplace(view, 30.0) is view
    torch.testing.assert_close(logits[:, ::2], expected, rtol=0, atol=1e-12)
    assert torch.equal(logits[:, 1::2], untouched)


def _eager_reference(q, k, v, scale, cap, mask):
    """HF's eager attention with softcapping (Gemma 2), written out in fp64."""
    groups = q.shape[0] // k.shape[0]
    k, v = k.repeat_interleave(groups, 0), v.repeat_interleave(groups, 0)
    scores = (q.double() @ k.double().transpose(-2, -1)) * scale
    scores = torch.tanh(scores / cap) * cap
    scores = scores.masked_fill(~mask, float("-inf"))
    return (torch.softmax(scores, -1) @ v.double()).float()


def test_softcapped_attention_is_eager_attention_with_the_cap():
    torch.manual_seed(0)
    q, k, v = torch.randn(4, 5, 8) * 4, torch.randn(2, 9, 8) * 4, torch.randn(2, 9, 8)
    mask = torch.ones(5, 9, dtype=torch.bool).tril(diagonal=4)  # the last 5 positions of 9
    got = softcapped_attention(q, k, v, scale=0.3, cap=6.0, mask=mask)
    torch.testing.assert_close(got, _eager_reference(q, k, v, 0.3, 6.0, mask))
    uncapped = softcapped_attention(q, k, v, scale=0.3, cap=6.0e6, mask=mask)
    assert not torch.allclose(got, uncapped, atol=1e-3)  # the cap bites at these scores


def test_without_a_binding_cap_it_is_sdpa():
    torch.manual_seed(1)
    q, k, v = torch.randn(4, 3, 8), torch.randn(4, 7, 8), torch.randn(4, 7, 8)
    mask = torch.ones(3, 7, dtype=torch.bool).tril(diagonal=4)
    got = softcapped_attention(q, k, v, scale=None, cap=1.0e6, mask=mask)
    sdpa = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(got, sdpa, rtol=1e-5, atol=1e-5)


def test_every_route_says_what_it_replaces_and_from_which_release(monkeypatch):
    monkeypatch.setattr(torch_routes, "sglang_version", lambda: Version("0.5.15"))
    for name, route in ROUTES.items():
        assert route.name == name and route.sglang_path and route.route
        assert route.applies()  # every route is needed from the oldest release on
    monkeypatch.setattr(torch_routes, "sglang_version", lambda: Version("0.5.14"))
    assert not any(route.applies() for route in ROUTES.values())


def test_install_runs_the_declared_routes_that_apply(monkeypatch):
    ran = []
    fakes = {
        name: dataclasses.replace(ROUTES[name], install=lambda n=name: ran.append(n),
                                  releases=releases)
        for name, releases in (("final_logit_softcap", ">=0.5.15"),
                               ("mla_forward_method", ">=0.5.30"))
    }  # fmt: skip
    monkeypatch.setattr(torch_routes, "ROUTES", fakes)
    monkeypatch.setattr(torch_routes, "sglang_version", lambda: Version("0.5.23.post1"))
    names = ["mla_forward_method", "final_logit_softcap", "final_logit_softcap"]
    assert torch_routes.install(names, "cpu") == ["final_logit_softcap"]
    assert ran == ["final_logit_softcap"]


def test_an_unknown_route_is_an_error_naming_the_known_ones():
    with pytest.raises(PlatformError) as info:
        torch_routes.install(["final_logit_softcap", "fused_everything"], "vendor-x")
    message = str(info.value)
    assert "the vendor-x platform declares the PyTorch route 'fused_everything'" in message
    assert ", ".join(sorted(ROUTES)) in message
