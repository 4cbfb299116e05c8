"""Install Layer 2: plan every op once, then register one trampoline per SGLang op class."""

from __future__ import annotations

import logging
from functools import partial

from torch import nn

from sglang_fl.bundles import discover_bundles
from sglang_fl.compat import fused_ops
from sglang_fl.config import Settings
from sglang_fl.dispatch.binder import Dispatcher
from sglang_fl.dispatch.dispatch_log import DispatchLog
from sglang_fl.dispatch.registry import build_registry
from sglang_fl.dispatch.selection import plan_op
from sglang_fl.ops.bridges import BRIDGES
from sglang_fl.ops.catalog import FAMILY_BY_CLASS, OP_FAMILIES

logger = logging.getLogger(__name__)

_active: Dispatcher | None = None  # this process's dispatcher, once Layer 2 is installed
_registered: dict[str, str] = {}  # op class name -> op name, for every class registered


def active_dispatcher() -> Dispatcher | None:
    """The Layer 2 dispatcher installed in this process (None if Layer 2 is not active)."""
    return _active


def class_selected(cls: type, settings: Settings) -> bool:
    """OOT white/blacklists name classes; a listed family root also covers its subclasses."""
    names = {k.__name__ for k in cls.__mro__ if k.__name__ in FAMILY_BY_CLASS}
    if settings.oot_whitelist is not None:
        return bool(names & set(settings.oot_whitelist))
    return not names & set(settings.oot_blacklist)


def install_layer2(settings: Settings, dispatch_key: str) -> Dispatcher | None:
    """Register sglang-fl's forwards for every selected op class under ``dispatch_key``."""
    global _active
    if not settings.oot_enabled:
        logger.info("Layer 2 (fused-op dispatch) disabled by SGLANG_FL_OOT_ENABLED=0")
        return None
    selected = {}
    for family in OP_FAMILIES:
        classes = {
            name: cls
            for name, cls in fused_ops.family_classes(family).items()
            if class_selected(cls, settings)
        }
        skipped = sorted(set(fused_ops.family_classes(family)) - set(classes))
        if skipped:
            logger.info("Layer 2: leaving %s on SGLang's own path (OOT lists)", ", ".join(skipped))
        if classes:
            selected[family.name] = classes
    registry = build_registry(discover_bundles())
    plans = {op: plan_op(op, settings, registry) for op in selected}
    dispatcher = Dispatcher(
        plans,
        DispatchLog(settings.dispatch_log),
        fused_ops.install_forward,
        partial(_own_path, dispatch_key=dispatch_key),
    )
    for op, classes in selected.items():
        for name, cls in classes.items():
            fused_ops.register_oot_forward(
                cls, dispatcher.trampoline(BRIDGES[op], name), dispatch_key
            )
            _registered[name] = op
    fused_ops.rebind_prebuilt(cls for classes in selected.values() for cls in classes.values())
    logger.info(
        "Layer 2: dispatching %s (key %r); first choices: %s",
        ", ".join(n for classes in selected.values() for n in classes),
        dispatch_key,
        ", ".join(f"{op}={plan.candidates[0].impl_id}" for op, plan in plans.items()),
    )
    _active = dispatcher
    return dispatcher


def report_model(model: nn.Module) -> None:
    """Log which fused-op classes a loaded model reaches, and which of them stay on SGLang's
    own path (not dispatched by sglang-fl, or left alone by the OOT lists)."""
    base = fused_ops.fused_op_base()
    reached = sorted({type(m).__name__ for m in model.modules() if isinstance(m, base)})
    own = [name for name in reached if name not in _registered]
    logger.info(
        "Layer 2: %s reaches the fused ops %s; on SGLang's own path: %s",
        type(model).__name__,
        ", ".join(reached) or "(none)",
        ", ".join(own) or "(none)",
    )


def _own_path(module, *, dispatch_key: str):
    return fused_ops.own_path(module, dispatch_key)
