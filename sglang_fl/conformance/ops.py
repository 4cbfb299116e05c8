"""Op conformance: every op of a backend against the reference backend, through ``bind``.

For each case (cases.py) the backend's ``supports`` is asked first (a refusal is reported,
not failed: selection then falls back for that instance), then the instance is bound once and
called with each token count. Every call is checked for what the dispatcher and SGLang rely on:

- the result's structure: a tensor, or ``(out, new_residual)`` exactly when a residual is
  given, ``(query, key)`` for rotary;
- each tensor's shape, dtype and device equal the reference's;
- values within the dtype's tolerance of the reference (a few roundings of the dtype);
- inputs left untouched unless the implementation declares ``mutates_inputs`` (the binder
  skips its input snapshot otherwise, so an undeclared in-place kernel breaks fallback);
- no exception: after binding, a raising kernel is a crash in the middle of serving.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from sglang_fl.backends.reference import ReferenceBackend
from sglang_fl.conformance.cases import OpCase, all_cases
from sglang_fl.conformance.report import Check, Status
from sglang_fl.dispatch.backend import Backend, OpImpl
from sglang_fl.ops.catalog import (
    DEEPSEEK_SCALING_ROTARY_EMBEDDING,
    GEMMA3_RMS_NORM,
    GEMMA_RMS_NORM,
    MROTARY_EMBEDDING,
    OP_NAMES,
    RMS_NORM,
    ROTARY_EMBEDDING,
)

# (rtol, atol) per dtype. The reference rounds to the input dtype after each step where SGLang's
# forward_native does; a fused kernel typically computes in fp32 and rounds once. The gap is a
# few roundings of the dtype (the flagos kernels' own bounds, one rounding of the output:
# tests/backends/flagos_cases.py).
TOLERANCE = {
    torch.float32: (1e-5, 1e-5),
    torch.float16: (4e-3, 4e-3),
    torch.bfloat16: (3e-2, 3e-2),
}
# Rotary: the rounding error scales with the operands (|x| up to ~5), not the result.
ROTARY_ATOL = {torch.float32: 1e-5, torch.float16: 8e-3, torch.bfloat16: 6e-2}
ROTARY_OPS = (ROTARY_EMBEDDING, MROTARY_EMBEDDING, DEEPSEEK_SCALING_ROTARY_EMBEDDING)
# What the tensors of a tuple result are, in failure messages.
OUTPUT_NAMES = {
    **dict.fromkeys((RMS_NORM, GEMMA_RMS_NORM, GEMMA3_RMS_NORM), ("out", "new_residual")),
    **dict.fromkeys(ROTARY_OPS, ("query", "key")),
}


class CaseFailure(Exception):
    """One call of a case did not conform; the message says how."""


def check_backend(backend: Backend, device: torch.device, quick: bool = False) -> list[Check]:
    """Every case of every op of ``backend``, as Check rows (part "ops")."""
    impls = backend.implementations()
    reference = ReferenceBackend().implementations()
    checks = [
        Check(
            "ops",
            op,
            Status.FAIL,
            f"{backend.impl_id} implements {op!r}, which is no op "
            f"of the catalogue ({', '.join(OP_NAMES)}): it can never be selected",
        )
        for op in impls
        if op not in OP_NAMES
    ]
    for op, cases in all_cases(device, quick).items():
        if op not in impls:
            checks.append(
                Check(
                    "ops",
                    op,
                    Status.NOT_APPLICABLE,
                    f"not implemented by {backend.impl_id}: selection falls back",
                )
            )
            continue
        checks.extend(check_case(impls[op], reference[op], case) for case in cases)
    return checks


def check_case(impl: OpImpl, reference: OpImpl, case: OpCase) -> Check:
    name = f"{case.op} {case.label}"
    try:
        refusal = impl.supports(case.params)
    except Exception as exc:
        return Check("ops", name, Status.FAIL, f"supports() raised {exc!r}")
    if refusal:
        return Check("ops", name, Status.REFUSED, str(refusal))
    try:
        kernel = impl.bind(case.params)
    except Exception as exc:
        return Check("ops", name, Status.FAIL, f"bind() raised {exc!r}")
    expected_kernel = reference.bind(case.params)
    worst = 0.0
    for tokens in case.tokens:
        try:
            worst = max(worst, _check_call(kernel, expected_kernel, impl, case, tokens))
        except CaseFailure as exc:
            return Check("ops", name, Status.FAIL, f"tokens={tokens}: {exc}")
        except Exception as exc:
            return Check("ops", name, Status.FAIL, f"tokens={tokens}: kernel raised {exc!r}")
    return Check("ops", name, Status.PASS, "", worst)


def _check_call(kernel, expected_kernel, impl: OpImpl, case: OpCase, tokens: int) -> float:
    inputs = case.make_inputs(tokens)
    snapshot = _clone(inputs)
    given = _clone(inputs) if impl.mutates_inputs else inputs
    actual = kernel(*given)
    if not impl.mutates_inputs:
        for index, (now, before) in enumerate(zip(inputs, snapshot, strict=True)):
            if isinstance(now, torch.Tensor) and not torch.equal(now, before):
                raise CaseFailure(
                    f"input {index} was written to, but the implementation does not declare "
                    f"mutates_inputs=True (fallback would then run on damaged inputs)"
                )
    expected = expected_kernel(*_clone(snapshot))
    rtol, atol = TOLERANCE[case.params.dtype]
    if case.op in ROTARY_OPS:
        atol = ROTARY_ATOL[case.params.dtype]
    return _compare(actual, expected, OUTPUT_NAMES.get(case.op, ()), rtol, atol)


def _clone(values: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(v.clone() if isinstance(v, torch.Tensor) else v for v in values)


def _compare(actual: Any, expected: Any, names: tuple[str, ...], rtol: float, atol: float) -> float:
    """Max abs error; raises CaseFailure on a structural or numerical mismatch."""
    if isinstance(expected, torch.Tensor):
        if not isinstance(actual, torch.Tensor):
            raise CaseFailure(f"returned {_describe(actual)}, expected a tensor")
        return _compare_tensor("output", actual, expected, rtol, atol)
    if not isinstance(actual, (tuple, list)) or len(actual) != len(expected):
        raise CaseFailure(
            f"returned {_describe(actual)}, expected a tuple of {len(expected)} tensors"
        )
    errors = [
        _compare_tensor(names[i] if i < len(names) else f"output {i}", a, e, rtol, atol)
        for i, (a, e) in enumerate(zip(actual, expected, strict=True))
    ]
    return max(errors)


def _compare_tensor(what: str, actual, expected: torch.Tensor, rtol: float, atol: float) -> float:
    if not isinstance(actual, torch.Tensor):
        raise CaseFailure(f"{what} is {_describe(actual)}, expected a tensor")
    for attribute in ("shape", "dtype", "device"):
        got, want = getattr(actual, attribute), getattr(expected, attribute)
        if got != want:
            raise CaseFailure(f"{what} {attribute} is {_show(got)}, expected {_show(want)}")
    a, e = actual.detach().float(), expected.detach().float()
    if not torch.equal(torch.isnan(a), torch.isnan(e)):
        raise CaseFailure(f"{what} has NaNs where the reference has none (or vice versa)")
    diff = (a - e).abs().nan_to_num(0.0)
    error = float(diff.max()) if diff.numel() else 0.0
    bad = diff > atol + rtol * e.abs().nan_to_num(0.0)
    if bool(bad.any()):
        index = tuple(int(i) for i in torch.nonzero(bad)[0])
        raise CaseFailure(
            f"{what} differs from the reference: max |err| {error:.3g} (rtol {rtol}, atol "
            f"{atol}); first at {index}: {float(a[index]):.6g} vs {float(e[index]):.6g}"
        )
    return error


def _describe(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return type(value).__name__


def _show(value: Any) -> str:
    return str(tuple(value)) if isinstance(value, torch.Size) else str(value)
