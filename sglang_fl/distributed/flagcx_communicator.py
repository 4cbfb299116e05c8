"""Collectives for one process group over FlagCX (:mod:`sglang_fl.distributed.flagcx`).

What differs from the earlier plugin's communicator, and why:

- ``all_reduce`` is in place (``sendbuff == recvbuff``, which FlagCX supports): the earlier one
  reduced into a fresh ``empty_like`` and copied back, an allocation and a copy per call.
- ``all_gatherv``/``reduce_scatterv`` honour ``sizes`` (a broadcast/reduce per rank inside
  ``flagcxGroupStart/End``); the earlier fallback ignored ``sizes``.
- Device streams are given as raw handles (``torch.cuda.current_stream().cuda_stream``, the
  NPU/MUSA equivalents; ``0``/``None`` on CPU). FlagCX's ``flagcxStream_t`` is a FlagCX object
  whose first member is that device handle (the earlier plugin made one per handle with the
  device adaptor's ``streamCopy``). We build that one-pointer struct ourselves, once per raw
  handle, and keep it until :meth:`FlagCXCommunicator.close` -- no per-call copy/free, no
  dependency on the layout of FlagCX's device-handle table. This layout is FlagCX-internal;
  ``tests/distributed/test_flagcx_real.py`` is what confirms it on a real build.
- The communicator is destroyed exactly once, by :meth:`close` or by a ``weakref.finalize``
  when it is garbage collected (not ``__del__``, which may run during interpreter teardown or
  resurrect the object).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from sglang_fl.distributed.flagcx import (
    UNIQUE_ID_BYTES,
    FlagCXLibrary,
    flagcx_dtype,
    flagcx_op,
)
from sglang_fl.errors import FlagCXError, FlagCXUsageError

logger = logging.getLogger(__name__)

# Returns the raw device stream handle to run on (an int; 0 or None: the default/no stream).
StreamProvider = Callable[[], "int | None"]
# Raw stream attribute of torch's per-backend stream objects.
_RAW_STREAM_ATTRS = ("cuda_stream", "npu_stream", "musa_stream")


# --------------------------------------------------------------------------- device helpers


def default_stream_provider(device: torch.device) -> StreamProvider:
    """Current stream of ``device`` as a raw handle, read at every call (it may change, e.g.
    under graph capture); ``0`` on CPU."""
    if device.type == "cpu":
        return lambda: 0
    module = getattr(torch, device.type, None)
    current_stream = getattr(module, "current_stream", None)
    if current_stream is None:
        raise FlagCXUsageError(
            f"torch.{device.type} has no current_stream(); pass stream_provider= explicitly"
        )
    sample = current_stream(device)
    attr = next((a for a in _RAW_STREAM_ATTRS if hasattr(sample, a)), None)
    if attr is None:
        raise FlagCXUsageError(
            f"{type(sample).__name__} has none of {', '.join(_RAW_STREAM_ATTRS)}; pass "
            f"stream_provider= returning the raw stream handle"
        )
    return lambda: getattr(current_stream(device), attr)


def _normalize_device(device: torch.device | str) -> torch.device:
    """``cuda`` -> ``cuda:<current>``, so tensor device checks compare like with like."""
    device = torch.device(device)
    if device.type == "cpu" or device.index is not None:
        return device
    current_device = getattr(getattr(torch, device.type, None), "current_device", None)
    return torch.device(device.type, current_device()) if callable(current_device) else device


def _device_context(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Make ``device`` current while FlagCX creates the communicator (it binds to it)."""
    if device.type == "cpu":
        return contextlib.nullcontext()
    device_ctx = getattr(getattr(torch, device.type, None), "device", None)
    return device_ctx(device) if callable(device_ctx) else contextlib.nullcontext()


def _exchange_unique_id(lib: FlagCXLibrary, cpu_group: Any) -> bytes:
    """Group rank 0 makes the id; everyone receives it over the (gloo) CPU group."""
    dist = torch.distributed
    buffer = torch.zeros(UNIQUE_ID_BYTES, dtype=torch.uint8)
    if dist.get_rank(cpu_group) == 0:
        buffer.copy_(torch.frombuffer(bytearray(lib.get_unique_id()), dtype=torch.uint8))
    src = 0 if cpu_group is None else dist.get_global_rank(cpu_group, 0)
    dist.broadcast(buffer, src=src, group=cpu_group)
    return bytes(buffer.tolist())


