"""``sglang_fl.ops.report`` (what ``sglang-fl ops`` prints) agrees with selection."""

from __future__ import annotations

import pytest

from sglang_fl.bundles import discover_bundles
from sglang_fl.config import load_settings
from sglang_fl.dispatch.registry import build_registry
from sglang_fl.dispatch.selection import op_order, plan_op
from sglang_fl.ops.catalog import OP_NAMES
from sglang_fl.ops.report import ops_report

ENV = {"SGLANG_FL_PREFER": "vendor", "SGLANG_FL_PER_OP": "rms_norm=reference|flagos"}


@pytest.fixture
def env(monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    return load_settings(env=ENV)


def test_op_order_is_the_per_op_entry_else_the_preference_default(env):
    assert op_order("rms_norm", env) == ("reference", "flagos")
    assert op_order("silu_and_mul", env) == ("vendor", "flagos", "reference")


def test_report_shows_the_order_and_choice_selection_plans(env):
    registry = build_registry(discover_bundles())
    ops = {op["op"]: op for op in ops_report()["ops"]}
    assert set(ops) == set(OP_NAMES)
    for name in OP_NAMES:
        plan = plan_op(name, env, registry)
        assert ops[name]["order"] == list(plan.order) == list(op_order(name, env))
        assert ops[name]["chosen"] == plan.candidates[0].impl_id
    assert ops["rms_norm"]["order"] == ["reference", "flagos"]
    assert ops["silu_and_mul"]["order"] == ["vendor", "flagos", "reference"]


def test_report_lists_backends_by_priority_then_impl_id(env):
    registry = build_registry(discover_bundles())
    ranked = [b.impl_id for b in registry.ranked()]
    for op in ops_report()["ops"]:
        listed = [i["impl_id"] for i in op["implementations"]]
        assert listed == [i for i in ranked if i in listed]
        assert listed[0] == "flagos" and listed[-1] == "reference"
