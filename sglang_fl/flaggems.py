"""Whether FlagGems can be imported in this process: the one place that tries.

FlagGems (``flag_gems``) is optional: it needs a device Triton can drive and raises at import
time when it finds none. Layer 1 (``sglang_fl.aten``) and the benchmarks that time FlagGems ask
here instead of each importing it under its own ``try``, so every caller reports the same
reason. It sits at the bottom of the package (it imports nothing of sglang-fl) so that any
layer may ask without reaching into another layer's modules.
"""

from __future__ import annotations

import functools


@functools.cache
def flaggems_import_error() -> str | None:
    """None if ``import flag_gems`` works in this process, else why not (checked once: the
    import costs about 2 s and its outcome cannot change within a process)."""
    try:
        import flag_gems  # noqa: F401
    except Exception as exc:  # FlagGems raises RuntimeError when it detects no device
        return f"FlagGems cannot be imported: {type(exc).__name__}: {exc}"
    return None
