"""FlagCX as a torch.distributed backend: how SGLang's process groups run on FlagCX.

SGLang creates every device process group with ``torch.distributed.new_group(backend=...)``,
taking the backend from the platform's ``get_torch_distributed_backend_str()``. Registering
FlagCX as a torch.distributed backend (:data:`TORCH_BACKEND`) and returning that name from the
platform is SGLang's own mechanism for choosing a communication library. Every collective that
SGLang's ``GroupCoordinator`` -- or any model code -- runs on a device group then goes through
:class:`FlagCXProcessGroup` and from there through
:class:`~sglang_fl.distributed.flagcx_communicator.FlagCXCommunicator`: all_reduce (in place),
all_gather (equal and uneven), reduce_scatter, broadcast, reduce, send/recv, gather/scatter,
all_to_all, barrier, and the tensor-dict helpers, which SGLang builds from broadcast and
send/recv. Nothing of ``GroupCoordinator`` is patched for that.

torch accepts a ``torch.distributed.ProcessGroup`` subclass from a backend's creator and calls
its methods, which speak torch's backend-level API: tensor arguments are lists with one tensor
(one device per process), ranks are ranks in the group, options carry the reduce op and root.
torch 2.13 calls ``all_gather_single``, ``reduce_scatter_single`` and ``all_to_all_single``
where earlier releases call ``_allgather_base``, ``_reduce_scatter_base`` and
``alltoall_base``; both names are defined (only 2.13 runs in CI; the GPU host has 2.11).

Completion: FlagCX enqueues on the device's current stream, so a result is ordered before
everything later on that stream, which is what ``Work.wait()`` promises for NCCL. The returned
work is therefore complete at once.

Host tensors on a device group (torch's object collectives use CPU tensors on any group) are
staged through a device copy. On the CPU platform the device is the host: nothing is staged.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from sglang_fl.distributed.flagcx import FlagCXLibrary, version_string
from sglang_fl.distributed.flagcx_communicator import FlagCXCommunicator
from sglang_fl.errors import FlagCXUsageError

logger = logging.getLogger(__name__)

TORCH_BACKEND = "sglang_fl_flagcx"
_UNIQUE_ID_KEY = "sglang_fl/flagcx_unique_id"

_registered: tuple[FlagCXLibrary, str] | None = None
_register_lock = threading.Lock()


def register_torch_backend(library: FlagCXLibrary, device_type: str) -> str:
    """Make :data:`TORCH_BACKEND` a torch.distributed backend over ``library`` for tensors of
    ``device_type``; returns the backend name. Idempotent for the same arguments."""
    global _registered
    with _register_lock:
        if _registered is None:
            creator = _creator(library, device_type)
            dist.Backend.register_backend(TORCH_BACKEND, creator, devices=[device_type])
            _registered = (library, device_type)
        elif _registered != (library, device_type):
            raise FlagCXUsageError(
                f"the {TORCH_BACKEND} torch.distributed backend is already registered for "
                f"{_registered[0].path} on {_registered[1]}; cannot re-register it for "
                f"{library.path} on {device_type}"
            )
    return TORCH_BACKEND


def _creator(library: FlagCXLibrary, device_type: str):
    def create(store: Any, rank: int, size: int, timeout: timedelta) -> FlagCXProcessGroup:
        return FlagCXProcessGroup(library, store, rank, size, device_type)

    return create


def _exchange_unique_id(library: FlagCXLibrary, store: Any, rank: int) -> bytes:
    """Group rank 0 makes the id and publishes it in the group's store (a per-group prefix
    store), which every rank reads; ``store.get`` waits for it up to the store's timeout."""
    if rank == 0:
        store.set(_UNIQUE_ID_KEY, library.get_unique_id())
    return bytes(store.get(_UNIQUE_ID_KEY))


def _only(tensors: Sequence[Any], what: str) -> Any:
    if len(tensors) != 1:
        raise FlagCXUsageError(
            f"FlagCX process groups drive one device per process: {what} needs exactly one "
            f"entry, got {len(tensors)}"
        )
    return tensors[0]


class _CompletedWork(dist.Work):
    """The work of an op that FlagCX has already enqueued on the current stream."""

    def __init__(self, result: Any) -> None:
        super().__init__()
        self._future: torch.futures.Future = torch.futures.Future()
        self._future.set_result(result)

    def wait(self, timeout: timedelta | None = None) -> bool:
        return True

    def is_completed(self) -> bool:
        return True

    def is_success(self) -> bool:
        return True

    def get_future(self) -> torch.futures.Future:
        return self._future


