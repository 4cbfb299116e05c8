"""The flagos backend's Triton kernels against the reference math, in Triton's interpreter on CPU.

Triton decides interpreter mode when a ``@triton.jit`` function is defined, and its own library
functions (``tl.sum``, ``tl.sigmoid``...) are defined when Triton is first imported, which in
a full run happens at collection (SGLang imports Triton). So the cases run in one spawned worker
process that sets ``TRITON_INTERPRET=1`` before anything imports Triton; this process never
enters interpreter mode, and nothing leaks into other test modules. Each test ships its case
(``flagos_cases.py``, shared with the CUDA module) to the worker and re-raises its failure.

Sizes are small (the interpreter runs every program in numpy) but cover what the kernels
branch on: 1 token, odd token counts, odd and non-power-of-2 widths, several rows per program,
strided rows, 3-D inputs, partial rotary, both rotary styles, every dtype.
"""

from __future__ import annotations

import multiprocessing
import os

import flagos_cases as cases
import pytest
import torch

DTYPES = (torch.float32, torch.bfloat16, torch.float16)
CASE_TIMEOUT_S = 120


def _enter_interpreter_mode() -> None:  # the worker's initializer, before any Triton import
    os.environ["TRITON_INTERPRET"] = "1"


@pytest.fixture(scope="module")
def interpreter():
    """Runs a case in the interpreter worker: ``interpreter(check, *args)``."""
    pytest.importorskip("triton", reason="missing dependency: triton is not installed")
    with multiprocessing.get_context("spawn").Pool(1, initializer=_enter_interpreter_mode) as pool:

        def run(check, *args):
            pool.apply_async(check, ("cpu", *args)).get(timeout=CASE_TIMEOUT_S)

        yield run


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("tokens", "d", "layout"),
    [(1, 1000, "contiguous"), (7, 1000, "strided"), (5, 33, "contiguous"), (6, 96, "3d"),
     (3, 2200, "strided"), (65, 1000, "strided"), (64, 96, "3d")],  # >= 64 rows: large blocks
)  # fmt: skip
def test_silu_and_mul(interpreter, dtype, tokens, d, layout):
    interpreter(cases.check_silu_and_mul, dtype, tokens, d, layout)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gemma", (False, True), ids=("rms", "gemma"))
@pytest.mark.parametrize("residual", (False, True), ids=("plain", "residual"))
@pytest.mark.parametrize(
    ("tokens", "hidden", "layout"),
    [(1, 4096, "contiguous"), (7, 896, "strided"), (5, 1000, "contiguous"), (6, 100, "3d")],
)  # fmt: skip
def test_norm(interpreter, dtype, gemma, residual, tokens, hidden, layout):
    interpreter(cases.check_norm, dtype, tokens, hidden, residual, gemma, layout)


@pytest.mark.parametrize("residual", (False, True), ids=("plain", "residual"))
def test_norm_fp32_weight_with_bf16_input(interpreter, residual):
    interpreter(cases.check_norm, torch.bfloat16, 3, 896, residual, False, "strided", torch.float32)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("is_neox", (True, False), ids=("neox", "gptj"))
@pytest.mark.parametrize(("head_size", "rotary_dim"), [(128, 128), (128, 64), (64, 48), (80, 80)])
def test_rotary(interpreter, dtype, is_neox, head_size, rotary_dim):
    interpreter(cases.check_rotary, dtype, 3, head_size, rotary_dim, is_neox)


@pytest.mark.parametrize("dtype", (torch.bfloat16, torch.float16))
@pytest.mark.parametrize("is_neox", (True, False), ids=("neox", "gptj"))
@pytest.mark.parametrize("layout", ("qkv", "qkv3d", "contiguous"))
def test_rotary_model_dtype_cache_int32_positions(interpreter, dtype, is_neox, layout):
    interpreter(
        cases.check_rotary, dtype, 5, 64, 64, is_neox, layout, torch.int32, dtype
    )  # fmt: skip


@pytest.mark.parametrize("is_neox", (True, False), ids=("neox", "gptj"))
@pytest.mark.parametrize("tokens", (1, 9))
def test_rotary_without_key(interpreter, is_neox, tokens):
    interpreter(
        cases.check_rotary, torch.bfloat16, tokens, 64, 32, is_neox, "qkv", torch.int64,
        torch.float32, False,
    )  # fmt: skip


def test_rotary_many_heads_one_token(interpreter):
    # more q heads than one head block, a k block of its own, 1 token
    interpreter(
        cases.check_rotary, torch.bfloat16, 1, 64, 64, True, "qkv", torch.int64, torch.float32,
        True, 19, 3,
    )  # fmt: skip


def test_rotary_positions_any_shape(interpreter):
    interpreter(cases.check_rotary_positions_2d, torch.float32)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("op", "approximate"), cases.ACTIVATIONS)
@pytest.mark.parametrize(
    ("tokens", "d", "layout"),
    [(1, 1000, "contiguous"), (7, 33, "strided"), (6, 96, "3d"), (65, 100, "strided")],
)  # fmt: skip
def test_activation(interpreter, dtype, op, approximate, tokens, d, layout):
    interpreter(cases.check_activation, dtype, op, tokens, d, layout, approximate)


def test_gelu_variants_differ(interpreter):
    interpreter(cases.check_gelu_variants_differ)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("residual", (False, True), ids=("plain-3d", "residual"))
def test_gemma3_norm(interpreter, dtype, residual):
    interpreter(cases.check_gemma3_norm, dtype, residual)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("tokens", "hidden", "layout"), [(1, 4096, "contiguous"), (7, 100, "strided"), (6, 64, "3d")]
)
def test_norm_without_scale(interpreter, dtype, tokens, hidden, layout):
    interpreter(cases.check_norm_without_scale, dtype, tokens, hidden, layout)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("weight", "bias"), [(True, True), (True, False), (False, False)])
@pytest.mark.parametrize(
    ("tokens", "hidden", "layout"), [(1, 1152, "contiguous"), (7, 100, "strided"), (6, 96, "3d")]
)
def test_layer_norm(interpreter, dtype, weight, bias, tokens, hidden, layout):
    interpreter(cases.check_layer_norm, dtype, tokens, hidden, layout, weight, bias)


def test_layer_norm_params_in_the_input_dtype(interpreter):
    interpreter(cases.check_layer_norm, torch.bfloat16, 5, 200, "contiguous", True, True,
                torch.bfloat16)  # fmt: skip


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("interleaved", (False, True), ids=("chunked", "interleaved"))
@pytest.mark.parametrize(("tokens", "section"), [(1, (16, 24, 24)), (5, (8, 12, 12))])
def test_mrotary(interpreter, dtype, interleaved, tokens, section):
    interpreter(cases.check_mrotary, dtype, tokens, section, interleaved)


@pytest.mark.parametrize("is_neox", (True, False), ids=("neox", "gptj"))
def test_mrotary_flat_positions_and_partial_rotary(interpreter, is_neox):
    # [T] positions: plain rope; the rotary part (2 * 32) is half of the 128-dim heads
    interpreter(cases.check_mrotary, torch.bfloat16, 4, (8, 12, 12), False, is_neox, 128, True)


def test_mrope_sections_matter(interpreter):
    interpreter(cases.check_mrope_sections_matter)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("is_neox", (False, True), ids=("interleaved", "neox"))
@pytest.mark.parametrize("tokens", (1, 7))
def test_deepseek_rotary(interpreter, dtype, is_neox, tokens):
    interpreter(cases.check_deepseek_rotary, dtype, tokens, is_neox)
