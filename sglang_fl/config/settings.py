"""The one place where sglang-fl configuration is read, validated and layered.

Sources, highest first: environment variables > the ``SGLANG_FL_CONFIG`` YAML file > the
platform bundle's YAML > built-in defaults. Each field is taken whole from the highest
source that sets it (overrides replace, never merge) and remembers where it came from.
Every other module reads the typed, frozen :class:`Settings` this module returns.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from sglang_fl.bundles import (
    DIST_BACKENDS,
    PlatformBundle,
    detect_bundle,
    discover_bundles,
    find_bundle,
    known_vendors,
)
from sglang_fl.errors import ConfigError, PlatformError, one_of
from sglang_fl.ops.catalog import CLASS_NAMES, KIND_NAMES, OP_NAMES

PREFERENCES = KIND_NAMES
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_BOOL_ACCEPTED = "1, 0, true, false, yes, no, on, off"
_ATEN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")

# Environment variables, by the settings field they feed.
ENV = {
    "prefer": "SGLANG_FL_PREFER",
    "strict": "SGLANG_FL_STRICT",
    "op_backends": "SGLANG_FL_PER_OP",
    "allow_vendors": "SGLANG_FL_ALLOW_VENDORS",
    "deny_vendors": "SGLANG_FL_DENY_VENDORS",
    "oot_enabled": "SGLANG_FL_OOT_ENABLED",
    "oot_whitelist": "SGLANG_FL_OOT_WHITELIST",
    "oot_blacklist": "SGLANG_FL_OOT_BLACKLIST",
    "use_flaggems": "USE_FLAGGEMS",
    "flagos_whitelist": "SGLANG_FL_FLAGOS_WHITELIST",
    "flagos_blacklist": "SGLANG_FL_FLAGOS_BLACKLIST",
    "dispatch_log": "SGLANG_FL_DISPATCH_LOG",
    "dist_backend": "SGLANG_FL_DIST_BACKEND",
    "platform": "SGLANG_FL_PLATFORM",
    "log_level": "SGLANG_FL_LOG_LEVEL",
    "flaggems_record": "SGLANG_FLAGGEMS_RECORD",
    "flaggems_log_path": "SGLANG_FLAGGEMS_LOG_PATH",
    "flaggems_log_once": "SGLANG_FLAGGEMS_LOG_ONCE",
    "aten_trace": "SGLANG_FL_ATEN_TRACE",
    "allow_untested_sglang": "SGLANG_FL_ALLOW_UNTESTED_SGLANG",
}
CONFIG_ENV = "SGLANG_FL_CONFIG"
FLAGCX_ENV = "FLAGCX_PATH"
KNOWN_ENV = frozenset({*ENV.values(), CONFIG_ENV, FLAGCX_ENV})
# Every variable that steers sglang-fl (ours, and SGLang's plugin/platform selection), by prefix.
STEERING_PREFIXES = ("SGLANG_FL_", "USE_FLAGGEMS", "SGLANG_FLAGGEMS_", FLAGCX_ENV,
                     "SGLANG_PLUGINS", "SGLANG_PLATFORM")  # fmt: skip


def without_steering(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` minus everything that steers sglang-fl: the base for a child process whose
    configuration the caller sets itself (benchmarks, tests)."""
    return {k: v for k, v in env.items() if not k.startswith(STEERING_PREFIXES)}


# The keys `sglang-fl config --json` prints (each also appears in `sources`).
PUBLIC_FIELDS = (
    "prefer", "strict", "op_backends", "allow_vendors", "deny_vendors", "oot_enabled",
    "oot_whitelist", "oot_blacklist", "use_flaggems", "flagos_whitelist", "flagos_blacklist",
    "dispatch_log", "dist_backend", "flagcx_path", "platform", "allow_untested_sglang",
)  # fmt: skip


