"""Layer 1: replace ATen ops with FlagGems Triton kernels (``USE_FLAGGEMS`` and the lists).

The replacement log (``SGLANG_FLAGGEMS_RECORD``) is written by our own handler on FlagGems'
logger rather than by ``flag_gems.enable(record=True)``: FlagGems opens its log file with
``mode="w"`` in every process that enables it, so the launcher and each TP rank would truncate
each other's lines. Ours appends (one ``write`` per line on an ``O_APPEND`` file, like the
dispatch log) and keeps only records of ATen replacements (FlagGems' ``flag_gems.ops.*``
loggers), not FlagGems' fused/internal kernels (spec 003's ATen-only filter).
"""

from __future__ import annotations

import logging
from pathlib import Path

from sglang_fl.config import Settings
from sglang_fl.flaggems import flaggems_import_error

logger = logging.getLogger(__name__)

FLAGGEMS_LOGGER = "flag_gems"
ATEN_NAMESPACE = "flag_gems.ops."
DEFAULT_LOG_PATH = Path.home() / ".flaggems" / "oplist.log"
# FlagGems' own record format, so existing tooling reads our file unchanged.
LOG_FORMAT = "[%(levelname)s] %(name)s.%(funcName)s: %(message)s"


class AtenOnlyFilter(logging.Filter):
    """Pass only records made by FlagGems' ATen replacements (``flag_gems.ops.*`` loggers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.startswith(ATEN_NAMESPACE)


class OncePerOpFilter(logging.Filter):
    """``SGLANG_FLAGGEMS_LOG_ONCE``: each op's logging site (logger, function, line) once."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[tuple[str, str, int]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.funcName, record.lineno)
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


def install_layer1(settings: Settings) -> bool:
    """Enable FlagGems' ATen registrations per the settings; True if it is active."""
    if not settings.use_flaggems:
        logger.info("Layer 1 (FlagGems ATen replacement) disabled by USE_FLAGGEMS=0")
        return False
    if settings.flagos_whitelist == ():  # before the import: FlagGems costs ~2 s to load
        logger.info(
            "Layer 1 (FlagGems ATen replacement): the whitelist (%s) is empty, no ATen op is "
            "replaced", settings.sources["flagos_whitelist"],
        )  # fmt: skip
        return False
    error = flaggems_import_error()
    if error:
        logger.info("Layer 1 (FlagGems ATen replacement) inactive: %s", error)
        return False
    import flag_gems

    if settings.flagos_whitelist is not None:
        flag_gems.only_enable(include=list(settings.flagos_whitelist))
    else:
        flag_gems.enable(unused=list(settings.flagos_blacklist) or None)
    if settings.flaggems_record:
        attach_record_handler(settings.flaggems_log_path or DEFAULT_LOG_PATH,
                              once=settings.flaggems_log_once)  # fmt: skip
    logger.info(
        "Layer 1 (FlagGems ATen replacement) active: %d ATen ops replaced (%s)",
        len(flag_gems.all_registered_ops()),
        "whitelist" if settings.flagos_whitelist is not None else "all but the blacklist",
    )
    return True


def attach_record_handler(path: Path, *, once: bool) -> logging.Handler:
    """Append ATen replacement records to ``path`` (shared by every process of a server)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="a", encoding="utf-8", delay=True)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(AtenOnlyFilter())
    if once:
        handler.addFilter(OncePerOpFilter())
    gems_logger = logging.getLogger(FLAGGEMS_LOGGER)
    gems_logger.setLevel(logging.DEBUG)
    gems_logger.addHandler(handler)
    gems_logger.propagate = False
    return handler
