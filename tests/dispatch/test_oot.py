"""OOT white/blacklists select op classes by name, a family root covering its subclasses."""

from __future__ import annotations

import pytest

from sglang_fl.config import load_settings
from sglang_fl.dispatch.oot import class_selected


class RotaryEmbedding:  # same names as SGLang's classes: selection goes by class name
    pass


class Llama3RotaryEmbedding(RotaryEmbedding):
    pass


class RMSNorm:
    pass


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, {"RotaryEmbedding": True, "Llama3RotaryEmbedding": True, "RMSNorm": True}),
        ({"SGLANG_FL_OOT_BLACKLIST": "RotaryEmbedding"},
         {"RotaryEmbedding": False, "Llama3RotaryEmbedding": False, "RMSNorm": True}),
        ({"SGLANG_FL_OOT_BLACKLIST": "Llama3RotaryEmbedding"},
         {"RotaryEmbedding": True, "Llama3RotaryEmbedding": False, "RMSNorm": True}),
        ({"SGLANG_FL_OOT_WHITELIST": "RotaryEmbedding"},
         {"RotaryEmbedding": True, "Llama3RotaryEmbedding": True, "RMSNorm": False}),
        ({"SGLANG_FL_OOT_WHITELIST": "RMSNorm"},
         {"RotaryEmbedding": False, "Llama3RotaryEmbedding": False, "RMSNorm": True}),
    ],
)  # fmt: skip
def test_class_selection(env, expected):
    settings = load_settings(env)
    classes = (RotaryEmbedding, Llama3RotaryEmbedding, RMSNorm)
    assert {cls.__name__: class_selected(cls, settings) for cls in classes} == expected