class FileConfig(BaseModel):
    """Schema of a YAML config file (user file and platform YAML alike)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    prefer: Literal["flagos", "vendor", "reference"] | None = None
    strict: bool | None = None
    op_backends: dict[str, list[str] | str] | None = None
    allow_vendors: list[str] | None = None
    deny_vendors: list[str] | None = None
    oot_blacklist: list[str] | None = None
    flagos_whitelist: list[str] | None = None
    flagos_blacklist: list[str] | None = None


YAML_FIELDS = tuple(FileConfig.model_fields)


@dataclass(frozen=True)
class Settings:
    """The effective configuration of this process. Immutable; build with :func:`load_settings`."""

    prefer: str
    strict: bool
    op_backends: Mapping[str, tuple[str, ...]]
    allow_vendors: tuple[str, ...] | None
    deny_vendors: tuple[str, ...]
    oot_enabled: bool
    oot_whitelist: tuple[str, ...] | None
    oot_blacklist: tuple[str, ...]
    use_flaggems: bool
    flagos_whitelist: tuple[str, ...] | None
    flagos_blacklist: tuple[str, ...]
    dispatch_log: Path | None
    dist_backend: str
    flagcx_path: str | None  # FLAGCX_PATH as given; resolved to libflagcx.so by Layer 3
    platform: str
    log_level: str
    flaggems_record: bool
    flaggems_log_path: Path | None
    flaggems_log_once: bool
    aten_trace: Path | None
    allow_untested_sglang: bool
    config_file: Path | None
    sources: Mapping[str, str]

    def to_public_dict(self) -> dict[str, Any]:
        """The documented JSON view: PUBLIC_FIELDS plus their sources."""
        out: dict[str, Any] = {}
        for name in PUBLIC_FIELDS:
            value = getattr(self, name)
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = {k: list(v) for k, v in value.items()}
            elif isinstance(value, Path):
                value = str(value)
            out[name] = value
        out["sources"] = {name: self.sources[name] for name in PUBLIC_FIELDS}
        return out


# --------------------------------------------------------------------------- value parsers


def parse_bool(setting: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(setting, raw, _BOOL_ACCEPTED)


def parse_list(raw: str) -> tuple[str, ...]:
    """Comma-separated list; blanks around items and empty items are dropped."""
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def parse_per_op(setting: str, raw: str) -> dict[str, list[str]]:
    """``op=a|b;op2=c`` into ``{"op": ["a", "b"], "op2": ["c"]}`` (tokens checked later)."""
    result: dict[str, list[str]] = {}
    syntax = "op=token|token;op=token, e.g. rms_norm=vendor|flagos;silu_and_mul=reference"
    for part in (p.strip() for p in raw.split(";")):
        if not part:
            continue
        op, sep, tokens = part.partition("=")
        op = op.strip()
        order = [t.strip() for t in tokens.split("|")]
        if not sep or not op or any(not t for t in order):
            raise ConfigError(setting, raw, syntax, f"malformed entry {part!r}")
        if op in result:
            raise ConfigError(setting, raw, syntax, f"op {op!r} given twice")
        result[op] = order
    if not result:
        raise ConfigError(setting, raw, syntax, "no entries")
    return result


# --------------------------------------------------------------------------- semantic checks


def check_op_backends(
    setting: str, value: Mapping[str, list[str] | str], vendors: Mapping[str, str]
) -> dict[str, tuple[str, ...]]:
    """Validate op names and backend tokens; canonicalise vendor aliases in ``vendor:<name>``."""
    checked: dict[str, tuple[str, ...]] = {}
    for op, order in value.items():
        if op not in OP_NAMES:
            raise ConfigError(f"{setting} (op name)", op, one_of(OP_NAMES))
        tokens = order.split("|") if isinstance(order, str) else list(order)
        if not tokens:
            raise ConfigError(f"{setting}[{op}]", order, "a non-empty list of backend tokens")
        checked[op] = tuple(check_token(f"{setting}[{op}]", t.strip(), vendors) for t in tokens)
    return checked


def check_token(setting: str, token: str, vendors: Mapping[str, str]) -> str:
    accepted = "flagos, reference, vendor, " + ", ".join(f"vendor:{v}" for v in sorted(vendors))
    if token in PREFERENCES:
        return token
    kind, sep, name = token.partition(":")
    if kind == "vendor" and sep and name in vendors:
        return f"vendor:{vendors[name]}"
    detail = f"unknown vendor {name!r}" if kind == "vendor" and sep else "unknown backend token"
    raise ConfigError(setting, token, accepted.rstrip(", "), detail)


def check_vendors(
    setting: str, names: tuple[str, ...], vendors: Mapping[str, str]
) -> tuple[str, ...]:
    for name in names:
        if name not in vendors:
            raise ConfigError(setting, name, one_of(vendors), "unknown vendor")
    return tuple(dict.fromkeys(vendors[n] for n in names))


def check_class_names(setting: str, names: tuple[str, ...]) -> tuple[str, ...]:
    for name in names:
        if name not in CLASS_NAMES:
            raise ConfigError(setting, name, one_of(CLASS_NAMES), "unknown op class name")
    return names


def check_aten_names(setting: str, names: tuple[str, ...]) -> tuple[str, ...]:
    for name in names:
        if not _ATEN_NAME.match(name):
            raise ConfigError(setting, name, "ATen op names such as mul, rms_norm, index_put_")
    return names


def check_choice(setting: str, raw: str, choices: tuple[str, ...], *, upper: bool = False) -> str:
    value = raw.strip().upper() if upper else raw.strip()
    if value not in choices:
        raise ConfigError(setting, raw, ", ".join(choices))
    return value


def check_log_path(setting: str, raw: str) -> Path:
    path = Path(raw).expanduser()
    if not path.parent.is_dir():
        raise ConfigError(setting, raw, "a file path whose directory exists", "no such directory")
    if path.is_dir():
        raise ConfigError(setting, raw, "a file path", "this is a directory")
    return path


# --------------------------------------------------------------------------- YAML files


def read_yaml_file(path: Path, setting: str) -> FileConfig:
    """Parse and type-check one YAML config file; errors name the file and the field."""
    if not path.is_file():
        raise ConfigError(setting, str(path), "path to an existing YAML file", "file not found")
    try:
        # Unreadable is a config error too: a file mounted into a container whose user may not
        # read it, or one that is not text.
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(setting, str(path), "a readable UTF-8 YAML file", detail) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(setting, str(path), "a valid YAML mapping", f"YAML error: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(setting, str(path), "a YAML mapping of config fields at top level")
    try:
        return FileConfig.model_validate(data)
    except ValidationError as exc:
        raise _file_field_error(path, exc) from exc


def _file_field_error(path: Path, exc: ValidationError) -> ConfigError:
    err = exc.errors()[0]
    # pydantic adds union-branch labels ("str", "list[str]") to the location: drop those only
    loc = ".".join(
        [
            str(err["loc"][0]),
            *(str(p) for p in err["loc"][1:] if str(p) not in ("str", "list[str]")),
        ]
    )
    field_name = f"{path}: field '{loc}'"
    if err["type"] == "extra_forbidden":
        return ConfigError(f"{path}: key '{loc}'", err["input"], one_of(YAML_FIELDS), "unknown key")
    expected = {
        "prefer": ", ".join(PREFERENCES),
        "strict": "true or false",
        "op_backends": "a mapping of op name to a list of backend tokens",
    }.get(str(err["loc"][0]), "a list of strings")
    return ConfigError(field_name, err["input"], expected, err["msg"])


# --------------------------------------------------------------------------- layering


class _Layers:
    """Resolves one field at a time from env > user file > platform file > default."""

    def __init__(
        self,
        env: Mapping[str, str],
        user: tuple[Path, FileConfig] | None,
        platform: tuple[str, FileConfig],
    ) -> None:
        self.env = env
        self.user = user
        self.platform = platform
        self.sources: dict[str, str] = {}

    def env_value(self, field_name: str) -> str | None:
        raw = self.env.get(ENV[field_name], "")
        return raw if raw.strip() else None

    def file_value(self, field_name: str) -> tuple[Any, str] | None:
        """The value from the highest YAML layer that sets ``field_name``, with its source."""
        if self.user is not None:
            value = getattr(self.user[1], field_name)
            if value is not None:
                return value, f"file:{self.user[0]}"
        value = getattr(self.platform[1], field_name, None)
        if value is not None:
            return value, f"platform:{self.platform[0]}"
        return None

    def file_list_pair(self, white: str, black: str) -> tuple[str, Any, str] | None:
        """(field, value, source) of the highest YAML layer setting ``white`` or ``black``."""
        layers = [(self.user[1], f"file:{self.user[0]}")] if self.user else []
        layers.append((self.platform[1], f"platform:{self.platform[0]}"))
        for config, source in layers:
            white_value, black_value = getattr(config, white), getattr(config, black)
            if white_value is not None and black_value is not None:
                where = source.split(":", 1)[1]
                raise _exclusive(f"{where}: fields '{white}' and '{black}'", white_value,
                                 black_value)  # fmt: skip
            if white_value is not None:
                return white, white_value, source
            if black_value is not None:
                return black, black_value, source
        return None

    def record(self, field_name: str, source: str) -> None:
        self.sources[field_name] = source

    def env_source(self, field_name: str) -> str:
        return f"env:{ENV[field_name]}"


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build the effective :class:`Settings` from ``env`` (default: ``os.environ``).

    Raises :class:`~sglang_fl.errors.ConfigError` on the first bad value, naming it.
    """
    env = dict(os.environ if env is None else env)
    _reject_unknown_env(env)
    bundles = discover_bundles()
    vendors = known_vendors(bundles)
    bundle, platform_source = _select_platform(env, bundles)
    user = _user_file(env)
    layers = _Layers(
        env,
        user,
        (
            bundle.name,
            read_yaml_file(bundle.config_file, f"platform YAML of bundle {bundle.name!r}"),
        ),
    )
    layers.record("platform", platform_source)

    values: dict[str, Any] = {"platform": bundle.name}
    values["prefer"] = _resolve(layers, "prefer", "flagos",
        from_env=lambda s, raw: check_choice(s, raw, PREFERENCES))  # fmt: skip
    values["strict"] = _resolve(layers, "strict", False, from_env=parse_bool)
    values["op_backends"] = _resolve(layers, "op_backends", {},
        from_env=lambda s, raw: check_op_backends(s, parse_per_op(s, raw), vendors),
        from_file=lambda s, v: check_op_backends(s, v, vendors))  # fmt: skip
    values["allow_vendors"] = _resolve(layers, "allow_vendors", None,
        from_env=lambda s, raw: check_vendors(s, parse_list(raw), vendors),
        from_file=lambda s, v: check_vendors(s, tuple(v), vendors))  # fmt: skip
    values["deny_vendors"] = _resolve(layers, "deny_vendors", (),
        from_env=lambda s, raw: check_vendors(s, parse_list(raw), vendors),
        from_file=lambda s, v: check_vendors(s, tuple(v), vendors))  # fmt: skip
    values["oot_enabled"] = _resolve(layers, "oot_enabled", True, from_env=parse_bool)
    values.update(_resolve_lists(layers, "oot", check_class_names))
    values["use_flaggems"] = _resolve(layers, "use_flaggems", True, from_env=parse_bool)
    values.update(_resolve_lists(layers, "flagos", check_aten_names))
    values["dispatch_log"] = _resolve(layers, "dispatch_log", None, from_env=check_log_path)
    values["dist_backend"] = _resolve_dist_backend(layers, bundle)
    values["flagcx_path"] = _resolve_flagcx_path(layers)
    values["log_level"] = _resolve(layers, "log_level", "INFO",
        from_env=lambda s, raw: check_choice(s, raw, LOG_LEVELS, upper=True))  # fmt: skip
    values["flaggems_record"] = _resolve(layers, "flaggems_record", False, from_env=parse_bool)
    values["flaggems_log_path"] = _resolve(
        layers, "flaggems_log_path", None, from_env=check_log_path
    )
    values["flaggems_log_once"] = _resolve(layers, "flaggems_log_once", True, from_env=parse_bool)
    values["aten_trace"] = _resolve(layers, "aten_trace", None, from_env=check_log_path)
    values["allow_untested_sglang"] = _resolve(
        layers, "allow_untested_sglang", False, from_env=parse_bool
    )
    values["config_file"] = user[0] if user else None
    return Settings(**values, sources=dict(layers.sources))


