"""The op checks of the conformance suite: what they accept, and that they catch each way a
vendor kernel can break the contract.

The backends under check here are small test backends built from the reference: correct ones,
and ones broken on purpose in exactly one way. The thing under test is the checker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import pytest
import torch

from sglang_fl.backends.reference import ReferenceBackend
from sglang_fl.conformance.cases import all_cases
from sglang_fl.conformance.ops import check_backend
from sglang_fl.conformance.report import Status
from sglang_fl.dispatch.backend import Availability, Backend, ImplKind, OpImpl
from sglang_fl.ops.catalog import (
    DEEPSEEK_SCALING_ROTARY_EMBEDDING,
    GELU_AND_MUL,
    LAYER_NORM,
    MROTARY_EMBEDDING,
    OP_NAMES,
    ROTARY_EMBEDDING,
)

CPU = torch.device("cpu")
REFERENCE = ReferenceBackend().implementations()


class CheckedBackend(Backend):
    kind = ImplKind.VENDOR
    vendor = "checked"

    def __init__(self, impls: Mapping[str, OpImpl]) -> None:
        self._impls = dict(impls)

    def availability(self) -> Availability:
        return Availability.yes()

    def implementations(self) -> Mapping[str, OpImpl]:
        return self._impls


def with_op(op: str, impl: OpImpl) -> CheckedBackend:
    return CheckedBackend({**REFERENCE, op: impl})


def wrap(op: str, change) -> OpImpl:
    """The reference implementation of ``op`` with ``change(kernel)`` around its bound kernel."""
    return OpImpl(lambda params: change(REFERENCE[op].bind(params)))


def statuses(checks, op: str) -> set[Status]:
    return {c.status for c in checks if c.name.split(" ", 1)[0] == op}


def failures(checks, op: str) -> list[str]:
    return [c.detail for c in checks if c.status is Status.FAIL and c.name.startswith(op)]


def test_the_reference_conforms_to_itself_on_every_case():
    checks = check_backend(ReferenceBackend(), CPU)
    assert {c.status for c in checks} == {Status.PASS}
    assert {c.name.split(" ", 1)[0] for c in checks} == set(OP_NAMES)
    assert len(checks) == sum(len(cases) for cases in all_cases(CPU).values())


def test_the_grid_covers_what_sglang_passes():
    cases = all_cases(CPU)
    labels = " | ".join(c.label for op_cases in cases.values() for c in op_cases)
    for needle in (
        "float32",
        "bfloat16",
        "float16",
        "strided",
        "odd",
        "3-D",
        "residual",
        "neox",
        "interleaved",
        "partial",
        "qkv slices",
        "cache float32",
        "approximate=tanh",
        "approximate=none",
        "weight+bias",
        "weight only",
        "no affine",
        "bfloat16 hidden=64 no affine params float32",
        "chunked [16, 24, 24]",
        "interleaved [24, 20, 20]",
        "[3, T] positions",
        "[T] positions",
        "rope 64 interleaved MLA slices cache float32",
        "rope 64 neox",
    ):
        assert needle in labels, needle
    assert all(1 in c.tokens and 7 in c.tokens for op_cases in cases.values() for c in op_cases)
    quick = all_cases(CPU, quick=True)
    assert 0 < sum(map(len, quick.values())) < sum(map(len, cases.values())) / 2


def test_wrong_values_fail_with_the_error_and_where():
    swapped = wrap("silu_and_mul", lambda k: lambda x: k(torch.cat(x.chunk(2, -1)[::-1], -1)))
    checks = check_backend(with_op("silu_and_mul", swapped), CPU, quick=True)
    assert statuses(checks, "silu_and_mul") == {Status.FAIL}
    assert all(
        "output differs from the reference: max |err|" in d and "first at (" in d
        for d in failures(checks, "silu_and_mul")
    )
    assert statuses(checks, "rms_norm") == {Status.PASS}  # one broken op fails only itself


def test_an_error_within_tolerance_passes_and_is_reported():
    nudged = wrap("rms_norm", lambda k: lambda x, r: _nudge(k(x, r), 1e-6))
    checks = check_backend(with_op("rms_norm", nudged), CPU, quick=True)
    passed = [c for c in checks if c.name.startswith("rms_norm float32")]
    assert {c.status for c in passed} == {Status.PASS}
    assert all(c.max_abs_error and 0 < c.max_abs_error < 1e-5 for c in passed)


def _nudge(result, by):
    if isinstance(result, tuple):
        return (result[0] + by, result[1])
    return result + by


def test_an_undeclared_in_place_kernel_fails():
    def in_place(kernel):
        def run(x, residual):
            out = kernel(x, residual)
            x.zero_()
            return out

        return run

    checks = check_backend(with_op("rms_norm", wrap("rms_norm", in_place)), CPU, quick=True)
    assert statuses(checks, "rms_norm") == {Status.FAIL}
    assert (
        "input 0 was written to, but the implementation does not declare mutates_inputs"
        in (failures(checks, "rms_norm")[0])
    )


def test_a_declared_in_place_kernel_passes():
    def fused_add(params):
        reference = REFERENCE["rms_norm"].bind(params)

        def run(x, residual):
            if residual is None:
                return reference(x, None)
            out, new_residual = reference(x, residual)
            x.copy_(out)
            residual.copy_(new_residual)
            return x, residual

        return run

    impl = OpImpl(fused_add, mutates_inputs=True)
    checks = check_backend(with_op("rms_norm", impl), CPU, quick=True)
    assert statuses(checks, "rms_norm") == {Status.PASS}


def test_residual_semantics_are_checked():
    only_out = wrap("rms_norm", lambda k: lambda x, r: k(x, r)[0] if r is not None else k(x, r))
    checks = check_backend(with_op("rms_norm", only_out), CPU, quick=True)
    details = failures(checks, "rms_norm")
    assert details and all("returned Tensor, expected a tuple of 2 tensors" in d for d in details)
    assert any(c.status is Status.PASS for c in checks if c.name.startswith("rms_norm"))


def test_wrong_dtype_and_shape_fail():
    upcast = wrap("silu_and_mul", lambda k: lambda x: k(x).float())
    checks = check_backend(with_op("silu_and_mul", upcast), CPU, quick=True)
    assert any(
        "output dtype is torch.float32, expected torch.bfloat16" in d
        for d in failures(checks, "silu_and_mul")
    )
    batched = wrap(
        "rotary_embedding", lambda k: lambda p, q, key: tuple(t.unsqueeze(0) for t in k(p, q, key))
    )
    checks = check_backend(with_op("rotary_embedding", batched), CPU, quick=True)
    assert any(
        d.startswith("tokens=7: query shape is (1, 7, ") and "expected (7, " in d
        for d in failures(checks, "rotary_embedding")
    )


def test_a_raising_kernel_fails_with_the_token_count():
    def one_token_breaks(kernel):
        def run(x):
            if x.shape[-2] == 1:
                raise RuntimeError("kernel cannot do 1 token")
            return kernel(x)

        return run

    checks = check_backend(
        with_op("silu_and_mul", wrap("silu_and_mul", one_token_breaks)), CPU, quick=True
    )
    assert any(
        d.startswith("tokens=1: kernel raised RuntimeError('kernel cannot do 1 token')")
        for d in failures(checks, "silu_and_mul")
    )


def test_refusals_are_reported_not_failed():
    def bf16_only(params):
        return None if params.dtype == torch.bfloat16 else f"no kernel for {params.dtype}"

    impl = OpImpl(REFERENCE["gemma_rms_norm"].bind, supports=bf16_only)
    checks = check_backend(with_op("gemma_rms_norm", impl), CPU, quick=True)
    assert statuses(checks, "gemma_rms_norm") == {Status.PASS, Status.REFUSED}
    refused = [c for c in checks if c.status is Status.REFUSED]
    assert refused and all(c.detail == "no kernel for torch.float32" for c in refused)


def test_missing_and_unknown_ops():
    impls = {op: impl for op, impl in REFERENCE.items() if op != "gemma_rms_norm"}
    assert "fused_moe" not in OP_NAMES  # an op a vendor might implement that is not (yet) ours
    impls["fused_moe"] = REFERENCE["rms_norm"]
    checks = check_backend(CheckedBackend(impls), CPU, quick=True)
    (missing,) = [c for c in checks if c.name == "gemma_rms_norm"]
    assert missing.status is Status.NOT_APPLICABLE and "selection falls back" in missing.detail
    (unknown,) = [c for c in checks if c.name == "fused_moe"]
    assert unknown.status is Status.FAIL and "no op of the catalogue" in unknown.detail


@pytest.mark.parametrize("stage", ["supports", "bind"])
def test_exceptions_in_supports_and_bind_fail(stage):
    def boom(params):
        raise ValueError("broken")

    impl = OpImpl(boom) if stage == "bind" else OpImpl(REFERENCE["rms_norm"].bind, supports=boom)
    checks = check_backend(with_op("rms_norm", impl), CPU, quick=True)
    assert set(failures(checks, "rms_norm")) == {f"{stage}() raised ValueError('broken')"}


# --------------------------------------------------------------------------- the newer ops


def _wrong_approximation(params):
    other = "none" if params.approximate == "tanh" else "tanh"
    return REFERENCE[GELU_AND_MUL].bind(replace(params, approximate=other))


def _mrope_on_the_t_row(params):
    """Ignores the h and w rows: plain rope at the t positions (SGLang 0.5.15-0.5.22's NPU
    call, [3, T] positions with sections [0, 0, 0])."""
    kernel = REFERENCE[MROTARY_EMBEDDING].bind(params)
    return lambda positions, q, k: kernel(positions[0] if positions.dim() == 2 else positions, q, k)


def _deepseek_other_style(params):
    return REFERENCE[DEEPSEEK_SCALING_ROTARY_EMBEDDING].bind(
        replace(params, is_neox_style=not params.is_neox_style)
    )


def _layer_norm_without_bias(params):
    return REFERENCE[LAYER_NORM].bind(replace(params, bias=None))


@pytest.mark.parametrize(
    ("op", "broken", "failing"),
    [
        (GELU_AND_MUL, _wrong_approximation, "approximate="),
        (MROTARY_EMBEDDING, _mrope_on_the_t_row, "[3, T] positions"),
        (DEEPSEEK_SCALING_ROTARY_EMBEDDING, _deepseek_other_style, "rope 64"),
        (LAYER_NORM, _layer_norm_without_bias, "weight+bias"),
    ],
    ids=["gelu-approximation", "mrope-sections-ignored", "deepseek-style", "layer-norm-bias"],
)
def test_the_newer_ops_catch_a_kernel_broken_in_one_way(op, broken, failing):
    """Each broken kernel fails exactly the cases it gets wrong, and nothing else of its op:
    the grid tells these ways apart."""
    checks = check_backend(with_op(op, OpImpl(broken)), CPU, quick=True)
    failed = {c.name for c in checks if c.status is Status.FAIL}
    assert failed and all(name.startswith(op + " ") and failing in name for name in failed)
    unaffected = [c for c in checks if c.name.startswith(op + " ") and failing not in c.name]
    assert all(c.status is Status.PASS for c in unaffected)
    assert {c.status for c in checks if not c.name.startswith(op + " ")} == {Status.PASS}


def test_the_rotary_ops_get_the_rotary_tolerance():
    """mrope and DeepSeek's rope, like rotary_embedding, round products of operands up to ~5:
    their bf16 error is checked against that scale, not the result's."""
    from sglang_fl.conformance.ops import ROTARY_ATOL, ROTARY_OPS

    assert set(ROTARY_OPS) == {ROTARY_EMBEDDING, MROTARY_EMBEDDING,
                               DEEPSEEK_SCALING_ROTARY_EMBEDDING}  # fmt: skip
    assert ROTARY_ATOL[torch.bfloat16] == 6e-2
