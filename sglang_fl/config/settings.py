"""The one place where sglang-fl configuration is read, validated and layered.

Sources, highest first: environment variables > the ``SGLANG_FL_CONFIG`` YAML file > the
platform bundle's YAML > built-in defaults. Each field is taken whole from the highest
source that sets it (overrides replace, never merge) and remembers where it came from.
Every other module reads the typed, frozen :class:`Settings` this module returns.

Each setting is declared once, as a field of :class:`Settings` whose annotation carries its
:class:`Spec`: its env variable, whether it is a YAML field, its default, how its values are
parsed and checked (a :class:`ValueType`) and whether ``sglang-fl config --json`` shows it.
The env names (``ENV``), the YAML schema (``FileConfig``), the public keys and the resolution
all derive from that table. The rules that are more than "highest source wins" sit on top of
it: the whitelist/blacklist pairs (``blacklist=``), and the platform, ``dist_backend`` and
``flagcx_path`` resolvers (``resolve=``). The platform is chosen once per load, before
anything else is read (``_select_platform``).
"""

from __future__ import annotations

import abc
import copy
import dataclasses
import functools
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal, get_type_hints

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from sglang_fl.bundles import (
    DIST_BACKENDS,
    PlatformBundle,
    detect_bundle,
    discover_bundles,
    find_bundle,
    known_vendors,
)
from sglang_fl.config.source import DEFAULT, Source
from sglang_fl.errors import ConfigError, NoPlatformError, one_of
from sglang_fl.ops.catalog import CLASS_NAMES, KIND_NAMES, OP_NAMES, ImplKind

PREFERENCES = KIND_NAMES
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_BOOL_ACCEPTED = "1, 0, true, false, yes, no, on, off"
_ATEN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")

CONFIG_ENV = "SGLANG_FL_CONFIG"
# FlagCX's own variable (not in ENV): feeds ``flagcx_path`` and makes flagcx the default backend.
FLAGCX_ENV = "FLAGCX_PATH"
# Name prefixes reserved for sglang-fl: an unknown variable under one of them is a typo.
_RESERVED_PREFIXES = ("SGLANG_FL_", "SGLANG_FLAGGEMS_")
# Every variable that steers sglang-fl (ours, and SGLang's plugin/platform selection), by prefix.
STEERING_PREFIXES = ("SGLANG_FL_", "USE_FLAGGEMS", "SGLANG_FLAGGEMS_", FLAGCX_ENV,
                     "SGLANG_PLUGINS", "SGLANG_PLATFORM")  # fmt: skip


