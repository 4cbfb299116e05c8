"""The catalogue (``sglang_fl.ops.catalog``): the one definition of op names and backend kinds."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from sglang_fl.config.settings import PREFERENCES
from sglang_fl.ops import catalog
from sglang_fl.ops.bridges import BRIDGES


def test_importing_the_catalogue_and_settings_imports_neither_torch_nor_sglang():
    code = (
        "import sys, sglang_fl.ops.catalog, sglang_fl.config.settings\n"
        "bad = [m for m in ('torch', 'sglang') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_kinds_are_the_spec_tokens_and_the_accepted_preferences():
    assert catalog.KIND_NAMES == ("flagos", "vendor", "reference")
    assert PREFERENCES == catalog.KIND_NAMES


@pytest.mark.parametrize(
    ("prefer", "expected"),
    [
        ("flagos", ("flagos", "vendor", "reference")),
        ("vendor", ("vendor", "flagos", "reference")),
        ("reference", ("reference", "flagos", "vendor")),
    ],
)
def test_default_order_per_preference_is_the_spec_table(prefer, expected):
    assert catalog.default_order(prefer) == expected


def test_default_order_refuses_an_unknown_kind():
    with pytest.raises(ValueError, match="'gpu'"):
        catalog.default_order("gpu")


def test_op_names_are_the_spec_names_and_every_op_has_a_bridge():
    spec = ("silu_and_mul", "rms_norm", "gemma_rms_norm", "rotary_embedding")
    assert set(spec) <= set(catalog.OP_NAMES)
    assert spec == (catalog.SILU_AND_MUL, catalog.RMS_NORM, catalog.GEMMA_RMS_NORM,
                    catalog.ROTARY_EMBEDDING)  # fmt: skip
    assert set(BRIDGES) == set(catalog.OP_NAMES)
    assert all(BRIDGES[op].op == op for op in catalog.OP_NAMES)


def test_each_op_name_is_the_snake_case_of_its_root_class():
    def snake(name: str) -> str:
        # RMSNorm -> rms_norm, NewGELU -> new_gelu; a one-letter prefix stays on its word as in
        # FlagOS' names: MRotaryEmbedding -> mrotary_embedding
        words = re.findall(r"[A-Z]+[0-9]*(?=[A-Z][a-z]|$)|[A-Z]?[a-z]+[0-9]*", name)
        if len(words) > 1 and len(words[0]) == 1:
            words = [words[0] + words[1], *words[2:]]
        return "_".join(word.lower() for word in words)

    assert {f.name: snake(f.root) for f in catalog.OP_FAMILIES} == {
        f.name: f.name for f in catalog.OP_FAMILIES
    }
    assert len(set(catalog.OP_NAMES)) == len(catalog.OP_NAMES)


def test_every_class_name_maps_to_its_family():
    for family in catalog.OP_FAMILIES:
        assert family.root == family.classes[0]
        assert all(catalog.FAMILY_BY_CLASS[cls] is family for cls in family.classes)
    assert len(catalog.CLASS_NAMES) == sum(len(f.classes) for f in catalog.OP_FAMILIES)
