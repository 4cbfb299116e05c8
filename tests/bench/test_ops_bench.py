"""``sglang-fl bench ops`` without a GPU: the cases (serving shapes, inputs, bytes counted),
SGLang's own path as the baseline where no vendor kernel takes a case, the result rows and
the table that names each row's baseline. The timing itself needs a GPU and is not run here.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest
import torch

from sglang_fl.backends.reference import ReferenceBackend
from sglang_fl.bench import cli as bench_cli
from sglang_fl.bench import ops_bench
from sglang_fl.cli import main
from sglang_fl.dispatch.backend import Availability, Backend, ImplKind, OpImpl
from sglang_fl.ops.catalog import (
    DEEPSEEK_SCALING_ROTARY_EMBEDDING,
    LAYER_NORM,
    MROTARY_EMBEDDING,
    NEW_GELU,
    OP_NAMES,
    QUICK_GELU,
    ROTARY_EMBEDDING,
)

CPU = torch.device("cpu")
REFERENCE = ReferenceBackend().implementations()
TOKENS = 3


@pytest.fixture(scope="module")
def cases() -> dict[str, ops_bench.Case]:
    return {case.op: case for case in ops_bench.cases(TOKENS, torch.bfloat16, CPU)}


def test_every_op_has_cases_at_the_serving_shapes(cases):
    assert {case.contract_op for case in cases.values()} == set(OP_NAMES)
    assert {case.tokens for case in cases.values()} == {TOKENS}
    for name in ("gelu_and_mul I=9216", "gelu_and_mul I=24576", "gelu_and_mul I=14336",
                 "gemma3_rms_norm h=2304", "gemma3_rms_norm h=3072", "gemma3_rms_norm h=3584",
                 "gemma3_rms_norm residual h=3584", "new_gelu w=10240", "quick_gelu w=4304",
                 "layer_norm h=1152", "rms_norm_without_scale", MROTARY_EMBEDDING,
                 DEEPSEEK_SCALING_ROTARY_EMBEDDING):  # fmt: skip
        assert name in cases, name
    assert cases["gelu_and_mul I=9216"].params.approximate == "tanh"  # Gemma 2/3's
    layer_norm = cases["layer_norm h=1152"].params
    assert (layer_norm.dtype, layer_norm.compute_dtype) == (torch.bfloat16, torch.float32)
    assert layer_norm.weight is not None and layer_norm.bias is not None


def test_mrope_case_is_qwen2_5_vl_on_3xt_positions_and_qkv_slices(cases):
    case = cases[MROTARY_EMBEDDING]
    assert case.params.mrope_section == (16, 24, 24) and not case.params.interleaved
    assert (case.params.head_size, case.params.rotary_dim) == (128, 128)
    assert case.params.cos_sin_cache.dtype == torch.float32
    positions, q, k = case.inputs()
    assert positions.shape == (3, TOKENS)
    assert q.shape == (TOKENS, 28 * 128) and k.shape == (TOKENS, 4 * 128)
    assert q.stride(0) == k.stride(0) == (28 + 2 * 4) * 128  # views of one fused qkv tensor


def test_deepseek_case_is_mla_rope_slices(cases):
    case = cases[DEEPSEEK_SCALING_ROTARY_EMBEDDING]
    assert (case.params.head_size, case.params.rotary_dim) == (64, 64)
    assert not case.params.is_neox_style  # DeepSeek's own (interleaved) style
    assert case.params.cos_sin_cache.dtype == torch.float32
    positions, q_pe, k_pe = case.inputs()
    assert positions.shape == (TOKENS,)
    assert q_pe.shape == (TOKENS, 16, 64) and q_pe.stride()[1:] == (128 + 64, 1)
    assert k_pe.shape == (TOKENS, 1, 64) and k_pe.stride(0) == 512 + 64


def _tensor_bytes(*tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def test_bytes_moved_count_each_tensor_read_and_written_once(cases):
    """Activations and norms: the inputs read plus the outputs written (weights aside)."""
    for name, case in cases.items():
        if case.contract_op in (ROTARY_EMBEDDING, MROTARY_EMBEDDING,
                                DEEPSEEK_SCALING_ROTARY_EMBEDDING):  # fmt: skip
            continue
        inputs = case.inputs()
        out = case.call(REFERENCE[case.contract_op].bind(case.params), inputs)()
        outputs = out if isinstance(out, tuple) else (out,)
        assert case.bytes_moved == _tensor_bytes(*inputs, *outputs), name


def test_rotary_bytes_moved_count_q_k_positions_and_one_cache_row(cases):
    """q and k read and written, the positions (int64) read, rotary_dim fp32 cos/sin values
    gathered per token (for mrope, each frequency from one of the three rows)."""
    for name in (ROTARY_EMBEDDING, MROTARY_EMBEDDING, DEEPSEEK_SCALING_ROTARY_EMBEDDING):
        case = cases[name]
        positions, q, k = case.inputs()
        expected = 2 * _tensor_bytes(q, k) + _tensor_bytes(positions)
        expected += TOKENS * case.params.rotary_dim * 4
        assert case.bytes_moved == expected, name


def _same(actual, expected):
    if isinstance(expected, tuple):
        assert isinstance(actual, tuple) and len(actual) == len(expected)
        for a, e in zip(actual, expected, strict=True):
            _same(a, e)
        return
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


@pytest.mark.sglang
def test_sglangs_own_path_matches_the_reference_on_every_case(cases):
    """The baseline built from SGLang's real classes computes what the contract says (bit for
    bit: the reference follows forward_native), on the case's own weights and cache."""
    for case in cases.values():
        inputs = case.inputs()
        native = ops_bench.sglang_forward(case.contract_op, case.params)
        reference = REFERENCE[case.contract_op].bind(case.params)
        clones = tuple(t.clone() for t in inputs)
        _same(case.call(native, inputs)(), case.call(reference, clones)())


