"""The ``flagos`` backend: FlagGems / Triton kernels, priority 150.

Available only where FlagGems imports and finds a device; on a plain CPU it reports why not,
and selection falls back (or, in strict mode, refuses) with that reason.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from sglang_fl.dispatch.backend import Availability, Backend, ImplKind, OpImpl


@functools.cache
def flaggems_import_error() -> str | None:
    """None if ``import flag_gems`` works in this process, else why not (checked once)."""
    try:
        import flag_gems  # noqa: F401
    except Exception as exc:  # FlagGems raises RuntimeError when it detects no device
        return f"FlagGems cannot be imported: {type(exc).__name__}: {exc}"
    return None


class FlagosBackend(Backend):
    kind = ImplKind.FLAGOS

    def availability(self) -> Availability:
        error = flaggems_import_error()
        return Availability.no(error) if error else Availability.yes()

    def implementations(self) -> Mapping[str, OpImpl]:
        from sglang_fl.backends.flagos.ops import IMPLEMENTATIONS

        return IMPLEMENTATIONS
