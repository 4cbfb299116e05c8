"""Platform bundles: the contract a platform package fulfils, and their discovery.

A bundle (``platforms/<name>/`` here, or a vendor's own distribution) advertises one
:class:`PlatformBundle` under the ``sglang_fl.platforms`` entry-point group. The core never
names a platform: it only discovers bundles, asks each whether its hardware is present, and
reads the chosen one's YAML defaults, SGLang platform class and distributed backends.

Contract for bundle authors: the object behind the entry point must be importable without
the vendor stack (no ``import torch_npu`` at module level); hardware probing belongs in
``detect`` and vendor imports in the backend factory.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING

from sglang_fl.errors import ConfigError, PlatformError, one_of

if TYPE_CHECKING:
    from sglang_fl.dispatch.backend import Backend

BUNDLE_GROUP = "sglang_fl.platforms"
DIST_BACKENDS = ("nccl", "hccl", "gloo", "flagcx")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlatformBundle:
    """What one platform contributes. Small and declarative on purpose (think pluggy hookspec).

    name:            bundle name, used by ``SGLANG_FL_PLATFORM`` and in config provenance.
    platform_class:  dotted path of the bundle's ``SRTPlatform`` subclass, handed to SGLang.
    config_file:     the platform YAML with this platform's defaults.
    detect:          cheap probe: is this platform's hardware present in this process?
    dist_backends:   distributed backends this platform supports; the first is its default.
    detect_priority: when several bundles detect their hardware, the highest wins
                     (a generic fallback such as CPU uses a low value).
    aliases:         other accepted names for the platform and its vendor (e.g. "cuda").
    vendor:          name of the vendor backend it ships (impl id ``vendor.<vendor>``), if any.
    backend_factory: ``module:attr`` of a zero-argument callable returning that
                     :class:`~sglang_fl.dispatch.backend.Backend`; imported only when needed.
    probe:           when ``detect`` is true, in words (``sglang-fl doctor`` shows it next to
                     the result, so a user sees why a bundle does or does not apply).
    """

    name: str
    platform_class: str
    config_file: Path
    detect: Callable[[], bool]
    dist_backends: tuple[str, ...]
    detect_priority: int = 0
    aliases: tuple[str, ...] = ()
    vendor: str | None = None
    backend_factory: str | None = None
    probe: str = ""

    def __post_init__(self) -> None:
        unknown = [b for b in self.dist_backends if b not in DIST_BACKENDS]
        if not self.dist_backends or unknown:
            raise PlatformError(
                f"bundle {self.name!r}: dist_backends {self.dist_backends!r} must be a non-empty "
                f"subset of {one_of(DIST_BACKENDS)}"
            )
        if (self.vendor is None) != (self.backend_factory is None):
            raise PlatformError(
                f"bundle {self.name!r}: 'vendor' and 'backend_factory' must be set together"
            )

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    def load_backend(self) -> Backend:
        """Import and build the bundle's vendor backend (only called when a policy needs it)."""
        assert self.backend_factory is not None
        module_name, _, attr = self.backend_factory.partition(":")
        factory = getattr(import_module(module_name), attr)
        return factory()


@functools.cache
def discover_bundles() -> Mapping[str, PlatformBundle]:
    """All installed bundles by name. Cached per process: installed packages do not change."""
    bundles: dict[str, PlatformBundle] = {}
    for ep in entry_points(group=BUNDLE_GROUP):
        dist = ep.dist.name if ep.dist else "?"
        try:
            obj = ep.load()
        except Exception as exc:  # a broken bundle is an installation error: say which one
            raise PlatformError(
                f"platform bundle entry point {ep.name!r} ({ep.value}, distribution {dist}) "
                f"failed to import: {exc!r}"
            ) from exc
        bundle = obj() if callable(obj) and not isinstance(obj, PlatformBundle) else obj
        if not isinstance(bundle, PlatformBundle):
            raise PlatformError(
                f"platform bundle entry point {ep.name!r} ({ep.value}) must point at a "
                f"PlatformBundle, got {type(bundle).__name__}"
            )
        if bundle.name in bundles:
            raise PlatformError(f"two installed bundles are named {bundle.name!r}")
        bundles[bundle.name] = bundle
    return bundles


def known_vendors(bundles: Mapping[str, PlatformBundle]) -> dict[str, str]:
    """Accepted vendor names (incl. aliases) mapped to the canonical vendor name."""
    names: dict[str, str] = {}
    for bundle in bundles.values():
        if bundle.vendor is not None:
            for alias in (bundle.vendor, *bundle.aliases):
                names[alias] = bundle.vendor
    return names


def find_bundle(name: str, bundles: Mapping[str, PlatformBundle], setting: str) -> PlatformBundle:
    """The bundle called ``name`` (or aliased so); a ConfigError naming ``setting`` otherwise."""
    for bundle in bundles.values():
        if name in bundle.names:
            return bundle
    accepted = one_of(n for b in bundles.values() for n in b.names)
    raise ConfigError(setting, name, accepted, "no installed platform bundle has this name")


def detect_bundle(bundles: Mapping[str, PlatformBundle]) -> PlatformBundle | None:
    """The bundle whose hardware is present (highest ``detect_priority``), None if none is."""
    found = []
    for bundle in bundles.values():
        try:
            present = bundle.detect()
        except Exception as exc:
            raise PlatformError(
                f"bundle {bundle.name!r}: hardware detection failed: {exc!r}"
            ) from exc
        if present:
            found.append(bundle)
    if not found:
        return None
    best = max(b.detect_priority for b in found)
    winners = [b for b in found if b.detect_priority == best]
    if len(winners) > 1:
        raise PlatformError(
            f"several platform bundles detected their hardware with the same priority: "
            f"{one_of(b.name for b in winners)}; set SGLANG_FL_PLATFORM to choose one"
        )
    return winners[0]
