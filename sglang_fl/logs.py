"""Logging for sglang-fl's own logger (``SGLANG_FL_LOG_LEVEL``)."""

from __future__ import annotations

import logging

from sglang_fl.config import Settings

LOGGER_NAME = "sglang_fl"


def configure_logging(settings: Settings) -> None:
    """Set our level; add a stderr handler only if nothing upstream (SGLang) handles records."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(settings.log_level)
    if not logging.getLogger().handlers and not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[%(asctime)s] %(name)s %(levelname)s: %(message)s"))
        logger.addHandler(handler)
