"""Configuration: typed settings layered from env vars and YAML files (see ``settings``)."""

from pathlib import Path

from sglang_fl.config.settings import (
    CONFIG_ENV,
    ENV,
    FIELDS,
    PUBLIC_FIELDS,
    YAML_FIELDS,
    Settings,
    get_settings,
    load_settings,
    without_steering,
)
from sglang_fl.config.source import Source, SourceKind

# Where the documented sample config lives (spec 000 copies it from here).
_CONFIG_DIR = Path(__file__).resolve().parent

__all__ = [
    "CONFIG_ENV",
    "ENV",
    "FIELDS",
    "PUBLIC_FIELDS",
    "YAML_FIELDS",
    "_CONFIG_DIR",
    "Settings",
    "Source",
    "SourceKind",
    "get_settings",
    "load_settings",
    "without_steering",
]
