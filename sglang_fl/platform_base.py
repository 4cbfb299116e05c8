"""The base of every bundle's SGLang platform class: what all sglang-fl platforms share.

Bundles subclass :class:`FLPlatform` (it subclasses SGLang's ``SRTPlatform``) and set device
identity, memory queries and server-arg defaults with SGLang's own hook names. What differs
between SGLang releases (capabilities, KV pools, graph runner, paged allocator) a bundle
declares once, in sglang-fl's ``fl_`` names; :mod:`sglang_fl.compat.platform_api` turns those
into the hooks the installed release reads. Every public name a platform class defines is
therefore either a hook of the installed release or an ``fl_`` declaration, which is what the
platform contract (:mod:`sglang_fl.compat.platform_contract`) checks.

Shared here: the out-of-tree identity, the distributed backend chosen by the settings and what
it needs of the server arguments (Layer 3, :mod:`sglang_fl.distributed.layer3`), the device a
process group binds to, the refusal of a model SGLang cannot serve here (before anything
loads), and the report of which fused ops a loaded model reaches. A bundle whose device has no
Triton names in ``fl_torch_routes`` the PyTorch routes it needs for SGLang's Triton-only paths
(:mod:`sglang_fl.compat.torch_routes`); ``load_plugin`` installs them.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from sglang.srt.platforms.device_mixin import PlatformEnum
from sglang.srt.platforms.interface import SRTPlatform

from sglang_fl.compat import model_support
from sglang_fl.compat.platform_api import Capabilities, KVPoolKind, release_hooks
from sglang_fl.config import get_settings
from sglang_fl.dispatch import oot
from sglang_fl.distributed import layer3
from sglang_fl.errors import UnservableModelError, fatal_errors


class FLPlatform(release_hooks(), SRTPlatform):
    _enum = PlatformEnum.OOT

    # ---------------------------------------------------------------- sglang-fl declarations
    # Key under which Layer 2 registers; ``forward_<key>`` is SGLang's own path here.
    fl_dispatch_key: ClassVar[str] = "native"
    # Server args a platform defaults where the user left them unset: name -> value.
    fl_server_arg_defaults: ClassVar[dict[str, Any]] = {}
    # What the device can do (read by SGLang through compat.platform_api).
    fl_capabilities: ClassVar[Capabilities] = Capabilities()
    # SGLang paths that need Triton or a vendor kernel, routed to PyTorch on this device: names
    # of compat.torch_routes.ROUTES (each with the releases it applies to).
    fl_torch_routes: ClassVar[frozenset[str]] = frozenset()

    def fl_kv_pool_cls(self, kind: KVPoolKind) -> type | None:
        """The KV pool class for ``kind``; None for SGLang's own. Raise to refuse a kind."""
        return None

    def fl_graph_runner_cls(self) -> type | None:
        """The decode graph runner when ``fl_capabilities.graph_capture``; None otherwise."""
        return None

    def fl_paged_allocator_cls(self) -> type | None:
        """The paged KV allocator class; None for SGLang's own."""
        return None

    # ---------------------------------------------------------------- SGLang hooks

    def get_dispatch_key_name(self) -> str:
        return self.fl_dispatch_key

    def get_torch_distributed_backend_str(self) -> str:
        """SGLang's process groups use this backend (Layer 3: for flagcx, sglang-fl's FlagCX
        backend for torch.distributed)."""
        return layer3.torch_backend(get_settings(), self.device_type)

    def get_group_coordinator_device(self, local_rank: int) -> torch.device:
        """The device SGLang's process groups bind to. SGLang 0.5.23 asks only for a device it
        does not know itself, and would otherwise bind them to the CPU."""
        if self.device_type == "cpu":
            return torch.device("cpu")
        return torch.device(self.device_type, local_rank)

    def apply_server_args_defaults(self, server_args: Any) -> None:
        """Refuse a model SGLang cannot serve here; fill in ``fl_server_arg_defaults`` only
        where the user left the argument unset (None), then what the distributed backend needs
        (Layer 3)."""
        refuse_unservable_model(server_args)
        for name, value in self.fl_server_arg_defaults.items():
            if getattr(server_args, name, None) is None:
                setattr(server_args, name, value)
        layer3.apply_server_args(get_settings(), server_args)

    def get_compile_backend(self, mode: str | None = None) -> str:
        return "inductor"

    def init_backend(self) -> None:
        """Per-worker hook; nothing to do for the shared part."""

    def post_load_model(self, model: torch.nn.Module) -> None:
        """Say which fused-op classes the loaded model reaches and where each one runs (SGLang
        0.5.22+ calls this once the weights are loaded)."""
        oot.report_model(model)


def refuse_unservable_model(server_args: Any) -> None:
    """End the process with one line naming the architecture and what is missing when SGLang
    cannot serve the model here (:func:`sglang_fl.compat.model_support.refusal`).

    SGLang calls ``apply_server_args_defaults`` once the model path is resolved and before any
    process loads a weight: the earliest hook that knows the model.
    """
    model_path = getattr(server_args, "model_path", None)
    if model_path is None:  # arguments that name no model (a test's stand-in): nothing to check
        return
    reason = model_support.refusal_for_model(model_path, getattr(server_args, "revision", None))
    if reason is not None:
        with fatal_errors():
            raise UnservableModelError(reason)
