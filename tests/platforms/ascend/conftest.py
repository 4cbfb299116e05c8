"""A fake ``torch_npu`` (and ``torch.npu``) on CPU for the Ascend contract tests.

What these tests prove: OUR side of the contract with torch_npu — which public ops we call,
with which arguments, layouts and dtypes, and what we do with their outputs — plus detection,
availability, configuration and selection. They do NOT prove anything about the NPU kernels:
nothing here runs on an NPU.

Each fake op computes what the torch_npu documentation says the op computes (torch_npu 2.13.0:
``torch_npu/_op_plugin_docs.py`` and the shapes/dtypes of its meta registrations), in plain
PyTorch, in float32 like the kernels, written from that documentation and not from sglang-fl's
reference math (the rotary fake uses the textbook rotate-half / rotate-interleaved form, the
reference gathers and pairs halves; the gelus are written from their formulas). Each fake also
enforces the documented input constraints (dtypes, 2-D rotary inputs, rotary_dim multiples,
mrope sections summing to rotary_dim / 2, gamma in the input dtype, positions in range), so a
wrong argument mapping fails loudly instead of computing something plausible.

Where the docstrings say less than we rely on, the fake encodes a stated reading, which only
an NPU run can confirm (platforms/ascend/README.md lists them): ``npu_geglu``'s
``activate_left`` (in its schema, not its docstring: CANN's GeGluV3 activates the right half by
default, the left one with ``activate_left=True``), ``npu_gelu`` (schema and graph lowering
only: torch's gelu with the same ``approximate``), ``npu_mrope``'s mrope mode (the chunked
t | h | w sections the documented constraint describes), and ``npu_layer_norm_eval`` (documented
as F.layer_norm; parameters in the input's dtype, as F.layer_norm expects).
"""

from __future__ import annotations

import math
import sys
import types
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import torch

KERNEL_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


class FakeNpuError(RuntimeError):
    """What a real kernel would raise for an input outside its documented contract."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise FakeNpuError(message)


def _require_dtype(op: str, *tensors: torch.Tensor) -> None:
    for t in tensors:
        _require(t.dtype in KERNEL_DTYPES, f"{op}: dtype {t.dtype} is not fp16/bf16/fp32")


# --------------------------------------------------------------------------- documented ops


def npu_swiglu(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Doc: ``swiglu(x, dim) = swish(A) * B = A * sigmoid(A) * B``, A and B the two halves of
    x along ``dim``; output dtype = input dtype (meta: size along dim halved)."""
    _require_dtype("npu_swiglu", x)
    _require(x.numel() > 0 and x.is_contiguous(), "npu_swiglu: input must be non-empty, contiguous")
    a, b = x.float().chunk(2, dim=dim)
    return (a * torch.sigmoid(a) * b).to(x.dtype)