class FakeVendor(Backend):
    """A vendor backend that takes everything but ``refused``."""

    kind = ImplKind.VENDOR
    vendor = "fake"

    def __init__(self, refused: tuple[str, ...]) -> None:
        self._refused = refused

    def availability(self) -> Availability:
        return Availability.yes()

    def implementations(self) -> Mapping[str, OpImpl]:
        def supports(op):
            return lambda params: f"no kernel for {op}" if op in self._refused else None

        return {op: OpImpl(impl.bind, supports=supports(op)) for op, impl in REFERENCE.items()}


@pytest.mark.sglang
def test_the_baseline_is_the_vendor_kernel_else_sglangs_own_path(cases):
    backends = {"vendor.fake": FakeVendor(refused=(NEW_GELU, QUICK_GELU))}
    for name, case in cases.items():
        bound = ops_bench.bind_implementations(case, backends, gems={})
        if case.contract_op in (NEW_GELU, QUICK_GELU):
            assert set(bound) == {ops_bench.NATIVE}, name
            assert ops_bench.baseline_of(bound) == ops_bench.NATIVE
        else:
            assert set(bound) == {"vendor.fake"}, name  # SGLang's path is not timed then
            assert ops_bench.baseline_of(bound) == "vendor.fake"


def test_baseline_of_prefers_a_vendor_and_needs_one_of_the_two():
    assert ops_bench.baseline_of({"flagos": 1, "vendor.a": 2, ops_bench.NATIVE: 3}) == "vendor.a"
    assert ops_bench.baseline_of({"flagos": 1, ops_bench.NATIVE: 3}) == ops_bench.NATIVE
    assert ops_bench.baseline_of({"flagos": 1, "flaggems": 2}) is None


def test_result_rows_name_their_baseline_and_ratio_against_it(cases, monkeypatch):
    monkeypatch.setattr(ops_bench, "same_size_copy_us", lambda bytes_moved: 1.0)
    case = cases["quick_gelu w=4304"]
    timed = {"flagos": (2.0, 1.0), ops_bench.NATIVE: (8.0, 4.0)}
    rows = ops_bench.timings(case, timed, ops_bench.NATIVE, 1000.0, "bfloat16")
    by_impl = {r.impl: r for r in rows}
    assert {r.baseline for r in rows} == {ops_bench.NATIVE}
    assert by_impl["flagos"].vs_baseline == 0.25 and by_impl["flagos"].graph_vs_baseline == 0.25
    assert by_impl[ops_bench.NATIVE].vs_baseline == 1.0
    assert by_impl["flagos"].gbps == pytest.approx(case.bytes_moved / 2e-6 / 1e9)
    assert by_impl["flagos"].of_same_size_copy == 0.5
    alone = ops_bench.timings(case, {"flagos": (2.0, None)}, None, 1000.0, "bfloat16")
    assert (alone[0].baseline, alone[0].vs_baseline, alone[0].graph_vs_baseline) == (None,) * 3


def test_the_ops_table_says_what_each_ratio_is_against(monkeypatch, capsys):
    rows = [
        ops_bench.OpTiming("new_gelu w=10240", "flagos", 64, "bfloat16", 5.0, 100.0, 0.1,
                           ops_bench.NATIVE, 0.5, 4.0, 0.5, 0.9),
        ops_bench.OpTiming("new_gelu w=10240", ops_bench.NATIVE, 64, "bfloat16", 10.0, 50.0,
                           0.05, ops_bench.NATIVE, 1.0, 8.0, 1.0, 0.45),
        ops_bench.OpTiming(LAYER_NORM, "flagos", 64, "bfloat16", 3.0, 100.0, 0.1, None, None,
                           None, None, 0.3),
    ]  # fmt: skip
    monkeypatch.setattr(bench_cli, "require_device", lambda device, command: None)
    monkeypatch.setattr(bench_cli, "environment", lambda device: {"device_name": "H100"})
    monkeypatch.setattr(ops_bench, "run", lambda *args, **kwargs: (3000.0, rows))
    assert main(["bench", "ops"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[-8:] == ["baseline", "vs", "baseline", "graph", "us", "graph", "vs",
                                   "baseline"]  # fmt: skip
    flagos, native, alone = out[3].split(), out[4].split(), out[5].split()
    assert flagos[2:4] == ["flagos", "64"] and flagos[-4:] == [ops_bench.NATIVE, "0.50x", "4.0",
                                                                "0.50x"]  # fmt: skip
    assert native[2] == ops_bench.NATIVE and native[-3] == "1.00x"
    assert alone[-4:] == ["-", "-", "-", "-"]
    assert out[-1].startswith("baseline: the vendor kernel where a vendor backend takes the case")
