"""The base of every bundle's SGLang platform class: what all sglang-fl platforms share.

Bundles subclass :class:`FLPlatform` (it subclasses SGLang's ``SRTPlatform``) and set device
identity, memory queries and server-arg defaults. Shared here: the out-of-tree identity, the
distributed backend chosen by the settings and what it needs of the server arguments (Layer 3,
:mod:`sglang_fl.distributed.layer3`), and the KV-pool/allocator factories,
whose SGLang import paths come from the version adapter.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sglang.srt.platforms.device_mixin import PlatformEnum
from sglang.srt.platforms.interface import SRTPlatform

from sglang_fl import compat
from sglang_fl.config import get_settings
from sglang_fl.distributed import layer3


class FLPlatform(SRTPlatform):
    _enum = PlatformEnum.OOT
    dispatch_key: str = "native"
    # server args a platform defaults when the user left them unset: name -> value
    server_arg_defaults: ClassVar[dict[str, Any]] = {}

    def get_dispatch_key_name(self) -> str:
        """Key under which Layer 2 registers; ``forward_<key>`` is SGLang's own path here."""
        return self.dispatch_key

    def get_torch_distributed_backend_str(self) -> str:
        """SGLang's process groups use this backend (Layer 3: for flagcx, sglang-fl's FlagCX
        backend for torch.distributed)."""
        return layer3.torch_backend(get_settings(), self.device_type)

    def apply_server_args_defaults(self, server_args: Any) -> None:
        """Fill in ``server_arg_defaults`` only where the user left the argument unset (None),
        then what the distributed backend needs (Layer 3)."""
        for name, value in self.server_arg_defaults.items():
            if getattr(server_args, name, None) is None:
                setattr(server_args, name, value)
        layer3.apply_server_args(get_settings(), server_args)

    def get_mha_kv_pool_cls(self) -> type:
        return compat.mha_kv_pool_cls()

    def get_paged_allocator_cls(self) -> type:
        return compat.allocator_factory()

    def get_compile_backend(self, mode: str | None = None) -> str:
        return "inductor"

    def init_backend(self) -> None:
        """Per-worker hook; nothing to do for the shared part."""
