"""Unit tests for ``sglang_fl.dispatch.selection``: ordering, filtering, strict mode.

Backends are small test doubles (real subclasses of ``Backend`` with a fixed availability and
op set). Settings come from ``load_settings(env=...)``; to make vendor names valid there,
``sglang_fl.config.settings.discover_bundles`` is monkeypatched to return the real cpu bundle
plus two test doubles of installed vendor bundles, ``alpha`` (alias ``a``) and ``beta``
(alias ``b``), whose hardware is never detected (so the cpu platform is still chosen).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

import sglang_fl.config.settings as settings_mod
from sglang_fl.backends.flagos import FlagosBackend
from sglang_fl.backends.reference import ReferenceBackend
from sglang_fl.bundles import PlatformBundle, discover_bundles
from sglang_fl.config import load_settings
from sglang_fl.dispatch.backend import (
    Availability,
    Backend,
    OpImpl,
    Refusal,
    UnloadableBackend,
)
from sglang_fl.dispatch.registry import Registry
from sglang_fl.dispatch.selection import Rejection, plan_op, vendor_filter
from sglang_fl.errors import DispatchError
from sglang_fl.ops.catalog import OP_NAMES, PRIORITY, ImplKind

ALL_OPS = tuple(OP_NAMES)


class StubBackend(Backend):
    """A backend with a fixed availability, op set and (optionally) priority."""

    def __init__(
        self,
        kind: str,
        vendor: str | None = None,
        *,
        ok: bool = True,
        reason: str = "",
        ops: tuple[str, ...] = ALL_OPS,
        priority: int | None = None,
        raises: Exception | None = None,
    ) -> None:
        self.kind = ImplKind(kind)
        self.vendor = vendor
        self._ok, self._reason, self._ops = ok, reason, ops
        self._priority, self._raises = priority, raises
        self.availability_calls = 0

    @property
    def priority(self) -> int:
        return super().priority if self._priority is None else self._priority

    def availability(self) -> Availability:
        self.availability_calls += 1
        if self._raises is not None:
            raise self._raises
        return Availability.yes() if self._ok else Availability.no(self._reason)

    def implementations(self) -> Mapping[str, OpImpl]:
        impl_id = self.impl_id
        return {op: OpImpl(bind=lambda params, i=impl_id: (lambda *a: i)) for op in self._ops}


def _vendor_bundle(tmp_path: Path, name: str, alias: str) -> PlatformBundle:
    config = tmp_path / f"{name}.yaml"
    config.write_text("", encoding="utf-8")
    return PlatformBundle(
        name=name, aliases=(alias,), vendor=name, backend_factory="x:y", detect=lambda: False,
        dist_backends=("gloo",), config_file=config, platform_class="x.Y",
    )  # fmt: skip


@pytest.fixture(autouse=True)
def vendor_bundles(monkeypatch, tmp_path):
    found = {
        "cpu": discover_bundles()["cpu"],
        "alpha": _vendor_bundle(tmp_path, "alpha", "a"),
        "beta": _vendor_bundle(tmp_path, "beta", "b"),
    }
    monkeypatch.setattr(settings_mod, "discover_bundles", lambda: found)


def settings(**env: str):
    return load_settings(env=env)


def ids(plan) -> list[str]:
    return [c.impl_id for c in plan.candidates]


def standard_backends(**overrides) -> list[StubBackend]:
    return [
        overrides.get("flagos", StubBackend("flagos")),
        overrides.get("alpha", StubBackend("vendor", "alpha")),
        overrides.get("reference", StubBackend("reference")),
    ]


# --------------------------------------------------------------------------- default orders


@pytest.mark.parametrize(
    ("prefer", "expected"),
    [
        ("flagos", ["flagos", "vendor.alpha", "reference"]),
        ("vendor", ["vendor.alpha", "flagos", "reference"]),
        ("reference", ["reference", "flagos", "vendor.alpha"]),
    ],
)
def test_default_order_per_preference(prefer, expected):
    plan = plan_op("rms_norm", settings(SGLANG_FL_PREFER=prefer), Registry(standard_backends()))
    assert ids(plan) == expected
    assert list(plan.order) == [e.split(".")[0] for e in expected]
    assert plan.rejected == () and plan.skipped == ()
    assert plan.strict is False
    assert plan.op == "rms_norm"
    # each candidate carries the backend's own implementation of this op
    assert [c.impl.bind(None)() for c in plan.candidates] == expected


def test_cpu_platform_default_prefers_reference():
    plan = plan_op("silu_and_mul", settings(), Registry(standard_backends()))
    assert ids(plan) == ["reference", "flagos", "vendor.alpha"]


# --------------------------------------------------------------------------- per-op orders


def test_per_op_order_restricts_to_listed_backends():
    s = settings(SGLANG_FL_PREFER="flagos", SGLANG_FL_PER_OP="rms_norm=reference|flagos")
    registry = Registry(standard_backends())
    plan = plan_op("rms_norm", s, registry)
    assert ids(plan) == ["reference", "flagos"]  # vendor not listed: never a candidate
    assert plan.order == ("reference", "flagos")
    assert plan.rejected == ()
    # other ops keep the global preference
    assert ids(plan_op("silu_and_mul", s, registry)) == ["flagos", "vendor.alpha", "reference"]


def test_per_op_single_backend():
    s = settings(SGLANG_FL_PER_OP="rotary_embedding=vendor")
    plan = plan_op("rotary_embedding", s, Registry(standard_backends()))
    assert ids(plan) == ["vendor.alpha"]


@pytest.mark.parametrize("token", ["vendor:beta", "vendor:b"])
def test_named_vendor_token_picks_only_that_vendor(token):
    backends = [*standard_backends(), StubBackend("vendor", "beta")]
    s = settings(SGLANG_FL_PER_OP=f"rms_norm={token}|reference")
    plan = plan_op("rms_norm", s, Registry(backends))
    assert ids(plan) == ["vendor.beta", "reference"]
    assert plan.order == ("vendor:beta", "reference")


def test_generic_vendor_token_matches_every_vendor():
    backends = [*standard_backends(), StubBackend("vendor", "beta")]
    plan = plan_op("rms_norm", settings(SGLANG_FL_PREFER="vendor"), Registry(backends))
    assert ids(plan) == ["vendor.alpha", "vendor.beta", "flagos", "reference"]


def test_token_order_beats_priority():
    backends = [StubBackend("vendor", "alpha"), StubBackend("vendor", "beta", priority=120)]
    s = settings(SGLANG_FL_PER_OP="rms_norm=vendor:alpha|vendor")
    assert ids(plan_op("rms_norm", s, Registry(backends))) == ["vendor.alpha", "vendor.beta"]


# --------------------------------------------------------------------------- priorities


def test_priority_values_match_spec():
    assert {k.value: v for k, v in PRIORITY.items()} == {
        "flagos": 150, "vendor": 100, "reference": 50,
    }  # fmt: skip
    assert FlagosBackend().priority == 150
    assert StubBackend("vendor", "alpha").priority == 100
    assert ReferenceBackend().priority == 50
    assert FlagosBackend().impl_id == "flagos"
    assert ReferenceBackend().impl_id == "reference"
    assert StubBackend("vendor", "alpha").impl_id == "vendor.alpha"


def test_higher_priority_vendor_first():
    backends = [
        StubBackend("reference"),
        StubBackend("vendor", "alpha", priority=100),
        StubBackend("vendor", "beta", priority=120),
    ]
    plan = plan_op("rms_norm", settings(SGLANG_FL_PREFER="vendor"), Registry(backends))
    assert ids(plan) == ["vendor.beta", "vendor.alpha", "reference"]


def test_equal_priority_is_ordered_by_impl_id_not_registration():
    backends = [StubBackend("vendor", "beta"), StubBackend("vendor", "alpha")]
    plan = plan_op("rms_norm", settings(SGLANG_FL_PREFER="vendor"), Registry(backends))
    assert ids(plan) == ["vendor.alpha", "vendor.beta"]


# --------------------------------------------------------------------------- vendor filters


def test_allow_vendors_filters_other_vendors():
    backends = [*standard_backends(), StubBackend("vendor", "beta")]
    s = settings(SGLANG_FL_PREFER="vendor", SGLANG_FL_ALLOW_VENDORS="beta")
    plan = plan_op("rms_norm", s, Registry(backends))
    assert ids(plan) == ["vendor.beta", "flagos", "reference"]
    expected = Rejection("vendor.alpha", "vendor 'alpha' is not in allow_vendors")
    assert plan.rejected == (expected,)
    # same token as the chosen vendor: "vendor" picked the allowed one, which is no fallback
    assert plan.skipped == ()


def test_deny_vendors_by_alias():
    s = settings(SGLANG_FL_PREFER="vendor", SGLANG_FL_DENY_VENDORS="a")
    plan = plan_op("rms_norm", s, Registry(standard_backends()))
    assert ids(plan) == ["flagos", "reference"]
    assert plan.rejected == (Rejection("vendor.alpha", "vendor 'alpha' is in deny_vendors"),)


def test_deny_wins_over_allow():
    backends = [*standard_backends(), StubBackend("vendor", "beta")]
    s = settings(SGLANG_FL_PREFER="vendor", SGLANG_FL_ALLOW_VENDORS="alpha,beta",
                 SGLANG_FL_DENY_VENDORS="alpha")  # fmt: skip
    plan = plan_op("rms_norm", s, Registry(backends))
    assert ids(plan) == ["vendor.beta", "flagos", "reference"]
    assert plan.rejected == (Rejection("vendor.alpha", "vendor 'alpha' is in deny_vendors"),)


def test_vendor_filters_do_not_touch_flagos_or_reference():
    s = settings(SGLANG_FL_PREFER="flagos", SGLANG_FL_ALLOW_VENDORS="beta")
    plan = plan_op("rms_norm", s, Registry(standard_backends()))
    assert ids(plan) == ["flagos", "reference"]
    assert plan.skipped == ()  # the rejection ranks below the first candidate


# --------------------------------------------------------------------------- availability


def test_unavailable_first_choice_is_skipped_with_reason():
    backends = standard_backends(flagos=StubBackend("flagos", ok=False, reason="no device"))
    plan = plan_op("rms_norm", settings(SGLANG_FL_PREFER="flagos"), Registry(backends))
    assert ids(plan) == ["vendor.alpha", "reference"]
    assert plan.rejected == (Rejection("flagos", "unavailable: no device"),)
    assert plan.skipped == plan.rejected


def test_unavailable_lower_choice_is_rejected_but_not_skipped():
    backends = standard_backends(flagos=StubBackend("flagos", ok=False, reason="no device"))
    plan = plan_op("rms_norm", settings(SGLANG_FL_PREFER="reference"), Registry(backends))
    assert ids(plan) == ["reference", "vendor.alpha"]
    assert plan.rejected == (Rejection("flagos", "unavailable: no device"),)
    assert plan.skipped == ()


def test_several_unavailable_are_all_skipped_in_order():
    backends = standard_backends(
        flagos=StubBackend("flagos", ok=False, reason="r-flagos"),
        alpha=StubBackend("vendor", "alpha", ok=False, reason="r-alpha"),
    )
    plan = plan_op("rms_norm", settings(SGLANG_FL_PREFER="flagos"), Registry(backends))
    assert ids(plan) == ["reference"]
    assert plan.skipped == (
        Rejection("flagos", "unavailable: r-flagos"),
        Rejection("vendor.alpha", "unavailable: r-alpha"),
    )


def test_backend_without_the_op_is_silently_not_a_candidate():
    backends = standard_backends(alpha=StubBackend("vendor", "alpha", ops=("silu_and_mul",)))
    registry = Registry(backends)
    s = settings(SGLANG_FL_PREFER="vendor")
    plan = plan_op("rms_norm", s, registry)
    assert ids(plan) == ["flagos", "reference"]
    assert plan.rejected == () and plan.skipped == ()
    assert ids(plan_op("silu_and_mul", s, registry)) == ["vendor.alpha", "flagos", "reference"]


def test_crashing_availability_probe_means_unavailable():
    broken = StubBackend("flagos", raises=RuntimeError("probe exploded"))
    plan = plan_op("rms_norm", settings(SGLANG_FL_PREFER="flagos"),
                   Registry(standard_backends(flagos=broken)))  # fmt: skip
    assert ids(plan) == ["vendor.alpha", "reference"]
    (rejection,) = plan.rejected
    assert rejection.impl_id == "flagos"
    assert rejection.reason.startswith("unavailable: availability check raised")
    assert "probe exploded" in rejection.reason


def test_unloadable_vendor_backend_reports_why():
    backends = [StubBackend("reference"), UnloadableBackend("alpha", "backend failed to load: X")]
    plan = plan_op("rms_norm", settings(SGLANG_FL_PREFER="vendor"), Registry(backends))
    assert ids(plan) == ["reference"]
    assert plan.rejected == (Rejection("vendor.alpha", "unavailable: backend failed to load: X"),)


def test_availability_is_checked_once_per_backend():
    backends = standard_backends(flagos=StubBackend("flagos", ok=False, reason="x"))
    registry = Registry(backends)
    s = settings(SGLANG_FL_PREFER="flagos")
    for _ in range(3):
        for op in ALL_OPS:
            plan_op(op, s, registry)
    assert [b.availability_calls for b in backends] == [1, 1, 1]


# --------------------------------------------------------------------------- strict mode


def test_strict_first_choice_unavailable_raises():
    backends = standard_backends(flagos=StubBackend("flagos", ok=False, reason="no GPU here"))
    s = settings(SGLANG_FL_PREFER="flagos", SGLANG_FL_STRICT="1")
    with pytest.raises(DispatchError) as info:
        plan_op("rms_norm", s, Registry(backends))
    message = str(info.value)
    for part in ("strict mode", "'rms_norm'", "'flagos'", "no GPU here"):
        assert part in message, message


def test_strict_first_choice_denied_raises_with_reason():
    s = settings(SGLANG_FL_PREFER="vendor", SGLANG_FL_STRICT="1", SGLANG_FL_DENY_VENDORS="alpha")
    with pytest.raises(DispatchError) as info:
        plan_op("silu_and_mul", s, Registry(standard_backends()))
    message = str(info.value)
    for part in ("'silu_and_mul'", "'vendor'", "vendor.alpha", "deny_vendors"):
        assert part in message, message


def test_strict_first_token_matching_nothing_raises():
    s = settings(SGLANG_FL_STRICT="1", SGLANG_FL_PER_OP="rms_norm=vendor|reference")
    backends = [StubBackend("flagos"), StubBackend("reference")]  # no vendor backend at all
    with pytest.raises(DispatchError) as info:
        plan_op("rms_norm", s, Registry(backends))
    message = str(info.value)
    for part in ("strict mode", "'rms_norm'", "'vendor'", "no registered implementation"):
        assert part in message, message


def test_strict_first_token_backend_lacking_the_op_raises():
    backends = standard_backends(flagos=StubBackend("flagos", ops=("silu_and_mul",)))
    s = settings(SGLANG_FL_STRICT="true", SGLANG_FL_PREFER="flagos")
    with pytest.raises(DispatchError, match=r"'rotary_embedding'.*'flagos'"):
        plan_op("rotary_embedding", s, Registry(backends))


def test_strict_with_usable_first_choice_keeps_the_rest():
    backends = standard_backends(alpha=StubBackend("vendor", "alpha", ok=False, reason="nope"))
    s = settings(SGLANG_FL_PREFER="flagos", SGLANG_FL_STRICT="1")
    plan = plan_op("rms_norm", s, Registry(backends))
    assert plan.strict is True
    assert ids(plan) == ["flagos", "reference"]
    assert plan.rejected == (Rejection("vendor.alpha", "unavailable: nope"),)


def test_strict_generic_vendor_token_accepts_any_available_vendor():
    backends = [
        StubBackend("vendor", "alpha", ok=False, reason="no alpha hardware"),
        StubBackend("vendor", "beta"),
        StubBackend("reference"),
    ]
    s = settings(SGLANG_FL_PREFER="vendor", SGLANG_FL_STRICT="1")
    plan = plan_op("rms_norm", s, Registry(backends))
    assert ids(plan)[0] == "vendor.beta"


# --------------------------------------------------------------------------- nothing usable


def test_nothing_usable_lists_every_reason():
    backends = [
        StubBackend("flagos", ok=False, reason="r1"),
        StubBackend("vendor", "alpha", ok=False, reason="r2"),
        StubBackend("reference", ok=False, reason="r3"),
    ]
    with pytest.raises(DispatchError) as info:
        plan_op("rms_norm", settings(SGLANG_FL_PREFER="flagos"), Registry(backends))
    message = str(info.value)
    for part in ("'rms_norm'", "flagos: unavailable: r1", "vendor.alpha: unavailable: r2",
                 "reference: unavailable: r3"):  # fmt: skip
        assert part in message, message


def test_nothing_matching_per_op_order():
    s = settings(SGLANG_FL_PER_OP="gemma_rms_norm=vendor:beta")
    with pytest.raises(DispatchError) as info:
        plan_op("gemma_rms_norm", s, Registry(standard_backends()))
    message = str(info.value)
    for part in ("'gemma_rms_norm'", "vendor:beta", "no registered implementation matches"):
        assert part in message, message


def test_nothing_usable_mixes_denied_and_unavailable():
    s = settings(SGLANG_FL_PER_OP="rms_norm=vendor|flagos", SGLANG_FL_DENY_VENDORS="alpha")
    backends = standard_backends(flagos=StubBackend("flagos", ok=False, reason="gone"))
    with pytest.raises(DispatchError) as info:
        plan_op("rms_norm", s, Registry(backends))
    message = str(info.value)
    assert "vendor.alpha: vendor 'alpha' is in deny_vendors" in message
    assert "flagos: unavailable: gone" in message
    assert "reference" not in message.split("(")[-1]  # reference was never listed


# --------------------------------------------------------------------------- refusals


def test_vendor_filter_says_why_as_a_refusal():
    s = settings(SGLANG_FL_ALLOW_VENDORS="beta")
    assert vendor_filter(StubBackend("vendor", "alpha"), s) == Refusal(
        "vendor 'alpha' is not in allow_vendors"
    )
    assert vendor_filter(StubBackend("vendor", "beta"), s) is None
    assert vendor_filter(StubBackend("flagos"), s) is None
