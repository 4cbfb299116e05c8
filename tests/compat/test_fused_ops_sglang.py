"""The fused-op part of the version adapter, against the installed SGLang."""

from __future__ import annotations

import pytest

from sglang_fl.compat import fused_ops
from sglang_fl.ops.catalog import OP_FAMILIES

pytestmark = pytest.mark.sglang


def test_every_family_root_and_common_subclasses_are_found():
    found = {family.name: fused_ops.family_classes(family) for family in OP_FAMILIES}
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
    assert fused_ops.own_path(module, "native") == module.forward_native
    assert fused_ops.own_path(module, "npu") == module.forward_npu  # defined by RMSNorm itself


def test_triton_mrope_kernel_is_the_one_sglangs_mrotary_embedding_calls():
    """The lookup follows the kernel's move (0.5.15: srt/layers/rotary_embedding/triton_kernels,
    0.5.21+: sglang.kernels.ops.attention.rotary_triton) to the very function MRotaryEmbedding's
    forward_triton calls in this release."""
    from sglang.srt.layers.rotary_embedding import mrope

    assert fused_ops.triton_mrope_kernel() is mrope.triton_mrope_fused