def _resolve(layers: _Layers, field_name: str, default: Any, *, from_env, from_file=None) -> Any:
    raw = layers.env_value(field_name)
    if raw is not None:
        layers.record(field_name, layers.env_source(field_name))
        return from_env(ENV[field_name], raw)
    found = layers.file_value(field_name) if field_name in YAML_FIELDS else None
    if found is not None:
        value, source = found
        layers.record(field_name, source)
        setting = f"{source.split(':', 1)[1]}: field '{field_name}'"
        return from_file(setting, value) if from_file else value
    layers.record(field_name, "default")
    return default


def _exclusive(settings: str, white: object, black: object) -> ConfigError:
    """A whitelist and its blacklist set in the same place."""
    return ConfigError(settings, f"{white} / {black}",
                       "at most one of the two (they are mutually exclusive)")  # fmt: skip


def _resolve_lists(layers: _Layers, layer: str, check) -> dict[str, Any]:
    """Whitelist/blacklist pair, taken whole from the highest source that sets either list:
    env whitelist > env blacklist > the highest YAML file's whitelist or blacklist > none.

    Both env vars at once, or both fields in one YAML file, is an error; a whitelist empties
    every blacklist. (Only Layer 1 has a YAML whitelist: platforms ship measured ATen sets.)
    """
    white, black = f"{layer}_whitelist", f"{layer}_blacklist"
    raw_white, raw_black = layers.env_value(white), layers.env_value(black)
    if raw_white is not None and raw_black is not None:
        raise _exclusive(f"{ENV[white]} and {ENV[black]}", raw_white, raw_black)
    if raw_white is not None:
        source = layers.env_source(white)
        layers.record(white, source)
        layers.record(black, source)
        return {white: check(ENV[white], parse_list(raw_white)), black: ()}
    if raw_black is None and white in YAML_FIELDS:
        found = layers.file_list_pair(white, black)
        if found is not None:
            name, value, source = found
            layers.record(white, source)
            layers.record(black, source)
            setting = f"{source.split(':', 1)[1]}: field '{name}'"
            checked = check(setting, tuple(value))
            return {white: checked, black: ()} if name == white else {white: None, black: checked}
    layers.record(white, "default")
    blacklist = _resolve(layers, black, (),
        from_env=lambda s, raw: check(s, parse_list(raw)),
        from_file=lambda s, v: check(s, tuple(v)))  # fmt: skip
    return {white: None, black: blacklist}


