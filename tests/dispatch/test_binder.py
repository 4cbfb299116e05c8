"""Unit tests for ``sglang_fl.dispatch.binder.Dispatcher`` with the real bridges.

No SGLang: the op modules are tiny ``nn.Module`` doubles with SGLang's attribute layout
(``weight``/``variance_epsilon`` for the norms, ``cos_sin_cache``/``head_size``/``rotary_dim``/
``is_neox_style`` for rotary). Like SGLang's fused ops they call ``self._forward_method``;
the harness points it at the dispatcher's trampoline bound to the instance (what SGLang does
with a registered OOT forward), and ``install`` is the real ``fused_ops.install_forward``.
Plans come from the real ``plan_op`` over test-double backends plus the real reference backend.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping

import pytest
import torch
from torch import nn

from sglang_fl.backends.reference import ReferenceBackend
from sglang_fl.backends.reference import math as ref_math
from sglang_fl.compat import fused_ops
from sglang_fl.config import load_settings
from sglang_fl.dispatch.backend import Availability, Backend, ImplKind, OpImpl
from sglang_fl.dispatch.binder import Dispatcher
from sglang_fl.dispatch.dispatch_log import DispatchLog
from sglang_fl.dispatch.registry import Registry
from sglang_fl.dispatch.selection import plan_op
from sglang_fl.errors import DispatchError
from sglang_fl.ops.bridges import BRIDGES

ARROW = "\u2192"
EPS = 1e-6
HIDDEN = 32


# --------------------------------------------------------------------------- module doubles


class RMSNormLike(nn.Module):
    """SGLang RMSNorm attribute layout; ``forward_native`` is an independent implementation."""

    def __init__(self, hidden: int = HIDDEN, **attrs) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.linspace(0.5, 1.5, hidden))
        self.variance_epsilon = EPS
        self.variance_size_override = None
        self.cast_x_before_out_mul = False
        self.fp32_residual = False
        self.override_orig_dtype = None
        for name, value in attrs.items():
            setattr(self, name, value)
        self.native_calls = 0
        self.quant_linears: list[nn.Module | None] = []  # what forward_native was given
        self._forward_method = self.forward_native

    def forward(self, *args, **kwargs):
        return self._forward_method(*args, **kwargs)

    def forward_native(self, x, residual=None, post_residual_addition=None, quant_linear=None):
        self.native_calls += 1
        self.quant_linears.append(quant_linear)
        if residual is not None and post_residual_addition is not None:
            residual = residual + post_residual_addition
        return expected_rms_norm(x, residual, self.weight.detach(), self.variance_epsilon)


class SiluAndMulLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self._forward_method = self.forward_native

    def forward(self, *args, **kwargs):
        return self._forward_method(*args, **kwargs)

    def forward_native(self, x):
        d = x.shape[-1] // 2
        return torch.nn.functional.silu(x[..., :d]) * x[..., d:]


class RotaryLike(nn.Module):
    """SGLang RotaryEmbedding layout: cos_sin_cache [P, rotary_dim] (cos half, sin half)."""

    def __init__(self, head_size=16, rotary_dim=8, max_pos=64, is_neox_style=True) -> None:
        super().__init__()
        self.head_size, self.rotary_dim, self.is_neox_style = head_size, rotary_dim, is_neox_style
        inv_freq = 1.0 / (10000 ** (torch.arange(0, rotary_dim, 2).float() / rotary_dim))
        freqs = torch.outer(torch.arange(max_pos).float(), inv_freq)
        self.register_buffer("cos_sin_cache", torch.cat((freqs.cos(), freqs.sin()), dim=-1))
        self.native_calls = 0
        self._forward_method = self.forward_native

    def forward(self, *args, **kwargs):
        return self._forward_method(*args, **kwargs)

    def forward_native(self, positions, query, key, offsets=None, fused_set_kv_buffer_arg=None):
        self.native_calls += 1
        return ("native", positions, query, key)


def expected_rms_norm(x, residual, weight, eps):
    """Independent float64 RMSNorm (optionally fused with the residual add)."""
    h = x.double() if residual is None else x.double() + residual.double()
    out = (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps) * weight.double()).to(x.dtype)
    return out if residual is None else (out, h.to(x.dtype))


def expected_rotary(positions, x, cache, head_size, rotary_dim, neox):
    """Independent float64 rotary embedding of ``x`` [T, H*head_size]."""
    t = x.shape[0]
    heads = x.double().reshape(t, -1, head_size).clone()
    half = rotary_dim // 2
    cos = cache[positions, :half].double()[:, None, :]
    sin = cache[positions, half:rotary_dim].double()[:, None, :]
    if neox:
        x1, x2 = heads[..., :half].clone(), heads[..., half:rotary_dim].clone()
        heads[..., :half] = x1 * cos - x2 * sin
        heads[..., half:rotary_dim] = x2 * cos + x1 * sin
    else:
        x1, x2 = heads[..., 0:rotary_dim:2].clone(), heads[..., 1:rotary_dim:2].clone()
        heads[..., 0:rotary_dim:2] = x1 * cos - x2 * sin
        heads[..., 1:rotary_dim:2] = x2 * cos + x1 * sin
    return heads.reshape(x.shape).to(x.dtype)


# --------------------------------------------------------------------------- backend doubles


class ImplBackend(Backend):
    """Always-available backend with hand-written implementations."""

    def __init__(self, kind: str, impls: Mapping[str, OpImpl], vendor: str | None = None):
        self.kind = ImplKind(kind)
        self.vendor = vendor
        self._impls = dict(impls)

    def availability(self) -> Availability:
        return Availability.yes()

    def implementations(self) -> Mapping[str, OpImpl]:
        return self._impls


class Counter:
    def __init__(self) -> None:
        self.binds = 0
        self.calls = 0


def raising_impl(counter: Counter, *, mutate: Callable | None = None, mutates=False) -> OpImpl:
    """An implementation whose kernel (optionally scribbles on its inputs and) always raises."""

    def bind(params):
        counter.binds += 1

        def kernel(*args):
            counter.calls += 1
            if mutate is not None:
                mutate(*args)
            raise RuntimeError("kernel exploded")

        return kernel

    return OpImpl(bind=bind, mutates_inputs=mutates)


def working_norm_impl(counter: Counter, supports=None) -> OpImpl:
    def bind(params):
        counter.binds += 1

        def kernel(x, residual):
            counter.calls += 1
            return ref_math.rms_norm(x, residual, params.weight, params.eps)

        return kernel

    if supports is None:
        return OpImpl(bind=bind)
    return OpImpl(bind=bind, supports=supports)


def make_dispatcher(backends, *, log_path=None, strict=False, per_op=None, ops=("rms_norm",)):
    env = {"SGLANG_FL_PREFER": "flagos"}
    if strict:
        env["SGLANG_FL_STRICT"] = "1"
    if per_op:
        env["SGLANG_FL_PER_OP"] = per_op
    settings = load_settings(env=env)
    registry = Registry(backends)
    plans = {op: plan_op(op, settings, registry) for op in ops}
    return Dispatcher(plans, DispatchLog(log_path), fused_ops.install_forward,
                      lambda module: module.forward_native)  # fmt: skip


def attach(module: nn.Module, dispatcher: Dispatcher, class_name: str, op: str) -> nn.Module:
    """What SGLang does with our registered forward: bind it to the instance."""
    module._forward_method = functools.partial(dispatcher.trampoline(BRIDGES[op], class_name),
                                               module)  # fmt: skip
    return module


def count_binds(dispatcher: Dispatcher) -> list[nn.Module]:
    seen: list[nn.Module] = []
    real = dispatcher.bind

    def bind(module, *args, **kwargs):
        seen.append(module)
        return real(module, *args, **kwargs)

    dispatcher.bind = bind  # the trampoline looks the method up on the instance
    return seen


def norm_inputs(seed=0, tokens=4):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(tokens, HIDDEN, generator=gen)
    residual = torch.randn(tokens, HIDDEN, generator=gen)
    return x, residual


def records(caplog, text: str, level=logging.WARNING) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == level and text in r.getMessage()]


@pytest.fixture(autouse=True)
def _capture_all(caplog):
    caplog.set_level(logging.DEBUG, logger="sglang_fl")


# --------------------------------------------------------------------------- fallback


def test_failing_first_candidate_falls_back_and_warns(caplog, tmp_path):
    broken = Counter()
    log = tmp_path / "dispatch.log"
    dispatcher = make_dispatcher(
        [ImplBackend("flagos", {"rms_norm": raising_impl(broken)}), ReferenceBackend()],
        log_path=log,
    )
    module = attach(RMSNormLike(), dispatcher, "RMSNorm", "rms_norm")
    x, residual = norm_inputs()
    out, new_residual = module(x, residual)

    expected_out, expected_res = expected_rms_norm(x, residual, module.weight.detach(), EPS)
    torch.testing.assert_close(out, expected_out)
    torch.testing.assert_close(new_residual, expected_res)
    assert (broken.binds, broken.calls) == (1, 1)
    assert module.native_calls == 0

    (failed,) = records(caplog, "Implementation 'flagos' failed for op 'rms_norm'")
    assert "kernel exploded" in failed.getMessage()
    (fallback,) = records(caplog, "fallback to 'reference'")
    assert "'rms_norm'" in fallback.getMessage() and "kernel exploded" in fallback.getMessage()
    line = f"[OOT-DISPATCH] RMSNorm {ARROW} reference(reference)\n"
    assert log.read_text(encoding="utf-8") == line


def test_strict_mode_raises_instead_of_falling_back(caplog):
    broken = Counter()
    dispatcher = make_dispatcher(
        [ImplBackend("flagos", {"rms_norm": raising_impl(broken)}), ReferenceBackend()],
        strict=True,
    )
    module = attach(RMSNormLike(), dispatcher, "RMSNorm", "rms_norm")
    trampoline = module._forward_method
    with pytest.raises(DispatchError) as info:
        module(*norm_inputs())
    message = str(info.value)
    for part in ("strict mode", "'flagos'", "'rms_norm'", "kernel exploded"):
        assert part in message, message
    assert isinstance(info.value.__cause__, RuntimeError)
    assert records(caplog, "") == []  # no fallback warning of any kind
    assert module._forward_method is trampoline  # nothing installed
    assert module.native_calls == 0


def test_every_candidate_failing_raises_listing_all():
    a, b = Counter(), Counter()
    dispatcher = make_dispatcher(
        [ImplBackend("flagos", {"rms_norm": raising_impl(a)}),
         ImplBackend("vendor", {"rms_norm": raising_impl(b)}, vendor="x")],
        per_op="rms_norm=flagos|vendor",
    )  # fmt: skip
    module = attach(RMSNormLike(), dispatcher, "RMSNorm", "rms_norm")
    with pytest.raises(DispatchError) as info:
        module(*norm_inputs())
    message = str(info.value)
    for part in ("'rms_norm'", "RMSNorm", "every implementation failed", "flagos:",
                 "vendor.x:", "kernel exploded"):  # fmt: skip
        assert part in message, message
    assert (a.calls, b.calls) == (1, 1)


def test_unsupported_instance_skips_candidate_without_binding(caplog):
    picky = Counter()
    impl = working_norm_impl(picky, supports=lambda p: f"dtype {p.dtype} not supported")
    dispatcher = make_dispatcher([ImplBackend("flagos", {"rms_norm": impl}), ReferenceBackend()])
    module = attach(RMSNormLike(), dispatcher, "RMSNorm", "rms_norm")
    x, residual = norm_inputs()
    out, _ = module(x, residual)
    assert picky.binds == 0
    torch.testing.assert_close(out, expected_rms_norm(x, residual, module.weight.detach(), EPS)[0])
    (fallback,) = records(caplog, "fallback to 'reference'")
    assert "flagos: dtype torch.float32 not supported" in fallback.getMessage()


def test_strict_unsupported_first_candidate_raises():
    impl = working_norm_impl(Counter(), supports=lambda p: "head size 7 not supported")
    dispatcher = make_dispatcher(
        [ImplBackend("flagos", {"rms_norm": impl}), ReferenceBackend()], strict=True
    )
    module = attach(RMSNormLike(), dispatcher, "RMSNorm", "rms_norm")
    with pytest.raises(DispatchError, match=r"strict mode.*'rms_norm'.*'flagos'.*head size 7"):
        module(*norm_inputs())


# --------------------------------------------------------------------------- in-place rollback


def _scribble_norm(x, residual):
    x.mul_(1000.0)
    x[0, 0] = float("nan")
    if residual is not None:
        residual.fill_(7.0)


@pytest.mark.parametrize("with_residual", [True, False])
def test_inplace_failure_is_rolled_back_before_fallback(with_residual):
    broken = Counter()
    impl = raising_impl(broken, mutate=_scribble_norm, mutates=True)
    dispatcher = make_dispatcher([ImplBackend("flagos", {"rms_norm": impl}), ReferenceBackend()])
    module = attach(RMSNormLike(), dispatcher, "RMSNorm", "rms_norm")
    x, residual = norm_inputs(seed=3)
    if not with_residual:
        residual = None
    x0 = x.clone()
    r0 = None if residual is None else residual.clone()

    result = module(x, residual)

    assert broken.calls == 1
    assert torch.equal(x, x0)
    if with_residual:
        assert torch.equal(residual, r0)
    reference = ref_math.rms_norm(x0, r0, module.weight, EPS)
    independent = expected_rms_norm(x0, r0, module.weight.detach(), EPS)
    if with_residual:
        assert torch.equal(result[0], reference[0]) and torch.equal(result[1], reference[1])
        torch.testing.assert_close(result, independent)
    else:
        assert torch.equal(result, reference)
        torch.testing.assert_close(result, independent)


def test_without_mutates_inputs_flag_nothing_is_restored():
    """Control for the test above: the rollback is what restores the inputs."""
    impl = raising_impl(Counter(), mutate=_scribble_norm, mutates=False)
    dispatcher = make_dispatcher([ImplBackend("flagos", {"rms_norm": impl}), ReferenceBackend()])
    module = attach(RMSNormLike(), dispatcher, "RMSNorm", "rms_norm")
    x, residual = norm_inputs(seed=3)
    x0 = x.clone()
    module(x, residual)
    assert not torch.equal(x, x0)


# --------------------------------------------------------------------------- install / rebind


def test_first_call_installs_bound_forward_and_later_calls_skip_bind():
    fast = Counter()
    dispatcher = make_dispatcher(
        [ImplBackend("flagos", {"rms_norm": working_norm_impl(fast)}), ReferenceBackend()]
    )
    binds = count_binds(dispatcher)
    module = attach(RMSNormLike(), dispatcher, "RMSNorm", "rms_norm")
    trampoline = module._forward_method
    x, residual = norm_inputs()
    expected = expected_rms_norm(x, residual, module.weight.detach(), EPS)

    torch.testing.assert_close(module(x, residual), expected)
    assert binds == [module]
    assert module._forward_method is not trampoline
    installed = module._forward_method

    torch.testing.assert_close(module(x, residual), expected)
    torch.testing.assert_close(module(x), expected_rms_norm(x, None, module.weight.detach(), EPS))
    assert binds == [module]  # bind not re-entered
    assert module._forward_method is installed
    assert (fast.binds, fast.calls) == (1, 3)

    other = attach(RMSNormLike(), dispatcher, "RMSNorm", "rms_norm")
    other(x)
    other(x)
    assert binds == [module, other]  # binding is per instance, once each
    assert fast.binds == 2


def test_post_residual_addition_is_added_to_residual():
    dispatcher = make_dispatcher([ReferenceBackend()], per_op="rms_norm=reference")
    module = attach(RMSNormLike(), dispatcher, "RMSNorm", "rms_norm")
    x, residual = norm_inputs()
    extra = torch.full_like(residual, 0.25)
    out, new_residual = module(x, residual, post_residual_addition=extra)
    expected = expected_rms_norm(x, residual + extra, module.weight.detach(), EPS)
    torch.testing.assert_close((out, new_residual), expected)


# --------------------------------------------------------------------------- own path


def test_call_with_quant_linear_goes_to_own_path_unchanged():
    """RMSNorm's quant_linear (SGLang 0.5.18+) asks for a quantized output the kernel contract
    does not have: such calls run SGLang's own forward with every argument, never the kernel."""
    fast = Counter()
    dispatcher = make_dispatcher(
        [ImplBackend("flagos", {"rms_norm": working_norm_impl(fast)}), ReferenceBackend()]
    )
    module = attach(RMSNormLike(), dispatcher, "RMSNorm", "rms_norm")
    x, residual = norm_inputs()
    extra = torch.full_like(residual, 0.5)
    linear = nn.Linear(HIDDEN, HIDDEN)
    expected = expected_rms_norm(x, residual + extra, module.weight.detach(), EPS)

    first = module(x, residual, extra, linear)  # the first call binds, then hands over
    assert module._forward_method is dispatcher.bindings[module].forward  # bound: flagos
    later = module(x, residual, post_residual_addition=extra, quant_linear=linear)
    torch.testing.assert_close(first, expected)
    torch.testing.assert_close(later, expected)
    assert module.native_calls == 2 and module.quant_linears == [linear, linear]
    assert fast.calls == 0

    module(x, residual)  # without it, the bound kernel runs
    assert fast.calls == 1 and module.native_calls == 2


