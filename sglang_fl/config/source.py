"""Provenance of a setting: which layer (env var, user file, platform YAML, default) set it."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class SourceKind(str, enum.Enum):
    """The layers a setting can come from, highest precedence first."""

    ENV = "env"
    FILE = "file"
    PLATFORM = "platform"
    DEFAULT = "default"


@dataclass(frozen=True, eq=False)
class Source(str):
    """Where one setting's value came from: ``kind`` plus the variable, file or bundle ``name``.

    Code reads ``kind`` and ``name``; nothing splits the rendered form apart. The value is also
    the ``str`` it renders as (``env:SGLANG_FL_STRICT``, ``file:/path``, ``platform:cpu``,
    ``default``): that text is a documented interface (``sglang-fl config``, its ``--json``,
    log lines), so consumers that print, compare or serialise a source keep working unchanged.
    Equality and hashing are the string's, which is equivalent to comparing (kind, name).
    """

    kind: SourceKind
    name: str = ""

    def __new__(cls, kind: SourceKind, name: str = "") -> Source:
        return super().__new__(cls, f"{kind.value}:{name}" if name else kind.value)

    def __post_init__(self) -> None:
        if (self.kind is SourceKind.DEFAULT) == bool(self.name):
            detail = "only 'default' has no name"
            raise ValueError(f"{self.kind.value!r} source named {self.name!r}: {detail}")

    def __getnewargs__(self) -> tuple[SourceKind, str]:  # type: ignore[override]
        # pickle/copy rebuild through __new__: hand it the parts, not the rendered text
        return (self.kind, self.name)

    @classmethod
    def env(cls, variable: str) -> Source:
        return cls(SourceKind.ENV, variable)

    @classmethod
    def file(cls, path: object) -> Source:
        return cls(SourceKind.FILE, str(path))

    @classmethod
    def platform(cls, bundle: str) -> Source:
        return cls(SourceKind.PLATFORM, bundle)


DEFAULT = Source(SourceKind.DEFAULT)