def _resolve_dist_backend(layers: _Layers, bundle: PlatformBundle) -> str:
    raw = layers.env_value("dist_backend")
    if raw is not None:
        layers.record("dist_backend", layers.env_source("dist_backend"))
        setting = ENV["dist_backend"]
        backend = check_choice(setting, raw.lower(), DIST_BACKENDS)
    elif layers.env.get(FLAGCX_ENV, "").strip():
        layers.record("dist_backend", f"env:{FLAGCX_ENV}")
        setting, backend = FLAGCX_ENV, "flagcx"
    else:
        layers.record("dist_backend", f"platform:{bundle.name}")
        return bundle.dist_backends[0]
    if backend not in bundle.dist_backends:
        raise ConfigError(
            setting, raw or layers.env[FLAGCX_ENV], one_of(bundle.dist_backends),
            f"dist backend {backend!r} is not supported on platform {bundle.name!r}",
        )  # fmt: skip
    return backend


def _resolve_flagcx_path(layers: _Layers) -> str | None:
    """The raw ``FLAGCX_PATH`` (a directory or the library file). Only its presence is
    checked here; finding and loading the library, with the paths tried in the message,
    belongs to Layer 3 (:mod:`sglang_fl.distributed.flagcx`)."""
    raw = layers.env.get(FLAGCX_ENV, "").strip()
    layers.record("flagcx_path", f"env:{FLAGCX_ENV}" if raw else "default")
    return raw or None