@pytest.mark.parametrize(
    ("attrs", "reason"),
    [
        ({"fp32_residual": True}, "fp32_residual=True"),
        ({"variance_size_override": 8}, "var_hidden_size differs from hidden_size"),
        ({"cast_x_before_out_mul": True}, "cast_x_before_out_mul=True"),
        ({"override_orig_dtype": torch.float32}, "override_orig_dtype is set"),
    ],
)
def test_ineligible_instance_goes_to_own_path(caplog, tmp_path, attrs, reason):
    fast = Counter()
    log = tmp_path / "dispatch.log"
    dispatcher = make_dispatcher(
        [ImplBackend("flagos", {"rms_norm": working_norm_impl(fast)}), ReferenceBackend()],
        log_path=log,
    )
    binds = count_binds(dispatcher)
    module = attach(RMSNormLike(**attrs), dispatcher, "RMSNorm", "rms_norm")
    x, residual = norm_inputs()
    result = module(x, residual)
    torch.testing.assert_close(result, expected_rms_norm(x, residual, module.weight.detach(), EPS))
    assert module.native_calls == 1
    assert fast.binds == 0
    assert module._forward_method == module.forward_native  # installed: SGLang's own forward
    module(x, residual)
    assert binds == [module] and module.native_calls == 2
    assert any("left on SGLang's own path" in r.getMessage() and reason in r.getMessage()
               for r in caplog.records)  # fmt: skip
    assert not log.exists()  # nothing was intercepted

    eligible = attach(RMSNormLike(), dispatcher, "RMSNorm", "rms_norm")
    eligible(x, residual)
    assert fast.binds == 1 and eligible.native_calls == 0
    assert log.read_text(encoding="utf-8").splitlines() == [
        f"[OOT-DISPATCH] RMSNorm {ARROW} flagos(flagos)"
    ]