class FlagCXProcessGroup(dist.ProcessGroup):
    """One torch process group backed by one :class:`FlagCXCommunicator` on this process's
    current device of ``device_type``."""

    def __init__(
        self, library: FlagCXLibrary, store: Any, rank: int, size: int, device_type: str
    ) -> None:
        super().__init__(rank, size)
        self._group_name = self._group_desc = ""
        unique_id = _exchange_unique_id(library, store, rank)
        self.communicator = FlagCXCommunicator.create(
            library, unique_id, rank=rank, world_size=size, device=device_type
        )
        # one line per multi-rank group (SGLang also builds many single-rank ones)
        logger.log(
            logging.INFO if size > 1 else logging.DEBUG,
            "Layer 3: FlagCX %s process group rank %d of %d on %s (%s)",
            version_string(library.version), rank, size, self.communicator.device, library.path,
        )  # fmt: skip

    def getBackendName(self) -> str:
        return TORCH_BACKEND

    # torch keeps a group's name and description in its C++ backends, which a Python process
    # group does not have; torch sets and reads them through these (destroy_process_group
    # unregisters the group by name).
    def _set_group_name(self, name: str) -> None:
        self._group_name = name

    @property
    def group_name(self) -> str:
        return self._group_name

    def _set_group_desc(self, desc: str) -> None:
        self._group_desc = desc

    @property
    def group_desc(self) -> str:
        return self._group_desc

    def shutdown(self) -> None:
        """Called by ``destroy_process_group``: destroy the FlagCX communicator now."""
        self.communicator.close()

    # ------------------------------------------------------------------ helpers

    def _apply(self, op: Callable[..., Any], *tensors: torch.Tensor) -> None:
        """Run ``op`` on the tensors as they are when all are on the communicator's device
        (the hot path: no copy, no allocation); stage host tensors through the device."""
        device = self.communicator.device
        if all(t.device == device for t in tensors):
            op(*tensors)
            return
        staged = [t if t.device == device else t.to(device) for t in tensors]
        op(*staged)
        for original, copy in zip(tensors, staged, strict=True):
            if copy is not original:
                original.copy_(copy)

    # ------------------------------------------------------------------ collectives

    def allreduce(self, tensors: list[torch.Tensor], opts: Any = None) -> dist.Work:
        op, comm = _reduce_op(opts), self.communicator
        self._apply(lambda t: comm.all_reduce(t, op), _only(tensors, "allreduce"))
        return _CompletedWork(tensors)

    def allreduce_coalesced(self, tensors: list[torch.Tensor], opts: Any = None) -> dist.Work:
        op, comm = _reduce_op(opts), self.communicator

        def reduce_all(*staged: torch.Tensor) -> None:
            with comm.group():
                for tensor in staged:
                    comm.all_reduce(tensor, op)

        self._apply(reduce_all, *tensors)
        return _CompletedWork(tensors)

    def broadcast(self, tensors: list[torch.Tensor], opts: Any = None) -> dist.Work:
        comm, root = self.communicator, opts.rootRank
        self._apply(lambda t: comm.broadcast(t, root), _only(tensors, "broadcast"))
        return _CompletedWork(tensors)

    def reduce(self, tensors: list[torch.Tensor], opts: Any = None) -> dist.Work:
        comm, root, op = self.communicator, opts.rootRank, _reduce_op(opts)
        self._apply(lambda t: comm.reduce(t, root, op), _only(tensors, "reduce"))
        return _CompletedWork(tensors)

    def allgather(
        self, output_lists: list[list[torch.Tensor]], inputs: list[torch.Tensor], opts: Any = None
    ) -> dist.Work:
        outputs, source = _only(output_lists, "allgather outputs"), _only(inputs, "allgather")
        comm = self.communicator
        self._apply(lambda s, *outs: comm.all_gather_list(outs, s), source, *outputs)
        return _CompletedWork(output_lists)

    def all_gather_single(
        self, output: torch.Tensor, input: torch.Tensor, opts: Any = None
    ) -> dist.Work:
        self._apply(self.communicator.all_gather, output, input)
        return _CompletedWork([output])

    _allgather_base = all_gather_single

    def reduce_scatter(
        self, outputs: list[torch.Tensor], input_lists: list[list[torch.Tensor]], opts: Any = None
    ) -> dist.Work:
        output, chunks = _only(outputs, "reduce_scatter"), _only(input_lists, "reduce_scatter")
        comm, op = self.communicator, _reduce_op(opts)
        self._apply(lambda o, *ins: comm.reduce_scatter_list(o, ins, op), output, *chunks)
        return _CompletedWork(outputs)

    def reduce_scatter_single(
        self, output: torch.Tensor, input: torch.Tensor, opts: Any = None
    ) -> dist.Work:
        comm, op = self.communicator, _reduce_op(opts)
        self._apply(lambda o, i: comm.reduce_scatter(o, i, op), output, input)
        return _CompletedWork([output])

    _reduce_scatter_base = reduce_scatter_single

    def send(self, tensors: list[torch.Tensor], dst: int, tag: int = 0) -> dist.Work:
        """``tag`` is accepted and not used: FlagCX matches sends and receives in order (so
        does torch's NCCL backend)."""
        comm = self.communicator
        self._apply(lambda t: comm.send(t, dst), _only(tensors, "send"))
        return _CompletedWork(tensors)

    def recv(self, tensors: list[torch.Tensor], src: int, tag: int = 0) -> dist.Work:
        comm = self.communicator
        self._apply(lambda t: comm.recv(t, src), _only(tensors, "recv"))
        return _CompletedWork(tensors)

    def gather(
        self, output_lists: list[list[torch.Tensor]], inputs: list[torch.Tensor], opts: Any = None
    ) -> dist.Work:
        source, root = _only(inputs, "gather"), opts.rootRank
        outputs = _only(output_lists, "gather outputs") if self.rank() == root else []
        exchange = self._exchange_with_root
        self._apply(lambda s, *outs: exchange(root, s, outs, gather=True), source, *outputs)
        return _CompletedWork(output_lists)

    def scatter(
        self, outputs: list[torch.Tensor], input_lists: list[list[torch.Tensor]], opts: Any = None
    ) -> dist.Work:
        target, root = _only(outputs, "scatter"), opts.rootRank
        chunks = _only(input_lists, "scatter inputs") if self.rank() == root else []
        exchange = self._exchange_with_root
        self._apply(lambda t, *ins: exchange(root, t, ins, gather=False), target, *chunks)
        return _CompletedWork(outputs)

    def _exchange_with_root(
        self, root: int, mine: torch.Tensor, at_root: Sequence[torch.Tensor], *, gather: bool
    ) -> None:
        """Gather (every rank's ``mine`` into the root's list) or scatter (the root's list
        out to every rank's ``mine``), as send/recv pairs in one FlagCX group."""
        comm = self.communicator
        with comm.group():
            if self.rank() != root:
                if gather:
                    comm.send(mine, root)
                else:
                    comm.recv(mine, root)
                return
            for peer, tensor in enumerate(at_root):
                if peer == root:
                    destination, source = (tensor, mine) if gather else (mine, tensor)
                    destination.copy_(source)
                elif gather:
                    comm.recv(tensor, peer)
                else:
                    comm.send(tensor, peer)

    def all_to_all_single(
        self,
        output: torch.Tensor,
        input: torch.Tensor,
        output_split_sizes: list[int],
        input_split_sizes: list[int],
        opts: Any = None,
    ) -> dist.Work:
        size = self.size()

        def exchange(out: torch.Tensor, inp: torch.Tensor) -> None:
            outs = _split_rows(out, output_split_sizes, size)
            self._all_to_all(outs, _split_rows(inp, input_split_sizes, size))

        self._apply(exchange, output, input)
        return _CompletedWork([output])

    alltoall_base = all_to_all_single

    def alltoall(
        self, outputs: list[torch.Tensor], inputs: list[torch.Tensor], opts: Any = None
    ) -> dist.Work:
        count = len(outputs)
        self._apply(lambda *t: self._all_to_all(t[:count], t[count:]), *outputs, *inputs)
        return _CompletedWork(outputs)

    def _all_to_all(self, outputs: Sequence[torch.Tensor], inputs: Sequence[torch.Tensor]) -> None:
        comm, me = self.communicator, self.rank()
        if len(outputs) != self.size() or len(inputs) != self.size():
            raise FlagCXUsageError(
                f"all_to_all needs one input and one output chunk per rank ({self.size()}); "
                f"got {len(inputs)} and {len(outputs)}"
            )
        outputs[me].copy_(inputs[me])
        with comm.group():
            for peer in range(self.size()):
                if peer != me:
                    comm.send(inputs[peer], peer)
                    comm.recv(outputs[peer], peer)

    def barrier(self, opts: Any = None) -> dist.Work:
        """A one-element all-reduce, waited for on the host (as torch's NCCL barrier does)."""
        token = torch.zeros(1, device=self.communicator.device)
        self.communicator.all_reduce(token)
        _synchronize(self.communicator.device)
        return _CompletedWork([])


def _reduce_op(opts: Any) -> Any:
    return dist.ReduceOp.SUM if opts is None else opts.reduceOp


def _split_rows(tensor: torch.Tensor, split_sizes: list[int], ranks: int) -> list[torch.Tensor]:
    """``all_to_all_single``'s chunks: the given dim-0 sizes, or equal parts when none."""
    sizes = list(split_sizes) or [tensor.shape[0] // ranks] * ranks
    return list(tensor.split(sizes))


def _synchronize(device: torch.device) -> None:
    if device.type != "cpu":
        getattr(torch, device.type).synchronize(device)
