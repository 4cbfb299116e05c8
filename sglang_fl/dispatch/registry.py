"""The backends of this process: the core backends plus every bundle's vendor backend.

Registration checks what would otherwise fail silently later: an implementation keyed by a
name that is no catalogue op would never be a candidate, and a vendor backend whose vendor is
not its bundle's would be matched, allowed and denied under the wrong name.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Mapping

from sglang_fl.backends.flagos import FlagosBackend
from sglang_fl.backends.reference import ReferenceBackend
from sglang_fl.bundles import PlatformBundle
from sglang_fl.dispatch.backend import Availability, Backend, ImplKind, UnloadableBackend
from sglang_fl.errors import DispatchError, one_of
from sglang_fl.ops.catalog import OP_NAMES

logger = logging.getLogger(__name__)


class RegistrationError(DispatchError):
    """A backend breaks a registry rule: not a Backend, a duplicate id, an implementation keyed
    by an unknown op name, or a vendor other than its bundle's."""


class Registry:
    """The backends known to this process, each checked at registration, with each one's
    availability checked once."""

    def __init__(self, backends: Iterable[Backend] = ()) -> None:
        self._backends: list[Backend] = []
        for backend in backends:
            self.register(backend)

    @property
    def backends(self) -> tuple[Backend, ...]:
        return tuple(self._backends)

    def ranked(self) -> list[Backend]:
        """Highest priority first; equal priorities by impl id, never by registration order."""
        return sorted(self._backends, key=lambda b: (-b.priority, b.impl_id))

    def register(self, backend: Backend, bundle: PlatformBundle | None = None) -> None:
        """Add ``backend`` (the vendor backend ``bundle`` ships, if given) after checking it."""
        if not isinstance(backend, Backend):
            source = f"bundle {bundle.name!r}: its backend factory" if bundle else "registry"
            raise RegistrationError(f"{source} got {backend!r}, which is not a Backend")
        if bundle is not None:
            _check_bundle_vendor(backend, bundle)
        _check_op_names(backend)
        ids = [b.impl_id for b in self._backends]
        if backend.impl_id in ids:
            raise RegistrationError(f"duplicate backend ids registered: {[*ids, backend.impl_id]}")
        self._backends.append(backend)

    @functools.cache  # noqa: B019 - one registry per process; the cache is the point
    def availability(self, backend: Backend) -> Availability:
        try:
            return backend.availability()
        except Exception as exc:  # a crashing probe means "not available", with the reason
            return Availability.no(f"availability check raised {exc!r}")


def _check_op_names(backend: Backend) -> None:
    try:
        names = list(backend.implementations())
    except Exception as exc:
        raise RegistrationError(
            f"backend {backend.impl_id!r} ({type(backend).__name__}): listing its "
            f"implementations raised {exc!r}; implementations() must not need the vendor "
            f"stack (bind may import it)"
        ) from exc
    unknown = [name for name in names if name not in OP_NAMES]
    if unknown:
        raise RegistrationError(
            f"backend {backend.impl_id!r} ({type(backend).__name__}) implements unknown op "
            f"{', '.join(map(repr, unknown))}; accepted: {one_of(OP_NAMES)}"
        )


def _check_bundle_vendor(backend: Backend, bundle: PlatformBundle) -> None:
    if backend.kind is not ImplKind.VENDOR or backend.vendor != bundle.vendor:
        raise RegistrationError(
            f"bundle {bundle.name!r}: its backend {type(backend).__name__} is of kind "
            f"{backend.kind.value!r} with vendor {backend.vendor!r}; accepted: kind 'vendor' "
            f"with the bundle's vendor {bundle.vendor!r}"
        )


def build_registry(bundles: Mapping[str, PlatformBundle]) -> Registry:
    """The core backends, then each bundle's vendor backend (a stand-in that says why, where
    the backend cannot be loaded)."""
    registry = Registry([FlagosBackend(), ReferenceBackend()])
    for bundle in bundles.values():
        if bundle.vendor is None:
            continue
        try:
            backend = bundle.load_backend()
        except Exception as exc:
            logger.debug("vendor backend of bundle %s failed to load", bundle.name, exc_info=True)
            backend = UnloadableBackend(bundle.vendor, f"backend failed to load: {exc!r}")
        registry.register(backend, bundle)
    return registry