# --------------------------------------------------------------------------- log / warnings


def test_dispatch_log_one_line_per_class_and_impl(tmp_path):
    log = tmp_path / "dispatch.log"
    dispatcher = make_dispatcher(
        [ImplBackend("flagos", {"rms_norm": raising_impl(Counter())}), ReferenceBackend()],
        log_path=log, ops=("rms_norm", "silu_and_mul"),
    )  # fmt: skip
    norms = [attach(RMSNormLike(), dispatcher, "RMSNorm", "rms_norm") for _ in range(3)]
    acts = [attach(SiluAndMulLike(), dispatcher, "SiluAndMul", "silu_and_mul") for _ in range(2)]
    x, residual = norm_inputs()
    for module in norms:
        module(x.clone(), residual.clone())
        module(x.clone())
    for module in acts:
        y = module(x)
        torch.testing.assert_close(y, module.forward_native(x))
    assert log.read_text(encoding="utf-8").splitlines() == [
        f"[OOT-DISPATCH] RMSNorm {ARROW} reference(reference)",
        f"[OOT-DISPATCH] SiluAndMul {ARROW} reference(reference)",
    ]


def test_fallback_message_appears_once_per_op(caplog):
    dispatcher = make_dispatcher(
        [ImplBackend("flagos", {"rms_norm": raising_impl(Counter())}), ReferenceBackend()]
    )
    for _ in range(3):
        attach(RMSNormLike(), dispatcher, "RMSNorm", "rms_norm")(*norm_inputs())
    assert len(records(caplog, "Op 'rms_norm' fallback to 'reference'")) == 1


