"""Selection policy: turn settings + registered backends into an ordered plan per op.

Plans are computed once per process (at plugin load), so every availability check and every
policy decision happens before the model runs, and strict-mode errors surface early.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from sglang_fl.config import Settings
from sglang_fl.dispatch.backend import Backend, ImplKind, OpImpl, Refusal
from sglang_fl.errors import DispatchError
from sglang_fl.ops.catalog import default_order

if TYPE_CHECKING:
    from sglang_fl.dispatch.registry import Registry


@dataclass(frozen=True)
class Candidate:
    """A usable implementation of an op: the backend and its implementation."""

    backend: Backend
    impl: OpImpl

    @property
    def impl_id(self) -> str:
        return self.backend.impl_id

    @property
    def kind(self) -> str:
        return self.backend.kind.value


@dataclass(frozen=True)
class Rejection:
    """A backend the order matched but the plan dropped, and why (shown in warnings/errors)."""

    impl_id: str
    reason: str


@dataclass(frozen=True)
class OpPlan:
    """The usable implementations of one op, best first, and why the others were dropped.

    ``skipped`` holds the rejections ranked above the first candidate: what a fallback passed
    over, named in its warning.
    """

    op: str
    order: tuple[str, ...]
    candidates: tuple[Candidate, ...]
    rejected: tuple[Rejection, ...]
    strict: bool
    skipped: tuple[Rejection, ...]


def token_matches(token: str, backend: Backend) -> bool:
    kind, _, vendor = token.partition(":")
    if kind != backend.kind.value:
        return False
    return not vendor or backend.vendor == vendor


def vendor_filter(backend: Backend, settings: Settings) -> Refusal | None:
    """Why the allow/deny lists exclude a vendor backend, or None."""
    if backend.kind is not ImplKind.VENDOR:
        return None
    if backend.vendor in settings.deny_vendors:
        return Refusal(f"vendor {backend.vendor!r} is in deny_vendors")
    if settings.allow_vendors is not None and backend.vendor not in settings.allow_vendors:
        return Refusal(f"vendor {backend.vendor!r} is not in allow_vendors")
    return None


def op_order(op: str, settings: Settings) -> tuple[str, ...]:
    """The backend tokens tried for ``op``, best first: its ``op_backends`` entry (only those
    backends), else the default order of ``prefer``."""
    return settings.op_backends.get(op) or default_order(settings.prefer)


def plan_op(op: str, settings: Settings, registry: Registry) -> OpPlan:
    """Order ``op``'s implementations by policy and drop what cannot run here.

    Strict mode requires the first choice to be usable; otherwise a DispatchError names the op
    and why. Non-strict mode keeps whatever is left, in order.
    """
    order = op_order(op, settings)
    entries = _entries(op, order, settings, registry)
    if settings.strict:
        _check_first_choice(op, order, entries)
    plan = OpPlan(
        op=op,
        order=order,
        candidates=tuple(
            Candidate(e.backend, e.backend.implementations()[op])
            for e in entries
            if e.refusal is None
        ),
        rejected=tuple(
            Rejection(e.backend.impl_id, e.refusal.reason) for e in entries if e.refusal is not None
        ),
        strict=settings.strict,
        skipped=_skipped(entries),
    )
    if not plan.candidates:
        reasons = "; ".join(f"{r.impl_id}: {r.reason}" for r in plan.rejected)
        raise DispatchError(
            f"op {op!r}: no usable implementation for order {list(order)}"
            f" ({reasons or 'no registered implementation matches'})"
        )
    return plan


class _Entry(NamedTuple):
    """A backend matched by the order: the index of the token it matched, and why it cannot be
    used (None: it is a candidate)."""

    index: int
    backend: Backend
    refusal: Refusal | None


def _entries(
    op: str, order: tuple[str, ...], settings: Settings, registry: Registry
) -> list[_Entry]:
    """Every backend a token of ``order`` matches, in policy order, each once. A usable backend
    that does not implement ``op`` is silently left out: it is no candidate, nor a rejection."""
    entries: list[_Entry] = []
    seen: set[str] = set()
    ranked = registry.ranked()
    for index, token in enumerate(order):
        for backend in ranked:
            if backend.impl_id in seen or not token_matches(token, backend):
                continue
            seen.add(backend.impl_id)
            refusal = _exclusion(backend, settings, registry)
            if refusal is None and op not in backend.implementations():
                continue
            entries.append(_Entry(index, backend, refusal))
    return entries


def _exclusion(backend: Backend, settings: Settings, registry: Registry) -> Refusal | None:
    """Why the vendor lists or availability exclude ``backend`` (for every op), or None."""
    denied = vendor_filter(backend, settings)
    if denied is not None:
        return denied
    available = registry.availability(backend)
    if not available.ok:
        return Refusal(f"unavailable: {available.reason}")
    return None


def _skipped(entries: list[_Entry]) -> tuple[Rejection, ...]:
    """Rejections of tokens ranked above the chosen one (what a fallback passed over).

    Within the chosen token, an unavailable sibling is not a fallback: ``vendor`` picked the
    vendor that is present.
    """
    chosen = next((e.index for e in entries if e.refusal is None), None)
    return tuple(
        Rejection(e.backend.impl_id, e.refusal.reason)
        for e in entries
        if e.refusal is not None and (chosen is None or e.index < chosen)
    )


def _check_first_choice(op: str, order: tuple[str, ...], entries: list[_Entry]) -> None:
    """Strict mode: some implementation matching the first token must be usable.

    (``vendor`` means *any* available vendor, so one unavailable vendor is not a failure.)
    """
    first = [e for e in entries if e.index == 0]
    if any(e.refusal is None for e in first):
        return
    refused = [f"{e.backend.impl_id} is {e.refusal.reason}" for e in first if e.refusal]
    why = "; ".join(refused) or "no registered implementation matches it"
    raise DispatchError(
        f"strict mode: op {op!r} cannot use its first choice {order[0]!r}: {why}. Fix the "
        f"environment, change the order (prefer / op_backends / SGLANG_FL_PER_OP), or unset "
        f"SGLANG_FL_STRICT to allow fallback."
    )
