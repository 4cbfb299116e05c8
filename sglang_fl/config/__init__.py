"""Configuration: typed settings layered from env vars and YAML files (see ``settings``)."""

from pathlib import Path

from sglang_fl.config.settings import (
    CONFIG_ENV,
    ENV,
    PUBLIC_FIELDS,
    YAML_FIELDS,
    FileConfig,
    Settings,
    get_settings,
    load_settings,
    read_yaml_file,
    without_steering,
)

# Where the documented sample config lives (spec 000 copies it from here).
_CONFIG_DIR = Path(__file__).resolve().parent

__all__ = [
    "CONFIG_ENV",
    "ENV",
    "PUBLIC_FIELDS",
    "YAML_FIELDS",
    "_CONFIG_DIR",
    "FileConfig",
    "Settings",
    "get_settings",
    "load_settings",
    "read_yaml_file",
    "without_steering",
]
