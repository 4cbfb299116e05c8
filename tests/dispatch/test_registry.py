"""Unit tests for ``sglang_fl.dispatch.registry``: what registration accepts and refuses.

Backends are small test doubles; bundles are real ``PlatformBundle`` objects whose
``backend_factory`` points at a throwaway module put into ``sys.modules``.
"""

from __future__ import annotations

import subprocess
import sys
import types
from collections.abc import Mapping
from pathlib import Path

import pytest

from sglang_fl.bundles import PlatformBundle, discover_bundles
from sglang_fl.dispatch.backend import Availability, Backend, OpImpl, UnloadableBackend
from sglang_fl.dispatch.registry import RegistrationError, Registry, build_registry
from sglang_fl.errors import DispatchError
from sglang_fl.ops.catalog import OP_NAMES, ImplKind

ACCEPTED_OPS = ", ".join(sorted(OP_NAMES))  # every op of the catalogue, in order


class TableBackend(Backend):
    """A backend whose implementation table is given (or whose listing raises)."""

    def __init__(self, kind: str, vendor: str | None = None, ops=OP_NAMES, raises=None) -> None:
        self.kind = ImplKind(kind)
        self.vendor = vendor
        self._ops, self._raises = tuple(ops), raises

    def availability(self) -> Availability:
        return Availability.yes()

    def implementations(self) -> Mapping[str, OpImpl]:
        if self._raises is not None:
            raise self._raises
        return {op: OpImpl(bind=lambda params: (lambda *a: None)) for op in self._ops}


def _bundle(tmp_path: Path, vendor: str | None, factory: str | None) -> PlatformBundle:
    config = tmp_path / "acme.yaml"
    config.write_text("", encoding="utf-8")
    return PlatformBundle(
        name="acme", vendor=vendor, backend_factory=factory, detect=lambda: False,
        dist_backends=("gloo",), config_file=config, platform_class="x.Y",
    )  # fmt: skip


@pytest.fixture
def vendor_module(monkeypatch):
    """A module ``acme_backend`` whose ``make`` returns ``vendor_module.backend``."""
    module = types.ModuleType("acme_backend")
    module.backend = None
    module.make = lambda: module.backend
    monkeypatch.setitem(sys.modules, "acme_backend", module)
    return module


# --------------------------------------------------------------------------- op names


def test_the_core_backends_and_the_shipped_bundles_register():
    registry = build_registry(discover_bundles())
    ids = [b.impl_id for b in registry.backends]
    assert ids[:2] == ["flagos", "reference"]
    assert {"vendor.nvidia", "vendor.ascend"} <= set(ids)


@pytest.mark.parametrize("bad", ["rms_nrom", "RMSNorm", "fused_moe"])
def test_an_implementation_keyed_by_an_unknown_op_is_refused(bad):
    backend = TableBackend("vendor", "alpha", ops=("silu_and_mul", bad))
    with pytest.raises(RegistrationError) as info:
        Registry([backend])
    message = str(info.value)
    for part in ("'vendor.alpha'", "TableBackend", f"unknown op {bad!r}", ACCEPTED_OPS):
        assert part in message, message


def test_every_unknown_op_is_named():
    with pytest.raises(RegistrationError, match=r"unknown op 'a', 'b'; accepted"):
        Registry([TableBackend("flagos", ops=("a", "rms_norm", "b"))])


def test_a_refused_backend_is_not_registered():
    registry = Registry([TableBackend("reference")])
    with pytest.raises(RegistrationError):
        registry.register(TableBackend("flagos", ops=("rmsnorm",)))
    assert [b.impl_id for b in registry.backends] == ["reference"]


def test_a_backend_whose_listing_raises_is_refused_naming_it():
    backend = TableBackend("vendor", "alpha", raises=ImportError("no module named alpha_rt"))
    with pytest.raises(RegistrationError) as info:
        Registry([backend])
    message = str(info.value)
    for part in ("'vendor.alpha'", "alpha_rt", "must not need the vendor stack"):
        assert part in message, message
    assert isinstance(info.value.__cause__, ImportError)


