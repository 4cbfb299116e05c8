"""The static catalogue of Layer 2: op names, the SGLang classes behind them, and backend kinds.

Every other module (settings validation, selection, backends, bridges, the CLI) takes these
names from here, so a name is spelt once: a misspelt constant is an import error, and the
registry refuses an implementation keyed by a name that is not listed here.

Kept free of torch/SGLang imports so config validation and the CLI can use it anywhere.
Class names that a given SGLang version lacks are simply not intercepted there.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

# --------------------------------------------------------------------------- op names

# Each op name is the snake_case of its root class: the op is the math (one kernel contract,
# sglang_fl/ops/params.py), the classes are SGLang's calling conventions for it.
SILU_AND_MUL = "silu_and_mul"
GELU_AND_MUL = "gelu_and_mul"
NEW_GELU = "new_gelu"
QUICK_GELU = "quick_gelu"
RMS_NORM = "rms_norm"
GEMMA_RMS_NORM = "gemma_rms_norm"
GEMMA3_RMS_NORM = "gemma3_rms_norm"
RMS_NORM_WITHOUT_SCALE = "rms_norm_without_scale"
LAYER_NORM = "layer_norm"
ROTARY_EMBEDDING = "rotary_embedding"
MROTARY_EMBEDDING = "mrotary_embedding"
DEEPSEEK_SCALING_ROTARY_EMBEDDING = "deepseek_scaling_rotary_embedding"


@dataclass(frozen=True)
class OpFamily:
    """One dispatchable op and the SGLang classes whose forward it replaces.

    ``classes[0]`` is the family root; the others are subclasses that keep the root's forward
    semantics (they only change how their state, e.g. the rotary cos/sin cache, is built).
    """

    name: str
    classes: tuple[str, ...]

    @property
    def root(self) -> str:
        return self.classes[0]


OP_FAMILIES: tuple[OpFamily, ...] = (
    # SiLU(x[..., :d]) * x[..., d:]
    OpFamily(SILU_AND_MUL, ("SiluAndMul",)),
    # GELU(x[..., :d]) * x[..., d:], exact (erf) or tanh-approximated: Gemma 1-3, Grok
    OpFamily(GELU_AND_MUL, ("GeluAndMul",)),
    # the tanh-approximated GELU of GPT-2 ("gelu_new"): GPT-2, Phi-2, GPT-J
    OpFamily(NEW_GELU, ("NewGELU",)),
    # x * sigmoid(1.702 x): CLIP/SigLIP vision towers, Qwen2-VL vision
    OpFamily(QUICK_GELU, ("QuickGELU",)),
    # RMS normalization, optionally fused with the residual add
    OpFamily(RMS_NORM, ("RMSNorm",)),
    # the same with the scale (1 + weight)
    OpFamily(GEMMA_RMS_NORM, ("GemmaRMSNorm",)),
    # Gemma 3's: the same math as GemmaRMSNorm, its own attributes and calling convention
    OpFamily(GEMMA3_RMS_NORM, ("Gemma3RMSNorm",)),
    # RMS normalization with no scale at all
    OpFamily(RMS_NORM_WITHOUT_SCALE, ("RMSNormWithoutScale",)),
    # layer normalization (optional weight and bias) in the parameters' dtype: GLM-4V, DSA
    OpFamily(LAYER_NORM, ("LayerNorm",)),
    # rotary position embedding from a cos/sin cache (neox and interleaved, partial rotary_dim)
    OpFamily(
        ROTARY_EMBEDDING,
        (
            "RotaryEmbedding",
            "LinearScalingRotaryEmbedding",
            "DynamicNTKScalingRotaryEmbedding",
            "DynamicNTKAlphaRotaryEmbedding",
            "YaRNScalingRotaryEmbedding",
            "Llama3RotaryEmbedding",
            "Gemma4RotaryEmbedding",
        ),
    ),
    # multimodal rope: [3, tokens] positions (t, h, w) over mrope sections, chunked (Qwen2-VL,
    # Qwen2.5-VL) or interleaved (Qwen3-VL); 1-D positions are plain rope
    OpFamily(
        MROTARY_EMBEDDING,
        ("MRotaryEmbedding", "YaRNScalingMRotaryEmbedding"),
    ),
    # DeepSeek's YaRN rope (mscale in the cache, interleaved pairs): DeepSeek V2/V3, Kimi K2
    OpFamily(DEEPSEEK_SCALING_ROTARY_EMBEDDING, ("DeepseekScalingRotaryEmbedding",)),
)

OP_NAMES: tuple[str, ...] = tuple(family.name for family in OP_FAMILIES)
FAMILY_BY_CLASS: dict[str, OpFamily] = {
    cls: family for family in OP_FAMILIES for cls in family.classes
}
CLASS_NAMES: tuple[str, ...] = tuple(FAMILY_BY_CLASS)

# --------------------------------------------------------------------------- backend kinds


class ImplKind(str, enum.Enum):
    """The kinds of backend. Each value is also a policy token (``prefer``, ``op_backends``)."""

    FLAGOS = "flagos"
    VENDOR = "vendor"
    REFERENCE = "reference"


# Within a kind, higher wins; spaced by 50 so future kinds can slot in between.
PRIORITY: Mapping[ImplKind, int] = {ImplKind.FLAGOS: 150, ImplKind.VENDOR: 100,
                                    ImplKind.REFERENCE: 50}  # fmt: skip
KIND_NAMES: tuple[str, ...] = tuple(kind.value for kind in ImplKind)


def default_order(prefer: str) -> tuple[str, ...]:
    """The kinds tried for ``prefer`` when no per-op order is set: the preferred kind first,
    then the others by priority (flagos > vendor > reference)."""
    preferred = ImplKind(prefer)
    ranked = sorted(ImplKind, key=lambda kind: (kind is not preferred, -PRIORITY[kind]))
    return tuple(kind.value for kind in ranked)
