"""The static catalogue of fused ops: op names (used in policies) and SGLang class names.

Kept free of torch/SGLang imports so config validation and the CLI can use it anywhere.
Class names that a given SGLang version lacks are simply not intercepted there.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OpFamily:
    """One dispatchable op and the SGLang classes whose forward it replaces.

    ``classes[0]`` is the family root; the others are subclasses that keep the root's forward
    semantics (they only change how their state, e.g. the rotary cos/sin cache, is built).
    """

    name: str
    classes: tuple[str, ...]
    description: str

    @property
    def root(self) -> str:
        return self.classes[0]


OP_FAMILIES: tuple[OpFamily, ...] = (
    OpFamily("silu_and_mul", ("SiluAndMul",), "SiLU(x[..., :d]) * x[..., d:]"),
    OpFamily(
        "rms_norm",
        ("RMSNorm",),
        "RMS normalization, optionally fused with the residual add",
    ),
    OpFamily(
        "gemma_rms_norm",
        ("GemmaRMSNorm",),
        "Gemma RMS normalization (scale 1 + weight), optionally fused with the residual add",
    ),
    OpFamily(
        "rotary_embedding",
        (
            "RotaryEmbedding",
            "LinearScalingRotaryEmbedding",
            "DynamicNTKScalingRotaryEmbedding",
            "DynamicNTKAlphaRotaryEmbedding",
            "YaRNScalingRotaryEmbedding",
            "Llama3RotaryEmbedding",
            "Gemma4RotaryEmbedding",
        ),
        "rotary position embedding from a cos/sin cache (neox and interleaved, partial rotary_dim)",
    ),
)

OPS_BY_NAME: dict[str, OpFamily] = {family.name: family for family in OP_FAMILIES}
OP_NAMES: tuple[str, ...] = tuple(OPS_BY_NAME)
FAMILY_BY_CLASS: dict[str, OpFamily] = {
    cls: family for family in OP_FAMILIES for cls in family.classes
}
CLASS_NAMES: tuple[str, ...] = tuple(FAMILY_BY_CLASS)
