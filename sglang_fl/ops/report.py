"""What ``sglang-fl ops`` shows: per op, every backend's availability and the policy's choice.

Built from the same settings, registry and planner the plugin uses inside SGLang, so the
report and the dispatch log agree (the log additionally reflects per-instance checks).
"""

from __future__ import annotations

from typing import Any

from sglang_fl.bundles import discover_bundles
from sglang_fl.config import load_settings
from sglang_fl.dispatch.registry import build_registry
from sglang_fl.dispatch.selection import op_order, plan_op, vendor_filter
from sglang_fl.errors import DispatchError
from sglang_fl.ops.catalog import OP_FAMILIES


def ops_report() -> dict[str, Any]:
    settings = load_settings()
    registry = build_registry(discover_bundles())
    ops = []
    for family in OP_FAMILIES:
        implementations = []
        for backend in registry.ranked():
            available = registry.availability(backend)
            denied = vendor_filter(backend, settings)
            reason = denied.reason if denied is not None else available.reason
            if available.ok and family.name not in backend.implementations():
                continue
            implementations.append({
                "impl_id": backend.impl_id, "kind": backend.kind.value,
                "priority": backend.priority, "available": available.ok and not reason,
                "reason": reason,
            })  # fmt: skip
        try:
            chosen, error = plan_op(family.name, settings, registry).candidates[0].impl_id, None
        except DispatchError as exc:
            chosen, error = None, str(exc)
        ops.append({
            "op": family.name, "classes": list(family.classes),
            "order": list(op_order(family.name, settings)),
            "implementations": implementations, "chosen": chosen, "error": error,
        })  # fmt: skip
    return {"platform": settings.platform, "strict": settings.strict, "ops": ops}