def test_every_fallback_warning_appears_once_per_op_not_per_instance(caplog):
    broken = Counter()
    dispatcher = make_dispatcher(
        [ImplBackend("flagos", {"rms_norm": raising_impl(broken)}), ReferenceBackend()]
    )
    for _ in range(3):
        attach(RMSNormLike(), dispatcher, "RMSNorm", "rms_norm")(*norm_inputs())
    assert broken.calls == 3  # each instance did try (and fail) its first choice
    assert len(records(caplog, "Implementation 'flagos' failed for op 'rms_norm'")) == 1


# --------------------------------------------------------------------------- rotary


def _scribble_rotary(positions, query, key):
    query.fill_(123.0)
    key.zero_()


@pytest.mark.parametrize("neox", [True, False])
def test_rotary_fallback_restores_inputs_and_matches_reference(neox):
    broken = Counter()
    impl = raising_impl(broken, mutate=_scribble_rotary, mutates=True)
    dispatcher = make_dispatcher(
        [ImplBackend("flagos", {"rotary_embedding": impl}), ReferenceBackend()],
        ops=("rotary_embedding",),
    )
    module = attach(RotaryLike(is_neox_style=neox), dispatcher, "RotaryEmbedding",
                    "rotary_embedding")  # fmt: skip
    gen = torch.Generator().manual_seed(5)
    tokens, heads, kv_heads = 5, 2, 1
    positions = torch.tensor([0, 3, 7, 11, 20])
    offsets = torch.tensor([1, 1, 2, 2, 3])
    query = torch.randn(tokens, heads * module.head_size, generator=gen)
    key = torch.randn(tokens, kv_heads * module.head_size, generator=gen)
    q0, k0 = query.clone(), key.clone()

    q_out, k_out = module(positions, query, key, offsets)

    assert broken.calls == 1
    assert torch.equal(query, q0) and torch.equal(key, k0)
    pos = positions + offsets
    args = (module.cos_sin_cache, module.head_size, module.rotary_dim, neox)
    torch.testing.assert_close(q_out, expected_rotary(pos, q0, *args))
    torch.testing.assert_close(k_out, expected_rotary(pos, k0, *args))
    cos, sin = ref_math.split_cos_sin(module.cos_sin_cache)
    ref_q, ref_k = ref_math.rotary_embedding(pos, q0, k0, cos, sin, module.head_size,
                                             module.rotary_dim, neox)  # fmt: skip
    assert torch.equal(q_out, ref_q) and torch.equal(k_out, ref_k)
    # the untouched tail of each head (rotary_dim < head_size) is passed through
    assert torch.equal(q_out.view(tokens, heads, -1)[..., module.rotary_dim:],
                       q0.view(tokens, heads, -1)[..., module.rotary_dim:])  # fmt: skip

    # a call with the fused KV-buffer argument goes to SGLang's own path
    marker = object()
    assert module(positions, query, key, None, marker)[0] == "native"
    assert module.native_calls == 1


def test_rotary_instance_with_sin_cos_cache_stays_on_own_path():
    dispatcher = make_dispatcher([ReferenceBackend()], per_op="rotary_embedding=reference",
                                 ops=("rotary_embedding",))  # fmt: skip
    module = RotaryLike()
    module.sin_cos_cache = torch.zeros(1)
    attach(module, dispatcher, "RotaryEmbedding", "rotary_embedding")
    q = torch.randn(2, 16)
    assert module(torch.tensor([0, 1]), q, q.clone())[0] == "native"
    assert module._forward_method == module.forward_native