def _erf_gelu(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _tanh_gelu(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def npu_geglu(self: torch.Tensor, dim: int = -1, approximate: int = 1,
              activate_left: bool = False):  # fmt: skip
    """Doc: GeGlu on ``self`` split in two halves along ``dim`` -> ``(out, outGelu)``, both half
    the size along ``dim`` and in self's dtype (meta); ``approximate`` 0 = none (erf), 1 = tanh;
    non-contiguous input supported. The half that is activated: the right one by default,
    the left one with ``activate_left=True`` (the schema's argument; CANN's GeGluV3)."""
    _require_dtype("npu_geglu", self)
    _require(1 <= self.dim() <= 8, "npu_geglu: dim num out of range [1, 8]")
    _require(-self.dim() <= dim < self.dim(), f"npu_geglu: attribute dim {dim} out of range")
    _require(self.shape[dim] % 2 == 0, "npu_geglu: the split dim must be even")
    _require(approximate in (0, 1), f"npu_geglu: approximate must be 0 or 1, not {approximate!r}")
    left, right = self.float().chunk(2, dim=dim)
    activated, other = (left, right) if activate_left else (right, left)
    gelu = _tanh_gelu(activated) if approximate == 1 else _erf_gelu(activated)
    return (gelu * other).to(self.dtype), gelu.to(self.dtype)


def npu_gelu(self: torch.Tensor, *, approximate: str = "none") -> torch.Tensor:
    """Schema ``npu_gelu(Tensor self, *, str approximate="none")``, lowered to GE's GeluV2 with
    the same attribute: torch's gelu, erf ("none") or the tanh approximation; same shape and
    dtype (meta: empty_like)."""
    _require_dtype("npu_gelu", self)
    _require(approximate in ("none", "tanh"), f"npu_gelu: approximate {approximate!r}")
    x = self.float()
    return (_tanh_gelu(x) if approximate == "tanh" else _erf_gelu(x)).to(self.dtype)


def npu_fast_gelu(input: torch.Tensor) -> torch.Tensor:
    """Doc, formula 2 (Atlas A2/A3, the 910B class): ``x / (1 + exp(-1.702 x))``; formula 1
    (older Atlas products) is the overflow-safe form of the same function. Non-contiguous
    input supported, up to 8 dims; same dtype."""
    _require_dtype("npu_fast_gelu", input)
    _require(input.dim() <= 8, "npu_fast_gelu: at most 8 dims")
    x = input.float()
    return (x / (1.0 + torch.exp(-1.702 * x))).to(input.dtype)


def npu_layer_norm_eval(input: torch.Tensor, normalized_shape, weight=None, bias=None,
                        eps: float = 1e-5) -> torch.Tensor:  # fmt: skip
    """Doc: "the same as torch.nn.functional.layer_norm", an NPU-optimised implementation:
    ``(x - mean) / sqrt(var + eps) * weight + bias`` over ``normalized_shape`` (biased
    variance), weight and bias optional, in the input's dtype and shape."""
    _require_dtype("npu_layer_norm_eval", input)
    shape = tuple(normalized_shape)
    _require(tuple(input.shape[-len(shape) :]) == shape, "npu_layer_norm_eval: shape mismatch")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None:
            _require(tuple(t.shape) == shape, f"npu_layer_norm_eval: {name} shape mismatch")
            _require(t.dtype == input.dtype, f"npu_layer_norm_eval: {name} dtype {t.dtype} "
                     f"differs from the input's {input.dtype}")  # fmt: skip
    dims = tuple(range(-len(shape), 0))
    x = input.float()
    mean = x.mean(dim=dims, keepdim=True)
    var = (x - mean).pow(2).mean(dim=dims, keepdim=True)
    y = (x - mean) / torch.sqrt(var + eps)
    if weight is not None:
        y = y * weight.float()
    if bias is not None:
        y = y + bias.float()
    return y.to(input.dtype)


def _rms(x: torch.Tensor, gamma: torch.Tensor, epsilon: float) -> tuple[torch.Tensor, ...]:
    """float32 ``x / sqrt(mean(x^2) + eps)`` over gamma's trailing dims, and rstd (meta: fp32,
    the leading dims of x followed by ones)."""
    dims = tuple(range(-gamma.dim(), 0))
    xf = x.float()
    rstd = torch.rsqrt(xf.pow(2).mean(dim=dims, keepdim=True) + epsilon)
    return xf * rstd, rstd


def _check_gamma(op: str, x: torch.Tensor, gamma: torch.Tensor) -> None:
    _require_dtype(op, x)
    _require(gamma.dtype == x.dtype, f"{op}: gamma dtype {gamma.dtype} must equal {x.dtype}")
    _require(tuple(x.shape[-gamma.dim() :]) == tuple(gamma.shape), f"{op}: gamma shape mismatch")


def npu_rms_norm(self: torch.Tensor, gamma: torch.Tensor, epsilon: float = 1e-6):
    """Doc: RmsNorm ``y = x / rms(x) * gamma`` -> ``(y, rstd)``; gamma dtype = x dtype."""
    _check_gamma("npu_rms_norm", self, gamma)
    normed, rstd = _rms(self, gamma, epsilon)
    return (normed * gamma.float()).to(self.dtype), rstd


def npu_add_rms_norm(x1: torch.Tensor, x2: torch.Tensor, gamma: torch.Tensor, epsilon=1e-6):
    """Doc (facts §7): ``-> (y, rstd, x)`` with ``x = x1 + x2`` and ``y = rms_norm(x)``; meta:
    y and x in x1's dtype, rstd fp32. Out of place."""
    _check_gamma("npu_add_rms_norm", x1, gamma)
    _require(x1.shape == x2.shape, "npu_add_rms_norm: x1 and x2 shapes differ")
    summed = x1.float() + x2.float()
    normed, rstd = _rms(summed, gamma, epsilon)
    return (normed * gamma.float()).to(x1.dtype), rstd, summed.to(x1.dtype)


def npu_gemma_rms_norm(input: torch.Tensor, gamma: torch.Tensor, epsilon: float = 1e-6):
    """Doc: Gemma RMSNorm, ``y = x / rms(x) * (1 + gamma)`` -> ``(y, rstd)``; gamma dtype =
    input dtype; no empty or non-contiguous input."""
    _check_gamma("npu_gemma_rms_norm", input, gamma)
    _require(input.numel() > 0 and input.is_contiguous(), "npu_gemma_rms_norm: bad input")
    normed, rstd = _rms(input, gamma, epsilon)
    return (normed * (1.0 + gamma.float())).to(input.dtype), rstd


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def _rotate_interleaved(x: torch.Tensor) -> torch.Tensor:
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack((-odd, even), dim=-1).flatten(-2)


def npu_mrope(positions, query, key, cos_sin_cache, head_size, *, mrope_section=None,
              rotary_mode="half", cache_mode="default"):  # fmt: skip
    """Doc: RoPE from a ``[maxSeqLen, rotaryDim]`` cos|sin cache gathered by ``positions``
    on 2-D ``[numTokens, heads * headSize]`` query/key; 'half' = rotate_half (GPT-NeoX),
    'interleave' = rotate_interleaved (GPT-J); the first rotaryDim of each head rotate, the
    rest pass through. Out of place. 1-D positions with mropeSection [0, 0, 0] (the default)
    = rope mode; ``[3, numTokens]`` positions with mropeSection summing to rotaryDim / 2 =
    mrope mode: rotary frequency ``j`` takes its position from the t row for ``j <
    section[0]``, the h row for the next ``section[1]``, the w row for the rest."""
    _check_mrope(positions, query, key, cos_sin_cache, head_size, mrope_section, rotary_mode,
                 cache_mode)  # fmt: skip
    rotary_dim = cos_sin_cache.shape[1]
    cos, sin = _mrope_cos_sin(positions, cos_sin_cache, mrope_section)
    if rotary_mode == "half":
        cos, sin, rotate = torch.cat((cos, cos), -1), torch.cat((sin, sin), -1), _rotate_half
    else:
        cos, sin = cos.repeat_interleave(2, -1), sin.repeat_interleave(2, -1)
        rotate = _rotate_interleaved

    def apply(x: torch.Tensor) -> torch.Tensor:
        heads = x.float().view(x.shape[0], -1, head_size)
        rot, rest = heads[..., :rotary_dim], heads[..., rotary_dim:]
        rot = rot * cos[:, None, :] + rotate(rot) * sin[:, None, :]
        return torch.cat((rot, rest), dim=-1).reshape(x.shape).to(x.dtype)

    return apply(query), apply(key)


def _mrope_cos_sin(positions, cache, section) -> tuple[torch.Tensor, torch.Tensor]:
    """``[numTokens, rotaryDim / 2]`` cos and sin (fp32): rope mode gathers one row per token;
    mrope mode concatenates the t, h and w rows' sections."""
    if positions.dim() == 1:
        return cache.index_select(0, positions).float().chunk(2, dim=-1)
    per_row = [cache.index_select(0, row).float().chunk(2, dim=-1) for row in positions]
    bounds = [0, section[0], section[0] + section[1], sum(section)]
    cos = torch.cat([per_row[r][0][:, bounds[r] : bounds[r + 1]] for r in range(3)], dim=-1)
    sin = torch.cat([per_row[r][1][:, bounds[r] : bounds[r + 1]] for r in range(3)], dim=-1)
    return cos, sin


def _check_mrope(positions, query, key, cache, head_size, section, rotary_mode, cache_mode):
    section = list(section or [0, 0, 0])
    _require(positions.dim() in (1, 2), "npu_mrope: positions must be 1-D or 2-D")
    _require(positions.dtype in (torch.int32, torch.int64), "npu_mrope: positions int32/int64")
    _require(len(section) == 3, "npu_mrope: mrope_section has three entries")
    _require(rotary_mode in ("half", "interleave"), f"npu_mrope: rotary_mode {rotary_mode!r}")
    _require(cache_mode == "default", "npu_mrope: only cache_mode='default' is faked")
    _require(query.dim() == 2 and key.dim() == 2 and cache.dim() == 2, "npu_mrope: 2-D only")
    _require_dtype("npu_mrope", query, key, cache)
    # Not stated in the doc, but SGLang's forward_npu never passes a cache of another dtype
    # (it takes another path for bf16 query + fp32 cache): treat a mismatch as unsupported.
    _require(query.dtype == key.dtype == cache.dtype, "npu_mrope: query/key/cache dtypes differ")
    rotary_dim = cache.shape[1]
    if positions.dim() == 1:
        _require(section == [0, 0, 0], "npu_mrope: 1-D positions are rope mode: [0, 0, 0]")
    else:
        _require(positions.shape[0] == 3, "npu_mrope: 2-D positions are [3, numTokens]")
        _require(sum(section) == rotary_dim // 2 and min(section) >= 0,
                 "npu_mrope: mrope mode needs sum(mrope_section) == rotary_dim / 2")  # fmt: skip
    multiple = 16 if query.dtype == torch.float32 else 32
    _require(rotary_dim % multiple == 0, f"npu_mrope: rotary_dim must be a multiple of {multiple}")
    _require(rotary_dim <= head_size, "npu_mrope: rotary_dim exceeds head_size")
    _require(query.shape[1] % head_size == 0 and key.shape[1] % head_size == 0,
             "npu_mrope: last dim must be heads * head_size")  # fmt: skip
    tokens = positions.shape[-1]
    _require(query.shape[0] == key.shape[0] == tokens, "npu_mrope: token counts")
    in_range = positions.numel() == 0 or int(positions.max()) < cache.shape[0]
    _require(in_range, "npu_mrope: position beyond maxSeqLen")


FAKE_OPS = {
    f.__name__: f
    for f in (npu_swiglu, npu_geglu, npu_gelu, npu_fast_gelu, npu_rms_norm, npu_add_rms_norm,
              npu_gemma_rms_norm, npu_layer_norm_eval, npu_mrope)
}  # fmt: skip


# --------------------------------------------------------------------------- torch.npu


@dataclass
class FakeDevice:
    """The device state behind the fake ``torch.npu`` (tests flip these)."""

    available: bool = True
    count: int = 2
    current: int = 0
    total_memory: int = 64 * 1024**3
    free_memory: int = 60 * 1024**3
    max_allocated: int = 3 * 1024**3
    name: str = "Ascend910B1"
    calls: list[tuple] = field(default_factory=list)


def make_torch_npu_namespace(device: FakeDevice) -> types.SimpleNamespace:
    """The subset of ``torch.npu`` that sglang-fl and SGLang's NPU platform call."""

    def record(name, result=None):
        def fn(*args, **kwargs):
            device.calls.append((name, args))
            return result() if callable(result) else result

        return fn

    def properties(device_id=0):
        return types.SimpleNamespace(total_memory=device.total_memory, name=device.name,
                                     uuid=f"fake-uuid-{device_id}")  # fmt: skip

    def set_device(d):
        device.calls.append(("set_device", (d,)))
        device.current = int(str(d).rpartition(":")[2] or 0)

    return types.SimpleNamespace(
        is_available=lambda: device.available,
        device_count=lambda: device.count if device.available else 0,
        current_device=lambda: device.current,
        set_device=set_device,
        mem_get_info=lambda device_id=None: (device.free_memory, device.total_memory),
        get_device_properties=properties,
        get_device_name=lambda device_id=0: device.name,
        max_memory_allocated=lambda d=None: device.max_allocated,
        empty_cache=record("empty_cache"),
        synchronize=record("synchronize"),
        manual_seed_all=record("manual_seed_all"),
    )


def make_fake_torch_npu(calls: Counter, *, omit: tuple[str, ...] = ()) -> types.ModuleType:
    """A ``torch_npu`` module whose ops count their calls (to prove the vendor path ran)."""
    module = types.ModuleType("torch_npu")
    module.__version__ = "2.13.0+fake"
    module.__spec__ = None
    for name, fn in FAKE_OPS.items():
        if name in omit:
            continue

        def counted(*args, _fn=fn, _name=name, **kwargs):
            calls[_name] += 1
            return _fn(*args, **kwargs)

        setattr(module, name, counted)
    return module


@dataclass
class FakeNpu:
    """Handle returned by the ``fake_npu`` fixture."""

    module: types.ModuleType
    device: FakeDevice
    calls: Counter
    monkeypatch: pytest.MonkeyPatch

    def without(self, *ops: str) -> None:
        """Reinstall torch_npu without ``ops`` (an older torch_npu)."""
        self.module = make_fake_torch_npu(self.calls, omit=ops)
        self.monkeypatch.setitem(sys.modules, "torch_npu", self.module)


@pytest.fixture
def fake_npu(monkeypatch) -> Iterator[FakeNpu]:
    """Install the fake torch_npu and torch.npu for one test; both are removed afterwards."""
    calls: Counter = Counter()
    device = FakeDevice()
    module = make_fake_torch_npu(calls)
    monkeypatch.setitem(sys.modules, "torch_npu", module)
    monkeypatch.setattr(torch, "npu", make_torch_npu_namespace(device), raising=False)
    yield FakeNpu(module, device, calls, monkeypatch)


@pytest.fixture
def no_torch_npu(monkeypatch) -> None:
    """A machine without torch_npu: ``import torch_npu`` raises ImportError, no torch.npu."""
    monkeypatch.setitem(sys.modules, "torch_npu", None)
    monkeypatch.delattr(torch, "npu", raising=False)


@pytest.fixture
def torch_npu_without_device(monkeypatch) -> FakeDevice:
    """torch_npu imports, but no NPU is visible (driver missing, devices not mounted)."""
    device = FakeDevice(available=False)
    monkeypatch.setitem(sys.modules, "torch_npu", make_fake_torch_npu(Counter()))
    monkeypatch.setattr(torch, "npu", make_torch_npu_namespace(device), raising=False)
    return device
