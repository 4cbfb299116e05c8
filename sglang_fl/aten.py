"""Layer 1: replace ATen ops with FlagGems Triton kernels (``USE_FLAGGEMS`` and the lists)."""

from __future__ import annotations

import logging

from sglang_fl.backends.flagos import flaggems_import_error
from sglang_fl.config import Settings

logger = logging.getLogger(__name__)


def install_layer1(settings: Settings) -> bool:
    """Enable FlagGems' ATen registrations per the settings; True if it is active."""
    if not settings.use_flaggems:
        logger.info("Layer 1 (FlagGems ATen replacement) disabled by USE_FLAGGEMS=0")
        return False
    error = flaggems_import_error()
    if error:
        logger.info("Layer 1 (FlagGems ATen replacement) inactive: %s", error)
        return False
    import flag_gems

    log = {
        "record": settings.flaggems_record,
        "once": settings.flaggems_log_once,
        "path": str(settings.flaggems_log_path) if settings.flaggems_log_path else None,
    }
    if settings.flagos_whitelist is not None:
        flag_gems.only_enable(include=list(settings.flagos_whitelist), **log)
    else:
        flag_gems.enable(unused=list(settings.flagos_blacklist) or None, **log)
    logger.info("Layer 1 (FlagGems ATen replacement) active")
    return True
