"""The ``SGLANG_FL_ATEN_TRACE`` diagnostic: record the ATen ops a serving process calls, with
their argument signatures.

``load_plugin`` starts the recorder in each SGLang process when the setting names a file; this
module therefore sits below the plugin and imports nothing of sglang-fl. ``sglang-fl bench
aten`` (``sglang_fl.bench.aten_set``) sets the variable for its trace run and analyses the file:
which ATen ops SGLang really calls at serving shapes, so each can be benchmarked with PyTorch's
kernel against FlagGems'. A ``TorchDispatchMode`` sees every ATen call of the thread it is
entered in; each distinct (op, signature) is appended to the trace file once, as one JSON line
written with a single ``O_APPEND`` write (several processes may share the file).

Integer and floating tensors record their value range, so a replay can draw inputs from the
same range (valid indices, probabilities in [0, 1], ...). Reading the range synchronises the
device: trace runs are diagnostic runs (no CUDA graphs, performance irrelevant).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_SCALARS = (bool, int, float, str, type(None))


def op_key(func: Any) -> str:
    """``aten.add.Tensor`` -> ``add.Tensor``; default overloads drop the suffix (FlagGems' keys)."""
    name = func._schema.name.split("::", 1)[1]
    overload = func._overloadname
    return name if overload == "default" else f"{name}.{overload}"


def describe(value: Any) -> Any:
    """JSON-able description of one argument, or None if it cannot be replayed."""
    if isinstance(value, torch.Tensor):
        spec: dict[str, Any] = {
            "tensor": True, "shape": list(value.shape), "stride": list(value.stride()),
            "dtype": str(value.dtype).removeprefix("torch."), "device": value.device.type,
        }  # fmt: skip
        if value.numel() and not value.is_complex():
            spec["range"] = [value.min().item(), value.max().item()]
        return spec
    if isinstance(value, _SCALARS):
        return {"value": value}
    if isinstance(value, torch.dtype):
        return {"dtype_value": str(value).removeprefix("torch.")}
    if isinstance(value, torch.device):
        return {"device_value": value.type}
    if isinstance(value, (torch.memory_format, torch.layout)):
        return {"torch_attr": str(value).removeprefix("torch.")}
    if isinstance(value, (list, tuple)):
        items = [describe(v) for v in value]
        return None if any(i is None for i in items) else {"list": items}
    return None


class AtenTrace(TorchDispatchMode):
    """Appends each distinct ATen (op, signature) seen in this thread to ``path``."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._seen: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        with contextlib.suppress(Exception):  # a trace must never break the run it observes
            self._record(func, args, kwargs)
        return out

    def _record(self, func, args, kwargs) -> None:
        spec_args = [describe(a) for a in args]
        spec_kwargs = {k: describe(v) for k, v in kwargs.items()}
        replayable = None not in spec_args and None not in spec_kwargs.values()
        entry = {"op": op_key(func), "args": spec_args, "kwargs": spec_kwargs,
                 "replayable": replayable}  # fmt: skip
        line = json.dumps(entry, sort_keys=True)
        signature = json.dumps({
            **entry, "args": [_shape_only(a) for a in spec_args],
            "kwargs": {k: _shape_only(v) for k, v in spec_kwargs.items()},
        }, sort_keys=True)  # fmt: skip
        if signature in self._seen:
            return
        self._seen.add(signature)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode("utf-8"))
        finally:
            os.close(fd)


def _shape_only(spec: Any) -> Any:
    """The part of a description that makes a signature distinct (not the value range)."""
    if isinstance(spec, dict) and spec.get("tensor"):
        return {k: v for k, v in spec.items() if k != "range"}
    return spec


def start(path: Path) -> AtenTrace:
    """Enter a trace mode for the rest of this thread's life (never exited: a trace run)."""
    mode = AtenTrace(path)
    mode.__enter__()
    return mode