def without_steering(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` minus everything that steers sglang-fl: the base for a child process whose
    configuration the caller sets itself (benchmarks, tests)."""
    return {k: v for k, v in env.items() if not k.startswith(STEERING_PREFIXES)}


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
    vendor = ImplKind.VENDOR.value
    accepted = ", ".join([*sorted(PREFERENCES), *(f"{vendor}:{v}" for v in sorted(vendors))])
    if token in PREFERENCES:
        return token
    kind, sep, name = token.partition(":")
    if kind == vendor and sep and name in vendors:
        return f"{vendor}:{vendors[name]}"
    detail = f"unknown vendor {name!r}" if kind == vendor and sep else "unknown backend token"
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


# --------------------------------------------------------------------------- value types

# Accepted vendor names (incl. aliases) -> canonical vendor, from the installed bundles.
Vendors = Mapping[str, str]


class ValueType(abc.ABC):
    """How one kind of setting value is read: from an env string, and (for a setting that is
    also a YAML field) from a YAML value that pydantic has type-checked against
    :meth:`yaml_type`. Errors are :class:`ConfigError` naming ``setting``."""

    yaml_expected = ""  # what a YAML type error names as accepted

    @abc.abstractmethod
    def from_env(self, setting: str, raw: str, vendors: Vendors) -> Any:
        """The value of the env string ``raw``."""

    def yaml_type(self) -> Any:
        """The pydantic annotation of the YAML field; None where the value has no YAML form."""
        return None

    def from_yaml(self, setting: str, value: Any, vendors: Vendors) -> Any:
        """Check a type-checked YAML value; by default the type check is all there is."""
        return value


@dataclass(frozen=True)
class Flag(ValueType):
    """A boolean: ``1/0/true/false/yes/no/on/off`` in env, a YAML boolean in a file."""

    yaml_expected = "true or false"

    def from_env(self, setting: str, raw: str, vendors: Vendors) -> bool:
        return parse_bool(setting, raw)

    def yaml_type(self) -> Any:
        return bool


@dataclass(frozen=True)
class Choice(ValueType):
    """One of ``choices``; ``upper``: an env value is matched in upper case."""

    choices: tuple[str, ...]
    upper: bool = False

    @property
    def yaml_expected(self) -> str:  # type: ignore[override]
        return ", ".join(self.choices)

    def from_env(self, setting: str, raw: str, vendors: Vendors) -> str:
        return check_choice(setting, raw, self.choices, upper=self.upper)

    def yaml_type(self) -> Any:
        return Literal[self.choices]


@dataclass(frozen=True)
class OpOrders(ValueType):
    """Per-op backend orders: ``op=a|b;op2=c`` in env, a mapping of op to a list (or an
    ``a|b`` string) in a file; op names and backend tokens checked, vendor aliases made
    canonical."""

    yaml_expected = "a mapping of op name to a list of backend tokens"

    def from_env(self, setting: str, raw: str, vendors: Vendors) -> dict[str, tuple[str, ...]]:
        return check_op_backends(setting, parse_per_op(setting, raw), vendors)

    def yaml_type(self) -> Any:
        return dict[str, list[str] | str]

    def from_yaml(self, setting: str, value: Any, vendors: Vendors) -> dict[str, tuple[str, ...]]:
        return check_op_backends(setting, value, vendors)


class NameList(ValueType):
    """Names: comma-separated in env, a YAML list of strings in a file; each name checked."""

    yaml_expected = "a list of strings"

    @abc.abstractmethod
    def check(self, setting: str, names: tuple[str, ...], vendors: Vendors) -> tuple[str, ...]:
        """The checked (and, where names have aliases, canonical) names."""

    def from_env(self, setting: str, raw: str, vendors: Vendors) -> tuple[str, ...]:
        return self.check(setting, parse_list(raw), vendors)

    def yaml_type(self) -> Any:
        return list[str]

    def from_yaml(self, setting: str, value: Any, vendors: Vendors) -> tuple[str, ...]:
        return self.check(setting, tuple(value), vendors)


@dataclass(frozen=True)
class VendorNames(NameList):
    """Vendor names of installed bundles (aliases made canonical, duplicates dropped)."""

    def check(self, setting: str, names: tuple[str, ...], vendors: Vendors) -> tuple[str, ...]:
        return check_vendors(setting, names, vendors)


@dataclass(frozen=True)
class OpClassNames(NameList):
    """SGLang op class names of the catalogue (Layer 2 lists)."""

    def check(self, setting: str, names: tuple[str, ...], vendors: Vendors) -> tuple[str, ...]:
        return check_class_names(setting, names)


@dataclass(frozen=True)
class AtenNames(NameList):
    """ATen op names as FlagGems names them (Layer 1 lists)."""

    def check(self, setting: str, names: tuple[str, ...], vendors: Vendors) -> tuple[str, ...]:
        return check_aten_names(setting, names)


@dataclass(frozen=True)
class LogFile(ValueType):
    """A file to write (env only): its directory must exist and it must not be a directory."""

    def from_env(self, setting: str, raw: str, vendors: Vendors) -> Path:
        return check_log_path(setting, raw)


# --------------------------------------------------------------------------- resolution


@dataclass(frozen=True)
class PlatformChoice:
    """The platform bundle of this load and how it was chosen (forced by env, or detected)."""

    bundle: PlatformBundle
    source: Source


class _Layers:
    """One load's sources, highest first: the environment, then the YAML files (the user file,
    then the platform's), plus what the checks need; records where each setting came from."""

    def __init__(
        self,
        env: Mapping[str, str],
        files: list[tuple[Source, BaseModel]],
        vendors: Vendors,
        platform: PlatformChoice,
    ) -> None:
        self.env = env
        self.files = files
        self.vendors = vendors
        self.platform = platform
        self.sources: dict[str, Source] = {}

    def record(self, name: str, source: Source) -> None:
        self.sources[name] = source

    def env_raw(self, variable: str | None) -> str | None:
        """The variable's value as given; None if it is unset, empty or blank."""
        raw = self.env.get(variable, "") if variable else ""
        return raw if raw.strip() else None

    def resolve(self, spec: Spec) -> Any:
        """The setting from its env variable > the highest YAML file that sets it > default."""
        raw = self.env_raw(spec.env)
        if raw is not None:
            self.record(spec.name, Source.env(spec.env))
            return spec.value.from_env(spec.env, raw, self.vendors)
        for source, config in self.files if spec.yaml else ():
            value = getattr(config, spec.name)
            if value is not None:
                self.record(spec.name, source)
                return spec.value.from_yaml(_yaml_setting(source, spec.name), value, self.vendors)
        self.record(spec.name, DEFAULT)
        return copy.copy(spec.default)  # a fresh copy: Settings objects share no mutable value

    def resolve_pair(self, white: Spec, black: Spec) -> dict[str, Any]:
        """A whitelist and its blacklist, taken whole from the highest source that sets either:
        env whitelist > env blacklist > the highest YAML file's whitelist or blacklist > none.

        Both env vars at once, or both fields in one YAML file, is an error; a whitelist empties
        every blacklist. (Only Layer 1 has a YAML whitelist: platforms ship measured ATen sets;
        without one, the blacklist alone is resolved from the YAML files.)
        """
        raw_white, raw_black = self.env_raw(white.env), self.env_raw(black.env)
        if raw_white is not None and raw_black is not None:
            raise _exclusive(f"{white.env} and {black.env}", raw_white, raw_black)
        if raw_white is not None:
            source = Source.env(white.env)
            self.record(white.name, source)
            self.record(black.name, source)
            listed = white.value.from_env(white.env, raw_white, self.vendors)
            return {white.name: listed, black.name: black.default}
        if raw_black is None and white.yaml:
            found = self._yaml_pair(white, black)
            if found is not None:
                spec, value, source = found
                self.record(white.name, source)
                self.record(black.name, source)
                listed = spec.value.from_yaml(_yaml_setting(source, spec.name), value, self.vendors)
                chosen = {white.name: white.default, black.name: black.default}
                return {**chosen, spec.name: listed}
        self.record(white.name, DEFAULT)
        return {white.name: white.default, black.name: self.resolve(black)}

    def _yaml_pair(self, white: Spec, black: Spec) -> tuple[Spec, Any, Source] | None:
        """(spec, value, source) of the highest YAML file setting ``white`` or ``black``."""
        for source, config in self.files:
            white_value, black_value = getattr(config, white.name), getattr(config, black.name)
            if white_value is not None and black_value is not None:
                raise _exclusive(f"{source.name}: fields '{white.name}' and '{black.name}'",
                                 white_value, black_value)  # fmt: skip
            if white_value is not None:
                return white, white_value, source
            if black_value is not None:
                return black, black_value, source
        return None


def _yaml_setting(source: Source, field_name: str) -> str:
    """How an error names a YAML field: the user file's path or the platform bundle's name."""
    return f"{source.name}: field '{field_name}'"


def _exclusive(settings: str, white: object, black: object) -> ConfigError:
    """A whitelist and its blacklist set in the same place."""
    return ConfigError(settings, f"{white} / {black}",
                       "at most one of the two (they are mutually exclusive)")  # fmt: skip


def _resolve_platform(layers: _Layers, spec: Spec) -> str:
    """Chosen before anything else is read (see :func:`_select_platform`); recorded here."""
    layers.record(spec.name, layers.platform.source)
    return layers.platform.bundle.name


def _resolve_dist_backend(layers: _Layers, spec: Spec) -> str:
    """``SGLANG_FL_DIST_BACKEND`` > a non-empty ``FLAGCX_PATH`` (wants flagcx) > the platform
    bundle's first backend. An explicit choice must be one the bundle supports."""
    bundle = layers.platform.bundle
    raw = layers.env_raw(spec.env)
    if raw is not None:
        layers.record(spec.name, Source.env(spec.env))
        setting, backend = spec.env, spec.value.from_env(spec.env, raw.lower(), layers.vendors)
    elif layers.env_raw(FLAGCX_ENV) is not None:
        layers.record(spec.name, Source.env(FLAGCX_ENV))
        setting, backend = FLAGCX_ENV, "flagcx"
    else:
        layers.record(spec.name, Source.platform(bundle.name))
        return bundle.dist_backends[0]
    if backend not in bundle.dist_backends:
        raise ConfigError(
            setting, raw or layers.env[FLAGCX_ENV], one_of(bundle.dist_backends),
            f"dist backend {backend!r} is not supported on platform {bundle.name!r}",
        )  # fmt: skip
    return backend


def _resolve_flagcx_path(layers: _Layers, spec: Spec) -> str | None:
    """The raw ``FLAGCX_PATH`` (a directory or the library file). Only its presence is
    checked here; finding and loading the library, with the paths tried in the message,
    belongs to Layer 3 (:mod:`sglang_fl.distributed.flagcx`)."""
    raw = layers.env_raw(FLAGCX_ENV)
    layers.record(spec.name, Source.env(FLAGCX_ENV) if raw else DEFAULT)
    return raw.strip() if raw else None


# --------------------------------------------------------------------------- the field table


@dataclass(frozen=True, kw_only=True)
class Spec:
    """One setting's declaration: the metadata of its :class:`Settings` field's annotation.

    env:       the variable that sets it (None: no sglang-fl variable of its own).
    yaml:      also a field of the YAML files (same name).
    default:   the built-in value when no source sets it.
    value:     how env strings and YAML values become the value (:class:`ValueType`).
    public:    shown by ``sglang-fl config`` (text and ``--json``).
    blacklist: on a whitelist, the blacklist it pairs with (``_Layers.resolve_pair``).
    resolve:   a rule of its own instead of env > YAML files > default.
    name:      the field's name (filled in by ``_field_table``).
    """

    env: str | None = None
    yaml: bool = False
    default: Any = None
    value: ValueType | None = None
    public: bool = False
    blacklist: str | None = None
    resolve: Callable[[_Layers, Spec], Any] | None = None
    name: str = ""


@dataclass(frozen=True)
class Settings:
    """The effective configuration of this process. Immutable; build with :func:`load_settings`.

    Each field annotated with a :class:`Spec` is one row of the settings table (see the module
    docstring); ``config_file`` and ``sources`` describe the load itself.
    """

    # fmt: off
    prefer: Annotated[str, Spec(
        env="SGLANG_FL_PREFER", yaml=True, default=ImplKind.FLAGOS.value, value=Choice(PREFERENCES),
        public=True)]
    strict: Annotated[bool, Spec(
        env="SGLANG_FL_STRICT", yaml=True, default=False, value=Flag(), public=True)]
    op_backends: Annotated[Mapping[str, tuple[str, ...]], Spec(
        env="SGLANG_FL_PER_OP", yaml=True, default={}, value=OpOrders(), public=True)]
    allow_vendors: Annotated[tuple[str, ...] | None, Spec(
        env="SGLANG_FL_ALLOW_VENDORS", yaml=True, default=None, value=VendorNames(), public=True)]
    deny_vendors: Annotated[tuple[str, ...], Spec(
        env="SGLANG_FL_DENY_VENDORS", yaml=True, default=(), value=VendorNames(), public=True)]
    oot_enabled: Annotated[bool, Spec(
        env="SGLANG_FL_OOT_ENABLED", default=True, value=Flag(), public=True)]
    oot_whitelist: Annotated[tuple[str, ...] | None, Spec(
        env="SGLANG_FL_OOT_WHITELIST", default=None, value=OpClassNames(), public=True,
        blacklist="oot_blacklist")]
    oot_blacklist: Annotated[tuple[str, ...], Spec(
        env="SGLANG_FL_OOT_BLACKLIST", yaml=True, default=(), value=OpClassNames(), public=True)]
    use_flaggems: Annotated[bool, Spec(
        env="USE_FLAGGEMS", default=True, value=Flag(), public=True)]
    flagos_whitelist: Annotated[tuple[str, ...] | None, Spec(
        env="SGLANG_FL_FLAGOS_WHITELIST", yaml=True, default=None, value=AtenNames(), public=True,
        blacklist="flagos_blacklist")]
    flagos_blacklist: Annotated[tuple[str, ...], Spec(
        env="SGLANG_FL_FLAGOS_BLACKLIST", yaml=True, default=(), value=AtenNames(), public=True)]
    dispatch_log: Annotated[Path | None, Spec(
        env="SGLANG_FL_DISPATCH_LOG", default=None, value=LogFile(), public=True)]
    dist_backend: Annotated[str, Spec(
        env="SGLANG_FL_DIST_BACKEND", value=Choice(DIST_BACKENDS), public=True,
        resolve=_resolve_dist_backend)]
    # FLAGCX_PATH as given; resolved to libflagcx.so by Layer 3
    flagcx_path: Annotated[str | None, Spec(
        public=True, resolve=_resolve_flagcx_path)]
    platform: Annotated[str, Spec(
        env="SGLANG_FL_PLATFORM", public=True, resolve=_resolve_platform)]
    log_level: Annotated[str, Spec(
        env="SGLANG_FL_LOG_LEVEL", default="INFO", value=Choice(LOG_LEVELS, upper=True))]
    flaggems_record: Annotated[bool, Spec(
        env="SGLANG_FLAGGEMS_RECORD", default=False, value=Flag())]
    flaggems_log_path: Annotated[Path | None, Spec(
        env="SGLANG_FLAGGEMS_LOG_PATH", default=None, value=LogFile())]
    flaggems_log_once: Annotated[bool, Spec(
        env="SGLANG_FLAGGEMS_LOG_ONCE", default=True, value=Flag())]
    aten_trace: Annotated[Path | None, Spec(
        env="SGLANG_FL_ATEN_TRACE", default=None, value=LogFile())]
    allow_untested_sglang: Annotated[bool, Spec(
        env="SGLANG_FL_ALLOW_UNTESTED_SGLANG", default=False, value=Flag(), public=True)]
    # fmt: on
    config_file: Path | None  # the SGLANG_FL_CONFIG file (resolved), if one is set
    sources: Mapping[str, Source]

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
        out["sources"] = {name: str(self.sources[name]) for name in PUBLIC_FIELDS}
        return out


def _field_table() -> Mapping[str, Spec]:
    """The settings table: each :class:`Spec` of a Settings field, named, in field order."""
    hints = get_type_hints(Settings, include_extras=True)
    table: dict[str, Spec] = {}
    for name, hint in hints.items():
        specs = [m for m in getattr(hint, "__metadata__", ()) if isinstance(m, Spec)]
        if specs:
            table[name] = dataclasses.replace(specs[0], name=name)
    for spec in table.values():
        if spec.resolve is None and spec.value is None:
            raise TypeError(f"setting {spec.name!r} has neither a value type nor a resolver")
        if spec.yaml and (spec.value is None or spec.value.yaml_type() is None):
            raise TypeError(f"setting {spec.name!r} is a YAML field without a YAML value type")
        if spec.blacklist is not None and spec.blacklist not in table:
            raise TypeError(f"setting {spec.name!r} pairs with unknown {spec.blacklist!r}")
    return MappingProxyType(table)


FIELDS = _field_table()
# Environment variables, by the settings field they feed.
ENV = MappingProxyType({name: spec.env for name, spec in FIELDS.items() if spec.env})
KNOWN_ENV = frozenset({*ENV.values(), CONFIG_ENV, FLAGCX_ENV})
# The keys `sglang-fl config --json` prints (each also appears in `sources`).
PUBLIC_FIELDS = tuple(name for name, spec in FIELDS.items() if spec.public)
YAML_FIELDS = tuple(name for name, spec in FIELDS.items() if spec.yaml)

# Schema of a YAML config file (user file and platform YAML alike): every YAML field, optional.
FileConfig: type[BaseModel] = create_model(
    "FileConfig",
    __config__=ConfigDict(extra="forbid", strict=True),
    __module__=__name__,
    **{name: (FIELDS[name].value.yaml_type() | None, None) for name in YAML_FIELDS},
)


# --------------------------------------------------------------------------- YAML files


def read_yaml_file(path: Path, setting: str) -> BaseModel:
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
    if err["type"] == "extra_forbidden":
        return ConfigError(f"{path}: key '{loc}'", err["input"], one_of(YAML_FIELDS), "unknown key")
    value_type = FIELDS[str(err["loc"][0])].value
    assert value_type is not None  # every YAML field has one (checked by _field_table)
    return ConfigError(f"{path}: field '{loc}'", err["input"], value_type.yaml_expected, err["msg"])


# --------------------------------------------------------------------------- loading


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build the effective :class:`Settings` from ``env`` (default: ``os.environ``).

    The platform is chosen first: where none is forced or detected this raises
    :class:`~sglang_fl.errors.NoPlatformError` before anything else is checked (sglang-fl stays
    inactive there). Otherwise raises :class:`~sglang_fl.errors.ConfigError` on the first bad
    value, naming it.
    """
    env = dict(os.environ if env is None else env)
    bundles = discover_bundles()
    platform = _select_platform(env, bundles)
    if platform is None:
        raise NoPlatformError(
            f"no installed platform bundle detected its hardware (installed: "
            f"{one_of(bundles)}); set {ENV['platform']} to force one"
        )
    _reject_unknown_env(env)
    user = _user_file(env)
    layers = _Layers(env, _yaml_layers(user, platform.bundle), known_vendors(bundles), platform)
    return Settings(**_resolve_all(layers), config_file=user[0] if user else None,
                    sources=layers.sources)  # fmt: skip


def _resolve_all(layers: _Layers) -> dict[str, Any]:
    """Every setting of the table, in table order (so the first bad value is reported)."""
    values: dict[str, Any] = {}
    for spec in FIELDS.values():
        if spec.name in values:  # the blacklist of a pair, resolved with its whitelist
            continue
        if spec.blacklist is not None:
            values.update(layers.resolve_pair(spec, FIELDS[spec.blacklist]))
        elif spec.resolve is not None:
            values[spec.name] = spec.resolve(layers, spec)
        else:
            values[spec.name] = layers.resolve(spec)
    return values


def _yaml_layers(
    user: tuple[Path, BaseModel] | None, bundle: PlatformBundle
) -> list[tuple[Source, BaseModel]]:
    """The YAML files, highest first: the user file (if any), then the platform's."""
    files = [] if user is None else [(Source.file(user[0]), user[1])]
    platform_yaml = read_yaml_file(bundle.config_file, f"platform YAML of bundle {bundle.name!r}")
    return [*files, (Source.platform(bundle.name), platform_yaml)]


def _select_platform(
    env: Mapping[str, str], bundles: Mapping[str, PlatformBundle]
) -> PlatformChoice | None:
    """The one place the platform is chosen: ``SGLANG_FL_PLATFORM`` (a bundle name or alias)
    forces a bundle, else the bundle that detects its hardware; None if neither."""
    variable = ENV["platform"]
    forced = env.get(variable, "").strip()
    if forced:
        return PlatformChoice(find_bundle(forced, bundles, variable), Source.env(variable))
    detected = detect_bundle(bundles)
    return None if detected is None else PlatformChoice(detected, DEFAULT)


def _user_file(env: Mapping[str, str]) -> tuple[Path, BaseModel] | None:
    raw = env.get(CONFIG_ENV, "").strip()
    if not raw:
        return None
    path = Path(raw).expanduser().resolve()
    return path, read_yaml_file(path, CONFIG_ENV)


def _reject_unknown_env(env: Mapping[str, str]) -> None:
    """A mistyped sglang-fl variable must not be silently ignored: an unknown name under one of
    our prefixes is an error listing the known variables of that prefix."""
    for name, value in env.items():
        prefix = next((p for p in _RESERVED_PREFIXES if name.startswith(p)), None)
        if prefix is not None and name not in KNOWN_ENV:
            known = one_of(n for n in KNOWN_ENV if n.startswith(prefix))
            detail = "unknown sglang-fl variable"
            raise ConfigError(name, value, f"known variables: {known}", detail)


@functools.cache
def get_settings() -> Settings:
    """This process's settings, read once from the environment: the platform is detected once
    per process, here. Raises :class:`~sglang_fl.errors.NoPlatformError` (not cached) where no
    bundle applies; the plugin then leaves sglang-fl inactive."""
    return load_settings()
