"""Install Layer 2: plan every op once, then register one trampoline per SGLang op class."""

from __future__ import annotations

import logging
from functools import partial

from sglang_fl import compat
from sglang_fl.bundles import discover_bundles
from sglang_fl.config import Settings
from sglang_fl.dispatch.binder import Dispatcher
from sglang_fl.dispatch.dispatch_log import DispatchLog
from sglang_fl.dispatch.registry import build_registry
from sglang_fl.dispatch.selection import plan_op
from sglang_fl.ops.bridges import BRIDGES
from sglang_fl.ops.catalog import FAMILY_BY_CLASS, OP_FAMILIES

logger = logging.getLogger(__name__)


def class_selected(cls: type, settings: Settings) -> bool:
    """OOT white/blacklists name classes; a listed family root also covers its subclasses."""
    names = {k.__name__ for k in cls.__mro__ if k.__name__ in FAMILY_BY_CLASS}
    if settings.oot_whitelist is not None:
        return bool(names & set(settings.oot_whitelist))
    return not names & set(settings.oot_blacklist)


def install_layer2(settings: Settings, dispatch_key: str) -> Dispatcher | None:
    """Register sglang-fl's forwards for every selected op class under ``dispatch_key``."""
    if not settings.oot_enabled:
        logger.info("Layer 2 (fused-op dispatch) disabled by SGLANG_FL_OOT_ENABLED=0")
        return None
    selected = {}
    for family in OP_FAMILIES:
        classes = {
            name: cls
            for name, cls in compat.family_classes(family).items()
            if class_selected(cls, settings)
        }
        skipped = sorted(set(compat.family_classes(family)) - set(classes))
        if skipped:
            logger.info("Layer 2: leaving %s on SGLang's own path (OOT lists)", ", ".join(skipped))
        if classes:
            selected[family.name] = classes
    registry = build_registry(discover_bundles())
    plans = {op: plan_op(op, settings, registry) for op in selected}
    dispatcher = Dispatcher(
        plans,
        DispatchLog(settings.dispatch_log),
        compat.install_forward,
        partial(_own_path, dispatch_key=dispatch_key),
    )
    for op, classes in selected.items():
        for name, cls in classes.items():
            compat.register_oot_forward(cls, dispatcher.trampoline(BRIDGES[op], name), dispatch_key)
    logger.info(
        "Layer 2: dispatching %s (key %r); first choices: %s",
        ", ".join(n for classes in selected.values() for n in classes),
        dispatch_key,
        ", ".join(f"{op}={plan.candidates[0].impl_id}" for op, plan in plans.items()),
    )
    return dispatcher


def _own_path(module, *, dispatch_key: str):
    return compat.own_path(module, dispatch_key)
