"""SGLang's variable-size collectives where SGLang has no implementation of its own.

``GroupCoordinator.all_gatherv`` and ``reduce_scatterv`` (DP attention, the MoE token
dispatchers) exist in SGLang only on top of PyNccl and fail where there is none: on gloo, HCCL
and FlagCX. These functions implement the same contract (arguments, output allocation and
shape checks, return values) on the group's device process group; the hooks in
:mod:`sglang_fl.distributed.sglang_hooks` route to them only when PyNccl is absent.

- FlagCX groups use the communicator's grouped calls (one broadcast / reduce per rank inside
  ``flagcxGroupStart/End``).
- Other backends use torch.distributed: an equal-size gather is one ``all_gather_into_tensor``,
  an uneven one a broadcast per rank into its rows; a reduce-scatter is an all-reduce of a copy
  of the input and a slice of it (twice the traffic of a reduce-scatter, but correct on every
  backend, gloo included, and independent of the receiving rank like SGLang's deterministic
  mode).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist

from sglang_fl.distributed.flagcx_communicator import FlagCXCommunicator
from sglang_fl.distributed.flagcx_process_group import FlagCXProcessGroup


def all_gatherv(
    group: Any,
    input_: torch.Tensor | Sequence[torch.Tensor],
    sizes: Sequence[int] | None = None,
    output: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """``GroupCoordinator.all_gatherv``: every rank's rows (``sizes[r]`` of them from rank r)
    concatenated along dim 0; one result per input tensor, in a list as SGLang returns it."""
    single = isinstance(input_, torch.Tensor)
    if output is not None and not single:
        raise ValueError("all_gatherv `output` requires a single-tensor input")
    inputs = [input_] if single else list(input_)
    results = []
    for tensor in inputs:
        out, uneven = _gather_output(group, tensor, sizes, output)
        _gather_rows(group, out, tensor, uneven)
        results.append(out)
    return results


def reduce_scatterv(
    group: Any,
    input_: torch.Tensor,
    output: torch.Tensor | None = None,
    sizes: Sequence[int] | None = None,
) -> torch.Tensor:
    """``GroupCoordinator.reduce_scatterv``: this rank's rows of the sum over ranks of
    ``input_`` (``sizes[rank]`` rows at their offset, or an equal share)."""
    rank, world = group.rank_in_group, group.world_size
    if sizes is not None:
        assert len(sizes) == world and input_.shape[0] == sum(sizes)
        chunk, offset = sizes[rank], sum(sizes[:rank])
    else:
        assert input_.shape[0] % world == 0
        chunk = input_.shape[0] // world
        offset = chunk * rank
    shape = (chunk, *input_.shape[1:])
    if output is None:
        output = torch.empty(shape, dtype=input_.dtype, device=input_.device)
    assert output.shape == shape
    communicator = _flagcx(group)
    if communicator is not None:
        split = list(sizes) if sizes is not None else [chunk] * world
        return communicator.reduce_scatterv(output, input_, split)
    reduced = input_.clone()
    dist.all_reduce(reduced, group=group.device_group)
    output.copy_(reduced.narrow(0, offset, chunk))
    return output


def _gather_output(
    group: Any, tensor: torch.Tensor, sizes: Sequence[int] | None, output: torch.Tensor | None
) -> tuple[torch.Tensor, list[int] | None]:
    """The output buffer (given or new) and the per-rank sizes, None when they are equal."""
    world = group.world_size
    if sizes is not None:
        assert len(sizes) == world and tensor.shape[0] == sizes[group.rank_in_group]
        shape = (sum(sizes), *tensor.shape[1:])
        uneven = None if all(s == sizes[0] for s in sizes) else list(sizes)
    else:
        shape = (tensor.shape[0] * world, *tensor.shape[1:])
        uneven = None
    if output is None:
        return torch.empty(shape, dtype=tensor.dtype, device=tensor.device), uneven
    assert tuple(output.shape) == tuple(shape), (
        f"all_gatherv output buffer shape {tuple(output.shape)} != expected {tuple(shape)}"
    )
    return output, uneven


def _gather_rows(
    group: Any, out: torch.Tensor, tensor: torch.Tensor, sizes: list[int] | None
) -> None:
    communicator = _flagcx(group)
    if communicator is not None:
        if sizes is None:
            communicator.all_gather(out, tensor)
        else:
            communicator.all_gatherv(out, tensor, sizes)
        return
    if sizes is None:
        dist.all_gather_into_tensor(out, tensor, group=group.device_group)
        return
    rows = out.split(sizes)
    rows[group.rank_in_group].copy_(tensor)
    for rank, part in enumerate(rows):
        dist.broadcast(part, src=group.ranks[rank], group=group.device_group)


def _flagcx(group: Any) -> FlagCXCommunicator | None:
    device_group = group.device_group
    return device_group.communicator if isinstance(device_group, FlagCXProcessGroup) else None
