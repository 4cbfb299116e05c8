"""The ``flagos`` backend: our own Triton kernels (``kernels.py``), priority 150.

Available where Triton imports and one of its GPU backends is active in this process (it finds
a device through torch: CUDA, ROCm, or another Triton backend's device). That is all the
kernels need: FlagGems is not required here; it is Layer 1's business (``sglang_fl.aten``, which
asks ``sglang_fl.flaggems`` whether it can be imported). On a plain CPU the backend reports why
it is unavailable, and selection falls back (or, in strict mode, refuses) with that reason.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

from sglang_fl.dispatch.backend import Availability, Backend, ImplKind, OpImpl


@dataclass(frozen=True)
class TritonBackends:
    """Triton's backends in this process: those installed and those active (a device found for
    them), or ``error``: why Triton could not say (not importable, a backend's probe raised)."""

    installed: tuple[str, ...] = ()
    active: tuple[str, ...] = ()
    error: str | None = None


@functools.cache
def triton_backends() -> TritonBackends:
    """Ask each installed Triton backend whether it is active (what Triton itself does before
    its first launch) without creating its driver, so the check builds and loads nothing;
    checked once. torch is imported first: the backends then ask torch for a device (the
    kernels run on torch tensors), not the driver library directly."""
    import torch  # noqa: F401

    try:
        from triton.backends import backends
    except Exception as exc:
        return TritonBackends(error=f"Triton cannot be imported: {type(exc).__name__}: {exc}")
    installed = tuple(sorted(backends))
    try:
        active = tuple(name for name in installed if backends[name].driver.is_active())
    except Exception as exc:
        error = f"Triton cannot query its backends: {type(exc).__name__}: {exc}"
        return TritonBackends(installed, error=error)
    return TritonBackends(installed, active)


def triton_unavailable_reason() -> str | None:
    """None if Triton imports and has an active GPU backend here, else why not."""
    state = triton_backends()
    if state.error is not None:
        return state.error
    if not state.active:
        return (
            f"Triton has no active GPU backend here (installed: "
            f"{', '.join(state.installed) or 'none'}; torch sees no device for any of them)"
        )
    return None


class FlagosBackend(Backend):
    kind = ImplKind.FLAGOS

    def availability(self) -> Availability:
        reason = triton_unavailable_reason()
        return Availability.no(reason) if reason else Availability.yes()

    def implementations(self) -> Mapping[str, OpImpl]:
        from sglang_fl.backends.flagos.ops import IMPLEMENTATIONS

        return IMPLEMENTATIONS
