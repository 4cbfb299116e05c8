"""A fake ``torch_npu`` (and ``torch.npu``) on CPU for the Ascend contract tests.

What these tests prove: OUR side of the contract with torch_npu — which public ops we call,
with which arguments, layouts and dtypes, and what we do with their outputs — plus detection,
availability, configuration and selection. They do NOT prove anything about the NPU kernels:
nothing here runs on an NPU.

Each fake op computes what the torch_npu documentation says the op computes (torch_npu 2.13.0:
``torch_npu/_op_plugin_docs.py`` and the shapes/dtypes of its meta registrations), in plain
PyTorch, in float32 like the kernels, written from that documentation and not from sglang-fl's
reference math (the rotary fake uses the textbook rotate-half / rotate-interleaved form, the
reference gathers and pairs halves). Each fake also enforces the documented input constraints
(dtypes, 2-D rotary inputs, rotary_dim multiples, gamma in the input dtype, positions in range),
so a wrong argument mapping fails loudly instead of computing something plausible.
"""

from __future__ import annotations

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
    (1-D = rope mode; mropeSection [0, 0, 0] = rope mode) on 2-D ``[numTokens, heads *
    headSize]`` query/key; 'half' = rotate_half (GPT-NeoX), 'interleave' = rotate_interleaved
    (GPT-J); the first rotaryDim of each head rotate, the rest pass through. Out of place."""
    _check_mrope(positions, query, key, cos_sin_cache, head_size, mrope_section, rotary_mode,
                 cache_mode)  # fmt: skip
    rotary_dim = cos_sin_cache.shape[1]
    cos, sin = cos_sin_cache.index_select(0, positions).float().chunk(2, dim=-1)
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


def _check_mrope(positions, query, key, cache, head_size, section, rotary_mode, cache_mode):
    _require(positions.dim() == 1, "npu_mrope: only rope mode (1-D positions) is faked")
    _require(positions.dtype in (torch.int32, torch.int64), "npu_mrope: positions int32/int64")
    _require(list(section or [0, 0, 0]) == [0, 0, 0], "npu_mrope: rope mode needs [0, 0, 0]")
    _require(rotary_mode in ("half", "interleave"), f"npu_mrope: rotary_mode {rotary_mode!r}")
    _require(cache_mode == "default", "npu_mrope: only cache_mode='default' is faked")
    _require(query.dim() == 2 and key.dim() == 2 and cache.dim() == 2, "npu_mrope: 2-D only")
    _require_dtype("npu_mrope", query, key, cache)
    # Not stated in the doc, but SGLang's forward_npu never passes a cache of another dtype
    # (it takes another path for bf16 query + fp32 cache): treat a mismatch as unsupported.
    _require(query.dtype == key.dtype == cache.dtype, "npu_mrope: query/key/cache dtypes differ")
    rotary_dim = cache.shape[1]
    multiple = 16 if query.dtype == torch.float32 else 32
    _require(rotary_dim % multiple == 0, f"npu_mrope: rotary_dim must be a multiple of {multiple}")
    _require(rotary_dim <= head_size, "npu_mrope: rotary_dim exceeds head_size")
    _require(query.shape[1] % head_size == 0 and key.shape[1] % head_size == 0,
             "npu_mrope: last dim must be heads * head_size")  # fmt: skip
    _require(query.shape[0] == key.shape[0] == positions.shape[0], "npu_mrope: token counts")
    in_range = positions.numel() == 0 or int(positions.max()) < cache.shape[0]
    _require(in_range, "npu_mrope: position beyond maxSeqLen")


FAKE_OPS = {
    f.__name__: f
    for f in (npu_swiglu, npu_rms_norm, npu_add_rms_norm, npu_gemma_rms_norm, npu_mrope)
}


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