def _destroy(lib: FlagCXLibrary, comm: int, streams: dict[int, Any], *, raise_errors: bool) -> None:
    """Destroy ``comm``; ``streams`` (the boxes) are released only after it is gone."""
    try:
        lib.comm_destroy(comm)
    except FlagCXError:
        if raise_errors:
            raise
        logger.warning("FlagCX communicator cleanup failed", exc_info=True)
    finally:
        streams.clear()


# --------------------------------------------------------------------------- the communicator


class FlagCXCommunicator:
    """FlagCX collectives for one process group, on one device.

    Create it with :meth:`create` (the ranks already share a unique id, e.g. through a
    torch.distributed store) or :meth:`over_group` (rank 0 makes the id and broadcasts it
    over a gloo group), or wrap an existing ``flagcxComm_t`` with :meth:`from_comm`.

    library:          the loaded binding (:func:`~sglang_fl.distributed.flagcx.load_library`).
    rank, world_size: this process's rank in the group and the group's size.
    device:           the device whose tensors this communicator moves.
    stream_provider:  returns the raw stream handle to enqueue on (default: the device's
                      current stream; ``0`` on CPU). Every method also takes ``stream=`` to
                      override it for one call.
    """

    @classmethod
    def create(
        cls,
        library: FlagCXLibrary,
        unique_id: bytes,
        *,
        rank: int,
        world_size: int,
        device: torch.device | str,
        stream_provider: StreamProvider | None = None,
    ) -> FlagCXCommunicator:
        """Join the communicator every rank creates from the same ``unique_id``."""
        device = _normalize_device(device)
        provider = stream_provider or default_stream_provider(device)
        with _device_context(device):
            comm = library.comm_init_rank(world_size, unique_id, rank)
        return cls.from_comm(
            library, comm, rank=rank, world_size=world_size, device=device,
            stream_provider=provider,
        )  # fmt: skip

    @classmethod
    def over_group(
        cls,
        library: FlagCXLibrary,
        cpu_group: Any,
        *,
        device: torch.device | str,
        stream_provider: StreamProvider | None = None,
    ) -> FlagCXCommunicator:
        """One communicator for the ranks of ``cpu_group`` (a torch.distributed gloo group,
        ``None`` for WORLD), which carries the unique id."""
        rank, world_size = _group_layout(cpu_group)
        unique_id = _exchange_unique_id(library, cpu_group)
        return cls.create(
            library, unique_id, rank=rank, world_size=world_size, device=device,
            stream_provider=stream_provider,
        )  # fmt: skip

    @classmethod
    def from_comm(
        cls,
        library: FlagCXLibrary,
        comm: int,
        *,
        rank: int,
        world_size: int,
        device: torch.device | str,
        stream_provider: StreamProvider | None = None,
    ) -> FlagCXCommunicator:
        """Wrap an already created ``flagcxComm_t``; on success the wrapper owns it."""
        device = _normalize_device(device)
        provider = stream_provider or default_stream_provider(device)
        self = cls.__new__(cls)
        self._attach(library, comm, rank, world_size, device, provider)
        return self

    def _attach(
        self,
        lib: FlagCXLibrary,
        comm: int,
        rank: int,
        world_size: int,
        device: torch.device,
        stream_provider: StreamProvider,
    ) -> None:
        _check_comm(lib, comm, rank, world_size)
        self.library = lib
        self.rank = rank
        self.world_size = world_size
        self.device = device
        self._comm: int | None = comm
        self._stream_provider = stream_provider
        self._stream_boxes: dict[int, Any] = {}  # raw handle -> ctypes box (the flagcxStream)
        self._stream_ptrs: dict[int, int] = {}  # raw handle -> address of that box
        self._finalizer = weakref.finalize(
            self, _destroy, lib, comm, self._stream_boxes, raise_errors=False
        )

    # ------------------------------------------------------------------ lifecycle

    @property
    def closed(self) -> bool:
        return self._comm is None

    def close(self) -> None:
        """Destroy the FlagCX communicator. Idempotent; later collectives raise."""
        state = self._finalizer.detach()
        self._comm = None
        if state is not None:
            _obj, func, args, _kwargs = state
            func(*args, raise_errors=True)

    def __enter__(self) -> FlagCXCommunicator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _live_comm(self) -> int:
        comm = self._comm
        if comm is None:
            raise FlagCXUsageError("this FlagCXCommunicator is closed")
        return comm

    def _stream(self, stream: int | None) -> int:
        """The ``flagcxStream_t`` for a raw handle (the provider's when ``stream`` is None)."""
        raw = (self._stream_provider() if stream is None else stream) or 0
        ptr = self._stream_ptrs.get(raw)
        if ptr is None:
            box = self._stream_boxes[raw] = ctypes.c_void_p(raw)
            ptr = self._stream_ptrs[raw] = ctypes.addressof(box)
        return ptr

    # ------------------------------------------------------------------ collectives

    def all_reduce(
        self, tensor: torch.Tensor, op: object = "sum", *, stream: int | None = None
    ) -> torch.Tensor:
        """Reduce ``tensor`` across the group in place (no allocation, no copy); returns it."""
        comm = self._live_comm()
        self._check(tensor, "tensor")
        ptr = tensor.data_ptr()
        self.library.all_reduce(
            ptr,
            ptr,
            tensor.numel(),
            flagcx_dtype(tensor.dtype),
            flagcx_op(op),
            comm,
            self._stream(stream),
        )
        return tensor

    def all_gather(
        self, output: torch.Tensor, input: torch.Tensor, *, stream: int | None = None
    ) -> torch.Tensor:
        """Concatenate every rank's ``input`` (rank order) into ``output``."""
        comm = self._live_comm()
        self._check_pair(
            output,
            input,
            output.numel() == input.numel() * self.world_size,
            "output.numel() == input.numel() * world_size",
        )
        self.library.all_gather(
            input.data_ptr(),
            output.data_ptr(),
            input.numel(),
            flagcx_dtype(input.dtype),
            comm,
            self._stream(stream),
        )
        return output

    def reduce_scatter(
        self,
        output: torch.Tensor,
        input: torch.Tensor,
        op: object = "sum",
        *,
        stream: int | None = None,
    ) -> torch.Tensor:
        """Reduce ``input`` across ranks; this rank keeps its ``world_size``-th chunk."""
        comm = self._live_comm()
        self._check_pair(
            output,
            input,
            input.numel() == output.numel() * self.world_size,
            "input.numel() == output.numel() * world_size",
        )
        self.library.reduce_scatter(
            input.data_ptr(),
            output.data_ptr(),
            output.numel(),
            flagcx_dtype(input.dtype),
            flagcx_op(op),
            comm,
            self._stream(stream),
        )
        return output

    def all_gather_list(
        self, outputs: Sequence[torch.Tensor], input: torch.Tensor, *, stream: int | None = None
    ) -> Sequence[torch.Tensor]:
        """``outputs[r]`` receives rank r's ``input``; the ranks' sizes may differ.

        One broadcast per rank (root r sends its ``input``) inside a FlagCX group.
        """
        comm = self._live_comm()
        self._check_list(outputs, input, "outputs")
        dtype, stream_ptr = flagcx_dtype(input.dtype), self._stream(stream)
        with self._group(comm):
            for root, out in enumerate(outputs):
                src = input.data_ptr() if root == self.rank else out.data_ptr()
                self.library.broadcast(
                    src, out.data_ptr(), out.numel(), dtype, root, comm, stream_ptr
                )
        return outputs

    def reduce_scatter_list(
        self,
        output: torch.Tensor,
        inputs: Sequence[torch.Tensor],
        op: object = "sum",
        *,
        stream: int | None = None,
    ) -> torch.Tensor:
        """``output`` gets the reduction over ranks of their ``inputs[rank]``; sizes may
        differ per rank. One reduce per rank (root r) inside a FlagCX group."""
        comm = self._live_comm()
        self._check_list(inputs, output, "inputs")
        dtype, red, stream_ptr = flagcx_dtype(output.dtype), flagcx_op(op), self._stream(stream)
        with self._group(comm):
            for root, chunk in enumerate(inputs):
                recv = output.data_ptr() if root == self.rank else chunk.data_ptr()
                self.library.reduce(
                    chunk.data_ptr(), recv, chunk.numel(), dtype, red, root, comm, stream_ptr
                )
        return output

    def all_gatherv(
        self,
        output: torch.Tensor,
        input: torch.Tensor,
        sizes: Sequence[int],
        *,
        stream: int | None = None,
    ) -> torch.Tensor:
        """All-gather with per-rank dim-0 ``sizes``: rank r's rows land at their offset."""
        sizes = self._check_varsized(output, input, sizes, gathered=output, local=input)
        self.all_gather_list(output.split(sizes), input, stream=stream)
        return output

    def reduce_scatterv(
        self,
        output: torch.Tensor,
        input: torch.Tensor,
        sizes: Sequence[int],
        op: object = "sum",
        *,
        stream: int | None = None,
    ) -> torch.Tensor:
        """Reduce-scatter with per-rank dim-0 ``sizes``: rank r gets the reduced rows of its
        slice of ``input``."""
        sizes = self._check_varsized(output, input, sizes, gathered=input, local=output)
        return self.reduce_scatter_list(output, input.split(sizes), op, stream=stream)

    def reduce(
        self, tensor: torch.Tensor, root: int, op: object = "sum", *, stream: int | None = None
    ) -> torch.Tensor:
        """Reduce every rank's ``tensor`` into ``root``'s ``tensor`` (in place there)."""
        comm = self._live_comm()
        self._check(tensor, "tensor")
        self._check_rank(root, "root")
        ptr = tensor.data_ptr()
        self.library.reduce(
            ptr, ptr, tensor.numel(), flagcx_dtype(tensor.dtype), flagcx_op(op), root, comm,
            self._stream(stream),
        )  # fmt: skip
        return tensor

    def broadcast(
        self, tensor: torch.Tensor, src: int, *, stream: int | None = None
    ) -> torch.Tensor:
        """Copy rank ``src``'s ``tensor`` into every rank's ``tensor`` (in place)."""
        comm = self._live_comm()
        self._check(tensor, "tensor")
        self._check_rank(src, "src")
        ptr = tensor.data_ptr()
        self.library.broadcast(
            ptr, ptr, tensor.numel(), flagcx_dtype(tensor.dtype), src, comm, self._stream(stream)
        )
        return tensor

    def send(self, tensor: torch.Tensor, dst: int, *, stream: int | None = None) -> None:
        comm = self._live_comm()
        self._check(tensor, "tensor")
        self._check_rank(dst, "dst")
        self.library.send(
            tensor.data_ptr(),
            tensor.numel(),
            flagcx_dtype(tensor.dtype),
            dst,
            comm,
            self._stream(stream),
        )

    def recv(self, tensor: torch.Tensor, src: int, *, stream: int | None = None) -> torch.Tensor:
        comm = self._live_comm()
        self._check(tensor, "tensor")
        self._check_rank(src, "src")
        self.library.recv(
            tensor.data_ptr(),
            tensor.numel(),
            flagcx_dtype(tensor.dtype),
            src,
            comm,
            self._stream(stream),
        )
        return tensor

    @contextlib.contextmanager
    def group(self) -> Iterator[None]:
        """Batch the calls made inside (e.g. a send/recv pair) into one FlagCX group."""
        with self._group(self._live_comm()):
            yield

    @contextlib.contextmanager
    def _group(self, comm: int) -> Iterator[None]:
        self.library.group_start(comm)
        try:
            yield
        except BaseException:
            # Close the group so FlagCX's group state is not left open; the first error wins.
            with contextlib.suppress(FlagCXError):
                self.library.group_end(comm)
            raise
        self.library.group_end(comm)

    # ------------------------------------------------------------------ argument checks

    def _check(self, tensor: torch.Tensor, name: str) -> None:
        if tensor.device != self.device:
            raise FlagCXUsageError(
                f"{name} is on {tensor.device}, but this communicator runs on {self.device}"
            )
        if not tensor.is_contiguous():
            raise FlagCXUsageError(f"{name} must be contiguous (FlagCX reads a flat buffer)")

    def _check_same(self, output: torch.Tensor, input: torch.Tensor) -> None:
        self._check(output, "output")
        self._check(input, "input")
        if output.dtype != input.dtype:
            raise FlagCXUsageError(f"output is {output.dtype} but input is {input.dtype}")

    def _check_pair(self, output: torch.Tensor, input: torch.Tensor, ok: bool, rule: str) -> None:
        self._check_same(output, input)
        if not ok:
            raise FlagCXUsageError(
                f"needs {rule} (world_size={self.world_size}); got output "
                f"{tuple(output.shape)}, input {tuple(input.shape)}"
            )

    def _check_list(self, tensors: Sequence[torch.Tensor], mine: torch.Tensor, name: str) -> None:
        """One tensor per rank, this rank's shaped like ``mine``, all like ``mine`` otherwise."""
        self._check(mine, "this rank's tensor")
        if len(tensors) != self.world_size:
            raise FlagCXUsageError(
                f"{name} needs one tensor per rank (world_size={self.world_size}); "
                f"got {len(tensors)}"
            )
        for index, tensor in enumerate(tensors):
            self._check(tensor, f"{name}[{index}]")
            if tensor.dtype != mine.dtype:
                raise FlagCXUsageError(f"{name}[{index}] is {tensor.dtype}, expected {mine.dtype}")
        if tensors[self.rank].shape != mine.shape:
            raise FlagCXUsageError(
                f"{name}[{self.rank}] (this rank's) needs shape {tuple(mine.shape)}; got "
                f"{tuple(tensors[self.rank].shape)}"
            )

    def _check_varsized(
        self,
        output: torch.Tensor,
        input: torch.Tensor,
        sizes: Sequence[int],
        *,
        gathered: torch.Tensor,
        local: torch.Tensor,
    ) -> list[int]:
        """Validate a v-collective before any call; returns the sizes as a list."""
        self._check_same(output, input)
        sizes = [int(s) for s in sizes]
        if len(sizes) != self.world_size or any(s < 0 for s in sizes):
            raise FlagCXUsageError(
                f"sizes must give one non-negative dim-0 size per rank (world_size="
                f"{self.world_size}); got {sizes}"
            )
        if gathered.dim() == 0 or gathered.shape[0] != sum(sizes):
            raise FlagCXUsageError(
                f"the gathered tensor needs dim 0 == sum(sizes) == {sum(sizes)}; "
                f"got shape {tuple(gathered.shape)}"
            )
        expected = (sizes[self.rank], *gathered.shape[1:])
        if tuple(local.shape) != expected:
            raise FlagCXUsageError(
                f"this rank's tensor needs shape {expected} (sizes[{self.rank}] rows); "
                f"got {tuple(local.shape)}"
            )
        return sizes

    def _check_rank(self, peer: int, name: str) -> None:
        if not 0 <= peer < self.world_size:
            raise FlagCXUsageError(
                f"{name}={peer} is not a rank of this group (0..{self.world_size - 1})"
            )


# --------------------------------------------------------------------------- creation checks


def _group_layout(cpu_group: Any) -> tuple[int, int]:
    """(rank, world size) of this process in ``cpu_group``, which must exist."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        raise FlagCXUsageError(
            "FlagCXCommunicator.over_group needs an initialized torch.distributed CPU (gloo) "
            "group to share the FlagCX unique id; call torch.distributed.init_process_group "
            "first"
        )
    return dist.get_rank(cpu_group), dist.get_world_size(cpu_group)


def _check_comm(lib: FlagCXLibrary, comm: int, rank: int, world_size: int) -> None:
    """Catch a communicator that FlagCX built for a different rank layout; destroy it if so."""
    got = (lib.comm_user_rank(comm), lib.comm_count(comm))
    if got != (rank, world_size):
        lib.comm_destroy(comm)
        raise FlagCXUsageError(
            f"FlagCX communicator is rank {got[0]} of {got[1]}, expected rank {rank} of "
            f"{world_size}"
        )
