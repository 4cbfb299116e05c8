"""The ``flagos`` backend's Triton kernels on an NVIDIA GPU: numerics, CUDA graphs, no host sync.

Runs only where CUDA and Triton are present (the GPU host; CI has no GPU and deselects the
``cuda`` marker). The numerical cases are the CPU-interpreter module's (``flagos_cases.py``,
tolerances explained there) at serving sizes: 1, 7 and 1024 tokens, hidden 4096 and odd
widths, strided rows and q/k views of a fused qkv tensor, every dtype. On top: every bound op
captured in a CUDA graph and replayed on new data, and the hot calls run under torch's
sync-debug mode ("error") while counting the caching allocator's allocations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import flagos_cases as cases
import pytest
import torch

from sglang_fl.ops.params import (
    ActivationParams,
    LayerNormParams,
    MRotaryParams,
    NormParams,
    RotaryParams,
)

pytestmark = pytest.mark.cuda


@pytest.fixture(autouse=True)
def _needs_gpu_and_triton():
    # a fixture, not a module-level skip: deselected runs (CI) then report nothing at all
    if not torch.cuda.is_available():
        pytest.skip("needs an NVIDIA GPU")
    from sglang_fl.backends.flagos import triton_unavailable_reason

    if triton_unavailable_reason():
        pytest.skip(f"flagos kernels unavailable here: {triton_unavailable_reason()}")


DTYPES = (torch.float32, torch.bfloat16, torch.float16)
TOKENS = (1, 7, 1024)
DEV = torch.device("cuda")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens", TOKENS)
@pytest.mark.parametrize(
    ("d", "layout"), [(11008, "contiguous"), (4096, "strided"), (33, "contiguous"), (1000, "3d")]
)
def test_silu_and_mul(dtype, tokens, d, layout):
    cases.check_silu_and_mul("cuda", dtype, tokens, d, layout)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens", TOKENS)
@pytest.mark.parametrize("gemma", (False, True), ids=("rms", "gemma"))
@pytest.mark.parametrize("residual", (False, True), ids=("plain", "residual"))
@pytest.mark.parametrize(
    ("hidden", "layout"), [(4096, "contiguous"), (4096, "strided"), (896, "3d"), (33, "strided")]
)
def test_norm(dtype, tokens, gemma, residual, hidden, layout):
    cases.check_norm("cuda", dtype, tokens, hidden, residual, gemma, layout)


@pytest.mark.parametrize("residual", (False, True), ids=("plain", "residual"))
def test_norm_fp32_weight_with_bf16_input(residual):
    cases.check_norm("cuda", torch.bfloat16, 1024, 4096, residual, False, "strided", torch.float32)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens", TOKENS)
@pytest.mark.parametrize("is_neox", (True, False), ids=("neox", "gptj"))
@pytest.mark.parametrize(("head_size", "rotary_dim"), [(128, 128), (128, 64), (64, 64), (80, 80)])
def test_rotary(dtype, tokens, is_neox, head_size, rotary_dim):
    cases.check_rotary(
        "cuda", dtype, tokens, head_size, rotary_dim, is_neox, "qkv", q_heads=32, k_heads=8
    )


@pytest.mark.parametrize("dtype", (torch.bfloat16, torch.float16))
@pytest.mark.parametrize("is_neox", (True, False), ids=("neox", "gptj"))
@pytest.mark.parametrize("layout", ("qkv", "qkv3d", "contiguous"))
def test_rotary_model_dtype_cache_int32_positions(dtype, is_neox, layout):
    cases.check_rotary("cuda", dtype, 7, 128, 128, is_neox, layout, torch.int32, dtype)


@pytest.mark.parametrize("tokens", (1, 1024))
def test_rotary_without_key(tokens):
    cases.check_rotary(
        "cuda", torch.bfloat16, tokens, 128, 128, True, "qkv", with_key=False, q_heads=32
    )


def test_rotary_positions_any_shape():
    cases.check_rotary_positions_2d("cuda", torch.bfloat16)


# ---- the ops of Gemma, vision-language and DeepSeek-style models ----------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens", TOKENS)
@pytest.mark.parametrize(("op", "approximate"), cases.ACTIVATIONS)
@pytest.mark.parametrize(("d", "layout"), [(9216, "contiguous"), (4304, "strided"), (33, "3d")])
def test_activation(dtype, tokens, op, approximate, d, layout):
    cases.check_activation("cuda", dtype, op, tokens, d, layout, approximate)


def test_gelu_variants_differ():
    cases.check_gelu_variants_differ("cuda")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("residual", (False, True), ids=("plain-3d", "residual"))
def test_gemma3_norm(dtype, residual):
    cases.check_gemma3_norm("cuda", dtype, residual)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens", TOKENS)
@pytest.mark.parametrize(("hidden", "layout"), [(4096, "contiguous"), (100, "strided")])
def test_norm_without_scale(dtype, tokens, hidden, layout):
    cases.check_norm_without_scale("cuda", dtype, tokens, hidden, layout)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens", TOKENS)
@pytest.mark.parametrize(("weight", "bias"), [(True, True), (True, False), (False, False)])
@pytest.mark.parametrize(("hidden", "layout"), [(1152, "contiguous"), (4096, "strided")])
def test_layer_norm(dtype, tokens, weight, bias, hidden, layout):
    cases.check_layer_norm("cuda", dtype, tokens, hidden, layout, weight, bias)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens", TOKENS)
@pytest.mark.parametrize("interleaved", (False, True), ids=("chunked", "interleaved"))
def test_mrotary(dtype, tokens, interleaved):
    cases.check_mrotary("cuda", dtype, tokens, (16, 24, 24), interleaved)


def test_mrope_sections_matter():
    cases.check_mrope_sections_matter("cuda")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens", TOKENS)
@pytest.mark.parametrize("is_neox", (False, True), ids=("interleaved", "neox"))
def test_deepseek_rotary(dtype, tokens, is_neox):
    cases.check_deepseek_rotary("cuda", dtype, tokens, is_neox)


# ---- CUDA graphs, host syncs and allocations ------------------------------------------------
# Serving shapes in bf16: 64 tokens, hidden 4096, I=11008, rope 32 q / 8 kv heads of 128; Gemma
# 3's I=9216 (gelu), SigLIP's 4304 (quick gelu) and 1152 (layer norm), Qwen2.5-VL's mrope (28 q /
# 4 kv heads of 128, sections 16/24/24).


@dataclass(frozen=True)
class OpCase:
    flagos: Callable[..., Any]  # the bound flagos callable
    reference: Callable[..., Any]  # the reference backend's, same arguments
    inputs: Callable[[], list[torch.Tensor | None]]  # fresh random arguments
    new_outputs: int  # tensors the op allocates (its returned output)


def _randn(*shape):
    return torch.randn(*shape, device=DEV).to(torch.bfloat16)


def _bind_both(op, params):
    from sglang_fl.backends.flagos import FlagosBackend
    from sglang_fl.backends.reference import ReferenceBackend

    return tuple(b().implementations()[op].bind(params) for b in (FlagosBackend, ReferenceBackend))


def _op_case(name: str, tokens: int = 64) -> OpCase:
    if name == "silu_and_mul":
        fns = _bind_both(name, ActivationParams(torch.bfloat16, DEV))
        return OpCase(*fns, lambda: [_randn(tokens, 2 * 11008)], 1)
    if name in ("gelu_and_mul", "new_gelu", "quick_gelu"):
        width = 2 * 9216 if name == "gelu_and_mul" else 4304
        fns = _bind_both(name, ActivationParams(torch.bfloat16, DEV, width, "tanh"))
        return OpCase(*fns, lambda: [_randn(tokens, width)], 1)
    if name == "layer_norm":
        weight, bias = torch.randn(1152, device=DEV), torch.randn(1152, device=DEV)
        params = LayerNormParams(weight, bias, 1e-6, 1152, torch.float32, torch.bfloat16, DEV)
        return OpCase(*_bind_both(name, params), lambda: [_randn(tokens, 1152)], 1)
    if name == "mrotary_embedding":
        cache = cases.rope_cache(128, 4096, torch.float32, "cuda")
        params = MRotaryParams(cache, 128, 128, True, (16, 24, 24), False, torch.bfloat16, DEV)
        fns = _bind_both(name, params)
        positions = lambda: torch.randint(0, 4096, (3, tokens), device=DEV)  # noqa: E731
        return OpCase(
            lambda p, qkv: fns[0](p, qkv[:, :3584], qkv[:, 3584:4096]),
            lambda p, qkv: fns[1](p, qkv[:, :3584].clone(), qkv[:, 3584:4096].clone()),
            lambda: [positions(), _randn(tokens, 36 * 128)],
            0,
        )
    if name == "rotary_embedding":
        cache = cases.rope_cache(128, 4096, torch.float32, "cuda")
        fns = _bind_both(name, RotaryParams(cache, 128, 128, True, torch.bfloat16, DEV))
        positions = lambda: torch.randint(0, 4096, (tokens,), device=DEV)  # noqa: E731
        return OpCase(
            lambda p, qkv: fns[0](p, qkv[:, :4096], qkv[:, 4096:5120]),
            lambda p, qkv: fns[1](p, qkv[:, :4096].clone(), qkv[:, 4096:5120].clone()),
            lambda: [positions(), _randn(tokens, 48 * 128)],
            0,
        )
    norm = NormParams(_randn(4096) * 0.5 + 1, 1e-6, 4096, torch.bfloat16, DEV)
    op, residual = {
        "rms_norm": ("rms_norm", False), "fused_add_rms_norm": ("rms_norm", True),
        "gemma_fused_add_rms_norm": ("gemma_rms_norm", True),
    }[name]  # fmt: skip
    fns = _bind_both(op, norm)
    inputs = lambda: [_randn(tokens, 4096), _randn(tokens, 4096) if residual else None]  # noqa: E731
    return OpCase(*fns, inputs, 0 if residual else 1)


GRAPH_OPS = (
    "silu_and_mul", "rms_norm", "fused_add_rms_norm", "gemma_fused_add_rms_norm",
    "rotary_embedding", "gelu_and_mul", "new_gelu", "quick_gelu", "layer_norm",
    "mrotary_embedding",
)  # fmt: skip


def _clones(tensors):
    return [None if t is None else t.clone() for t in tensors]


def _results(out):
    return [t for t in (out if isinstance(out, tuple) else (out,)) if t is not None]


@pytest.mark.parametrize("name", GRAPH_OPS)
def test_captured_in_a_cuda_graph_and_replayed_on_new_data(name):
    case = _op_case(name)
    static = case.inputs()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm up (compile) before capture, as SGLang does
        case.flagos(*_clones(static))
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = case.flagos(*static)
    for _ in range(2):  # each replay on new data, written into the captured inputs
        new = case.inputs()
        expected = case.reference(*_clones(new))
        for target, value in zip(static, new, strict=True):
            if target is not None:
                target.copy_(value)
        graph.replay()
        torch.cuda.synchronize()
        for got, want in zip(_results(captured), _results(expected), strict=True):
            # against SGLang-precision reference math (it rounds each step in bf16)
            torch.testing.assert_close(got.float(), want.float(), rtol=2e-2, atol=6e-2)


@pytest.mark.parametrize("name", GRAPH_OPS)
def test_hot_call_never_syncs_and_allocates_only_its_output(name):
    case = _op_case(name)
    inputs = case.inputs()
    case.flagos(*inputs)  # the first call compiles
    torch.cuda.synchronize()
    before = torch.cuda.memory_stats()["allocation.all.allocated"]
    torch.cuda.set_sync_debug_mode("error")  # any synchronising torch call raises
    try:
        out = case.flagos(*inputs)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.cuda.memory_stats()["allocation.all.allocated"] - before == case.new_outputs
    assert _results(out)
