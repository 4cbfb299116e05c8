"""Per-instance binding: the first call of each fused-op instance picks and binds its kernel.

SGLang calls the function we registered for an op class; that function (the *trampoline*)
runs once per instance: it extracts the instance's parameters, binds the first candidate of
the op's plan, runs the call, and installs the bound forward on the instance so every later
call goes straight to it. A candidate that raises on that first call is skipped (fallback)
unless strict mode is on; if it may have written into its inputs, they are restored first.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sglang_fl.dispatch.backend import Refusal
from sglang_fl.dispatch.dispatch_log import DispatchLog
from sglang_fl.dispatch.selection import Candidate, OpPlan
from sglang_fl.errors import DispatchError
from sglang_fl.ops.bridges import Bridge, Forward

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Binding:
    """What an instance was bound to (for diagnostics and benchmarks, never the hot path)."""

    impl_id: str
    kernel: Callable[..., Any]
    forward: Forward


class Dispatcher:
    """Process-wide Layer 2 state: the plans, the dispatch log, and the SGLang adapter hooks.

    install:  puts a forward on an instance so SGLang calls it directly next time.
    own_path: the forward SGLang itself would run for an instance on this platform.
    """

    def __init__(
        self,
        plans: Mapping[str, OpPlan],
        log: DispatchLog,
        install: Callable[[nn.Module, Forward], None],
        own_path: Callable[[nn.Module], Forward],
    ) -> None:
        self.plans = plans
        self.log = log
        self.install = install
        self.own_path = own_path
        self._announced: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self.bindings: weakref.WeakKeyDictionary[nn.Module, Binding] = weakref.WeakKeyDictionary()

    def trampoline(self, bridge: Bridge, class_name: str) -> Callable[..., Any]:
        """The function registered with SGLang for ``class_name``; runs once per instance."""
        dispatcher = self

        def first_call(module: nn.Module, *args: Any, **kwargs: Any) -> Any:
            forward, result = dispatcher.bind(module, bridge, class_name, args, kwargs)
            dispatcher.install(module, forward)
            return result

        first_call.__qualname__ = f"sglang_fl_first_call[{class_name}]"
        return first_call

    def bind(
        self,
        module: nn.Module,
        bridge: Bridge,
        class_name: str,
        args: Sequence[Any],
        kwargs: dict[str, Any],
    ) -> tuple[Forward, Any]:
        """Choose and bind ``module``'s forward; returns it and the result of this call."""
        plan = self.plans[bridge.op]
        own = self.own_path(module)
        params = bridge.params(module, args, kwargs)
        if isinstance(params, Refusal):
            self._announce(class_name, "sglang", f"{class_name} instance left on SGLang's own "
                           f"path: {params.reason}")  # fmt: skip
            return own, own(*args, **kwargs)
        failures: list[str] = []
        for index, candidate in enumerate(plan.candidates):
            outcome = self._try(plan, index, candidate, bridge, module, own, params, args, kwargs)
            if isinstance(outcome, Refusal):
                failures.append(f"{candidate.impl_id}: {outcome.reason}")
                continue
            forward, result = outcome
            self._report_choice(plan, class_name, candidate, failures)
            return forward, result
        raise DispatchError(
            f"op {plan.op!r} ({class_name}): every implementation failed: {'; '.join(failures)}"
        )

    def _try(
        self,
        plan: OpPlan,
        index: int,
        candidate: Candidate,
        bridge: Bridge,
        module: nn.Module,
        own: Forward,
        params: Any,
        args: Sequence[Any],
        kwargs: dict[str, Any],
    ) -> tuple[Forward, Any] | Refusal:
        """Check, bind and run one candidate: its forward and this call's result, or why it
        cannot serve this instance (it refuses the parameters, or its first call raised)."""
        unsupported = candidate.impl.supports(params)
        if unsupported:
            self._refuse_if_strict(plan, index, candidate, unsupported)
            return Refusal(unsupported)
        snapshot = None
        if candidate.impl.mutates_inputs:
            snapshot = [(t, t.clone()) for t in bridge.mutable_tensors(args, kwargs)]
        try:
            kernel = candidate.impl.bind(params)
            forward = bridge.forward(module, kernel, own)
            result = forward(*args, **kwargs)
            self.bindings[module] = Binding(candidate.impl_id, kernel, forward)
            return forward, result
        except Exception as exc:
            if plan.strict:
                raise DispatchError(
                    f"strict mode: implementation {candidate.impl_id!r} failed for op "
                    f"{plan.op!r}: {exc!r}"
                ) from exc
            if snapshot:
                with torch.no_grad():
                    for tensor, saved in snapshot:
                        tensor.copy_(saved)
            self._announce(
                f"{plan.op}:failed", candidate.impl_id,
                f"Implementation {candidate.impl_id!r} failed for op {plan.op!r}: {exc!r}",
                level=logging.WARNING,
            )  # fmt: skip
            return Refusal(repr(exc))

    @staticmethod
    def _refuse_if_strict(plan: OpPlan, index: int, candidate: Candidate, reason: str) -> None:
        if plan.strict and index == 0:
            raise DispatchError(
                f"strict mode: op {plan.op!r} cannot use {candidate.impl_id!r}: {reason}"
            )

    def _report_choice(
        self, plan: OpPlan, class_name: str, chosen: Candidate, failures: list[str]
    ) -> None:
        skipped = [f"{r.impl_id}: {r.reason}" for r in plan.skipped] + failures
        if skipped:
            self._announce(
                plan.op, chosen.impl_id,
                f"Op {plan.op!r} fallback to {chosen.impl_id!r} (kind={chosen.kind}, "
                f"vendor={chosen.backend.vendor}); skipped: {'; '.join(skipped)}",
                level=logging.WARNING,
            )  # fmt: skip
        self._announce(
            class_name, chosen.impl_id,
            f"Op {plan.op!r} using {chosen.impl_id!r} (kind={chosen.kind}, "
            f"vendor={chosen.backend.vendor}) for {class_name}",
            level=logging.DEBUG,
        )  # fmt: skip
        self.log.record(class_name, chosen.kind, chosen.impl_id)

    def _announce(self, subject: str, choice: str, message: str, level: int = logging.INFO) -> None:
        """Log ``message`` once per (subject, choice) per process."""
        with self._lock:
            if (subject, choice) in self._announced:
                return
            self._announced.add((subject, choice))
        logger.log(level, message)
