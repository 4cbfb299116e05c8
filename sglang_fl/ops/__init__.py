"""Layer 2: the fused ops sglang-fl dispatches, and their bridges to SGLang's op classes."""
