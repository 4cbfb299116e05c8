"""Layer 3: which communication library SGLang's process groups use, set up per process.

SGLang creates each device process group with the torch.distributed backend its platform names
(``get_torch_distributed_backend_str``), and adds its own NCCL communicators on CUDA. sglang-fl
decides per backend (``Settings.dist_backend``; docs/architecture.md, "Layer 3"):

- ``nccl``: nothing of sglang-fl's is in the path. SGLang's PyNccl, custom all-reduce and
  torch.distributed/NCCL stay in charge exactly as without the plugin, so TP on NVIDIA is as
  fast as vanilla SGLang.
- ``hccl`` / ``gloo``: the platform names the torch backend and SGLang's own torch.distributed
  paths (its NpuCommunicator on Ascend) run it. sglang-fl adds only the variable-size
  collectives that SGLang implements solely on PyNccl.
- ``flagcx``: FlagCX is registered as a torch.distributed backend (:mod:`.flagcx_process_group`)
  and the platform names it, so every device-group collective runs on FlagCX; SGLang's
  NCCL/IPC side channels are switched off (server arguments here, one hook for PyNccl) so that
  none bypasses it; the variable-size collectives run on FlagCX too.
"""

from __future__ import annotations

import logging
from typing import Any

from sglang_fl.config.settings import Settings

logger = logging.getLogger(__name__)

# Server arguments forced under flagcx, and why: each enables an NCCL or CUDA-IPC path that
# would move data outside FlagCX.
FLAGCX_SERVER_ARGS: dict[str, bool] = {
    "disable_custom_all_reduce": True,  # CUDA-IPC all-reduce kernels
    "enforce_disable_flashinfer_allreduce_fusion": True,  # FlashInfer's own all-reduce
    "enable_mscclpp": False,  # MSCCL++ all-reduce
    "enable_torch_symm_mem": False,  # torch symmetric-memory all-reduce
    "enable_symm_mem": False,  # NCCL symmetric-memory buffers via PyNccl
}
# Backends on which SGLang has no PyNccl, so sglang-fl supplies all_gatherv/reduce_scatterv.
VARSIZED_BACKENDS = ("gloo", "hccl", "flagcx")


def torch_backend(settings: Settings, device_type: str) -> str:
    """The torch.distributed backend name for SGLang's device process groups."""
    if settings.dist_backend != "flagcx":
        return settings.dist_backend
    from sglang_fl.distributed.flagcx import load_library
    from sglang_fl.distributed.flagcx_process_group import register_torch_backend

    return register_torch_backend(load_library(settings.flagcx_path), device_type)


def install(settings: Settings, device_type: str) -> None:
    """Prepare this process for the selected backend. Runs in ``load_plugin``, before SGLang
    creates any process group; a FlagCX library that cannot be used stops startup here."""
    from sglang_fl.distributed import sglang_hooks

    backend = settings.dist_backend
    name = torch_backend(settings, device_type)
    if backend == "flagcx":
        sglang_hooks.install_flagcx_hooks()
    if backend in VARSIZED_BACKENDS:
        sglang_hooks.install_varsized_hooks()
    logger.info(
        "Layer 3: distributed backend %s (torch.distributed backend %r, from %s)%s",
        backend, name, settings.sources["dist_backend"], _library_note(settings),
    )  # fmt: skip


def apply_server_args(settings: Settings, server_args: Any) -> None:
    """Force the server arguments FlagCX needs; say so for each the user had set otherwise."""
    if settings.dist_backend != "flagcx":
        return
    changed = []
    for name, value in FLAGCX_SERVER_ARGS.items():
        current = getattr(server_args, name)
        if current == value:
            continue
        if value is False:  # an opt-in NCCL feature the user asked for
            logger.warning(
                "sglang-fl: %s=%s is overridden to %s: with SGLANG_FL_DIST_BACKEND=flagcx "
                "all collectives run on FlagCX",
                name, current, value,
            )  # fmt: skip
        setattr(server_args, name, value)
        changed.append(f"{name}={value}")
    if changed:
        logger.info("Layer 3 (flagcx): set %s", ", ".join(changed))


def _library_note(settings: Settings) -> str:
    if settings.dist_backend != "flagcx":
        return ""
    from sglang_fl.distributed.flagcx import load_library, version_string

    library = load_library(settings.flagcx_path)
    return f"; FlagCX {version_string(library.version)} at {library.path}"
