"""SGLang's hook registry (``sglang.srt.plugins.hook_registry``, unchanged 0.5.15-0.5.23), as
every sglang-fl hook is registered with it.

SGLang applies registered hooks when ``load_plugins()`` returns, in every process, and only
logs a target it cannot resolve. sglang-fl resolves each target when it registers the hook
instead, so a target a release renamed is an error naming the target, never a silently absent
hook; and registers each target once per process (``load_plugin`` may be re-entered by tests).
"""

from __future__ import annotations

import logging
import pkgutil
from collections.abc import Callable
from typing import Any, Literal

from sglang_fl.compat.versions import SUPPORTED_RANGE
from sglang_fl.errors import UnsupportedSGLangError

logger = logging.getLogger(__name__)

HookKind = Literal["BEFORE", "AFTER", "AROUND", "REPLACE"]

_registered: set[str] = set()


def hook_registry() -> tuple[type, type]:
    """SGLang's ``(HookRegistry, HookType)``."""
    from sglang.srt.plugins.hook_registry import HookRegistry, HookType

    return HookRegistry, HookType


def resolve(target: str, owner: str) -> Any:
    """The object at the dotted ``target``; an error naming ``owner`` (what needs it) if this
    SGLang has none."""
    try:
        return pkgutil.resolve_name(target)
    except (ImportError, AttributeError) as exc:
        raise UnsupportedSGLangError(
            f"sglang-fl {owner} hooks {target}, which this SGLang does not have ({exc}); "
            f"sglang-fl supports sglang {SUPPORTED_RANGE}"
        ) from exc


def register_hook(target: str, hook: Callable, kind: HookKind, *, owner: str) -> None:
    """Register ``hook`` on ``target`` once per process, its target resolved first."""
    if target in _registered:
        return
    resolve(target, owner)
    registry, hook_type = hook_registry()
    registry.register(target, hook, getattr(hook_type, kind))
    _registered.add(target)
    logger.debug("%s: %s hook registered on %s", owner, kind, target)