def _select_platform(
    env: Mapping[str, str], bundles: Mapping[str, PlatformBundle]
) -> tuple[PlatformBundle, str]:
    forced = env.get(ENV["platform"], "").strip()
    if forced:
        return find_bundle(forced, bundles, ENV["platform"]), f"env:{ENV['platform']}"
    detected = detect_bundle(bundles)
    if detected is None:
        raise PlatformError(
            f"no installed platform bundle detected its hardware (installed: "
            f"{one_of(bundles)}); set {ENV['platform']} to force one"
        )
    return detected, "default"


def _user_file(env: Mapping[str, str]) -> tuple[Path, FileConfig] | None:
    raw = env.get(CONFIG_ENV, "").strip()
    if not raw:
        return None
    path = Path(raw).expanduser().resolve()
    return path, read_yaml_file(path, CONFIG_ENV)


def _reject_unknown_env(env: Mapping[str, str]) -> None:
    """A mistyped SGLANG_FL_* variable must not be silently ignored."""
    for name in env:
        if name.startswith("SGLANG_FL_") and name not in KNOWN_ENV:
            known = one_of(n for n in KNOWN_ENV if n.startswith("SGLANG_FL_"))
            detail = "unknown sglang-fl variable"
            raise ConfigError(name, env[name], f"known variables: {known}", detail)


@functools.cache
def get_settings() -> Settings:
    """This process's settings, read once from the environment."""
    return load_settings()
