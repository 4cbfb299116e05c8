"""The SGLang version adapter, against the installed SGLang."""

from __future__ import annotations

import pytest
from packaging.version import Version

from sglang_fl import compat
from sglang_fl.errors import UnsupportedSGLangError
from sglang_fl.ops.catalog import OP_FAMILIES

pytestmark = pytest.mark.sglang


@pytest.mark.parametrize("version", ["0.5.14", "0.5.22", "0.6.0", "0.4.9"])
def test_unsupported_version_names_the_range(monkeypatch, version):
    monkeypatch.setattr(compat, "sglang_version", lambda: Version(version))
    with pytest.raises(UnsupportedSGLangError) as info:
        compat.check_version()
    assert f"sglang {version} is installed" in str(info.value)
    assert ">=0.5.15, <=0.5.21" in str(info.value)


def test_installed_version_is_supported():
    assert compat.check_version() in (Version("0.5.15"), Version("0.5.21"))


def test_every_family_root_and_common_subclasses_are_found():
    found = {family.name: compat.family_classes(family) for family in OP_FAMILIES}
    assert set(found["rms_norm"]) == {"RMSNorm"}
    assert set(found["silu_and_mul"]) == {"SiluAndMul"}
    assert set(found["gemma_rms_norm"]) == {"GemmaRMSNorm"}
    assert {"RotaryEmbedding", "Llama3RotaryEmbedding", "YaRNScalingRotaryEmbedding",
            "LinearScalingRotaryEmbedding", "DynamicNTKScalingRotaryEmbedding"} <= set(
        found["rotary_embedding"])  # fmt: skip
    # subclasses with their own forward semantics are never intercepted
    from sglang.srt.layers.rotary_embedding import MRotaryEmbedding

    assert MRotaryEmbedding not in found["rotary_embedding"].values()


def test_own_path_is_sglangs_platform_method_or_native():
    from sglang.srt.layers.layernorm import RMSNorm

    module = RMSNorm(8)
    assert compat.own_path(module, "native") == module.forward_native
    assert compat.own_path(module, "npu") == module.forward_npu  # defined by RMSNorm itself
