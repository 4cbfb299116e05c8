"""Build this process's backend registry: the core backends plus every bundle's vendor backend."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from sglang_fl.backends.flagos import FlagosBackend
from sglang_fl.backends.reference import ReferenceBackend
from sglang_fl.bundles import PlatformBundle
from sglang_fl.dispatch.backend import Backend, UnloadableBackend
from sglang_fl.dispatch.selection import Registry

logger = logging.getLogger(__name__)


def build_registry(bundles: Mapping[str, PlatformBundle]) -> Registry:
    backends: list[Backend] = [FlagosBackend(), ReferenceBackend()]
    for bundle in bundles.values():
        if bundle.vendor is None:
            continue
        try:
            backends.append(bundle.load_backend())
        except Exception as exc:
            logger.debug("vendor backend of bundle %s failed to load", bundle.name, exc_info=True)
            backends.append(UnloadableBackend(bundle.vendor, f"backend failed to load: {exc!r}"))
    return Registry(backends)