def test_a_registration_error_is_a_dispatch_error():
    assert issubclass(RegistrationError, DispatchError)


def test_duplicate_backend_ids_are_refused():
    with pytest.raises(DispatchError, match="duplicate"):
        Registry([TableBackend("reference"), TableBackend("reference")])


# --------------------------------------------------------------------------- bundle vendors


def test_a_bundle_backend_with_another_vendor_is_refused(tmp_path, vendor_module):
    vendor_module.backend = TableBackend("vendor", "acme-labs")
    bundle = _bundle(tmp_path, "acme", "acme_backend:make")
    with pytest.raises(RegistrationError) as info:
        build_registry({"acme": bundle})
    message = str(info.value)
    for part in ("bundle 'acme'", "TableBackend", "vendor 'acme-labs'", "accepted",
                 "vendor 'acme'"):  # fmt: skip
        assert part in message, message


def test_a_bundle_backend_of_another_kind_is_refused(tmp_path):
    bundle = _bundle(tmp_path, "acme", "acme_backend:make")
    with pytest.raises(RegistrationError, match=r"bundle 'acme'.*kind 'reference'.*accepted"):
        Registry().register(TableBackend("reference"), bundle)


def test_a_bundle_backend_factory_returning_no_backend_is_refused(tmp_path, vendor_module):
    vendor_module.backend = object()
    with pytest.raises(RegistrationError, match=r"bundle 'acme'.*not a Backend"):
        build_registry({"acme": _bundle(tmp_path, "acme", "acme_backend:make")})


def test_a_bundle_backend_of_its_own_vendor_is_registered(tmp_path, vendor_module):
    vendor_module.backend = TableBackend("vendor", "acme")
    registry = build_registry({"acme": _bundle(tmp_path, "acme", "acme_backend:make")})
    assert [b.impl_id for b in registry.backends] == ["flagos", "reference", "vendor.acme"]
    assert registry.backends[2] is vendor_module.backend


def test_a_bundle_backend_that_fails_to_load_stands_in_with_the_reason(tmp_path):
    registry = build_registry({"acme": _bundle(tmp_path, "acme", "no_such_acme_module:make")})
    (stand_in,) = [b for b in registry.backends if b.impl_id == "vendor.acme"]
    assert isinstance(stand_in, UnloadableBackend)
    assert "backend failed to load" in registry.availability(stand_in).reason
    assert "no_such_acme_module" in registry.availability(stand_in).reason


def test_a_bundle_without_a_vendor_adds_no_backend(tmp_path):
    registry = build_registry({"acme": _bundle(tmp_path, None, None)})
    assert [b.impl_id for b in registry.backends] == ["flagos", "reference"]


# --------------------------------------------------------------------------- ranking


def test_ranked_is_by_priority_then_impl_id():
    registry = Registry([TableBackend("reference"), TableBackend("vendor", "beta"),
                         TableBackend("vendor", "alpha"), TableBackend("flagos")])  # fmt: skip
    assert [b.impl_id for b in registry.ranked()] == [
        "flagos", "vendor.alpha", "vendor.beta", "reference",
    ]  # fmt: skip


def test_the_registry_builds_without_triton():
    """Registration lists every backend's implementations, flagos's too, so that listing must
    not import Triton; flagos is then unavailable with Triton's import error as the reason."""
    code = (
        "import sys\n"
        "sys.modules['triton'] = None  # import triton -> ImportError\n"
        "from sglang_fl.bundles import discover_bundles\n"
        "from sglang_fl.dispatch.registry import build_registry\n"
        "registry = build_registry(discover_bundles())\n"
        "flagos = registry.backends[0]\n"
        f"assert sorted(flagos.implementations()) == {sorted(OP_NAMES)!r}\n"
        "reason = registry.availability(flagos).reason\n"
        "assert 'Triton cannot be imported' in reason, reason\n"
        "assert 'sglang_fl.backends.flagos.kernels' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
