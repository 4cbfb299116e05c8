"""SGLang paths that need Triton or a vendor kernel, and their PyTorch routes, per release.

SGLang picks its PyTorch code on a plain CPU (or an NPU) by its in-tree identity flags
(``_is_cpu``, ``_is_npu``), which an out-of-tree platform does not set; so on sglang-fl's CPU
platform, and on any device without Triton, these paths launch Triton or a CUDA-only choice
and fail on the first request. Setting those flags is not an option (``is_cpu()`` reads
``SGLANG_USE_CPU_ENGINE``, which pulls in sgl_kernel's CPU build). Each :class:`TorchRoute`
here goes through a mechanism SGLang declares for plugins instead -- its hook registry, its
attention-backend registry, its MLA forward-method registry -- and records the releases it
applies to.

A platform bundle declares the routes its device needs by name (``FLPlatform.fl_torch_routes``);
``load_plugin`` installs them with :func:`install` after Layer 2, in every SGLang process.
Every target is resolved when the route is installed: a release that moved one is an error
naming it, never a silently absent route.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from packaging.specifiers import SpecifierSet

from sglang_fl.compat import torch_attention
from sglang_fl.compat.hooks import register_hook, resolve
from sglang_fl.compat.versions import release, sglang_version
from sglang_fl.errors import PlatformError, one_of

logger = logging.getLogger(__name__)

OWNER = "the PyTorch routes"
FUSED_SOFTCAP = "sglang.srt.layers.logits_processor.fused_softcap"
ATTENTION_REGISTRY = "sglang.srt.layers.attention.attention_registry.register_attention_backend"
MLA_HANDLERS = "sglang.srt.models.deepseek_common.attention_backend_handler"


@dataclass(frozen=True)
class TorchRoute:
    """One SGLang path without a PyTorch choice on an out-of-tree platform, and its route.

    sglang_path: what SGLang runs there without the route, and where.
    route:       the PyTorch path instead, and the SGLang mechanism it goes through.
    releases:    the SGLang releases it applies to (a specifier on the release number).
    install:     registers the route with SGLang (imports SGLang).
    """

    name: str
    sglang_path: str
    route: str
    releases: str
    install: Callable[[], None]

    def applies(self) -> bool:
        return release(sglang_version()) in SpecifierSet(self.releases)


def softcap_inplace(logits: torch.Tensor, cap: float) -> torch.Tensor:
    """``logits = cap * tanh(logits / cap)`` in place: SGLang's Triton
    ``softcap_inplace_logits(full_logits, final_logit_softcapping)``, in PyTorch."""
    return logits.div_(cap).tanh_().mul_(cap)


def _install_final_softcap() -> None:
    register_hook(FUSED_SOFTCAP, softcap_inplace, "REPLACE", owner=OWNER)


def _install_softcapping_attention() -> None:
    register_attention_backend = resolve(ATTENTION_REGISTRY, OWNER)
    register_attention_backend("torch_native")(torch_attention.softcapping_backend_cls())


def _install_mla_forward_method() -> None:
    registry = resolve(f"{MLA_HANDLERS}.AttentionBackendRegistry", OWNER)
    registry.register("torch_native", resolve(f"{MLA_HANDLERS}._dispatch_mla_subtype", OWNER))


ROUTES: dict[str, TorchRoute] = {
    route.name: route
    for route in (
        TorchRoute(
            name="final_logit_softcap",
            sglang_path=(
                "LogitsProcessor's final logit softcapping (Gemma 2) calls the Triton kernel "
                f"{FUSED_SOFTCAP} unless SGLang's in-tree _is_cpu/_is_npu is set"
            ),
            route=f"an in-place cap * tanh(x / cap): a REPLACE hook on {FUSED_SOFTCAP}",
            releases=">=0.5.15",
            install=_install_final_softcap,
        ),
        TorchRoute(
            name="attention_logit_softcap",
            sglang_path=(
                "the torch_native attention backend ignores RadixAttention.logit_cap "
                "(Gemma 2's attention softcapping; SDPA has no cap)"
            ),
            route=(
                "torch_native with the cap applied on capped layers "
                "(compat/torch_attention.py): register_attention_backend('torch_native')"
            ),
            releases=">=0.5.15",
            install=_install_softcapping_attention,
        ),
        TorchRoute(
            name="mla_forward_method",
            sglang_path=(
                "DeepSeek MLA's forward-method registry has no torch_native handler and takes "
                "the Triton backend's, which runs a prefill without prefix as MHA on fresh K/V "
                "that torch_native does not read (it reads the latent MLA KV cache)"
            ),
            route=(
                "SGLang's own MLA choice (_dispatch_mla_subtype) on torch_native: "
                f"{MLA_HANDLERS}.AttentionBackendRegistry.register('torch_native', ...)"
            ),
            releases=">=0.5.15",
            install=_install_mla_forward_method,
        ),
    )
}


def install(names: Iterable[str], platform: str) -> list[str]:
    """Install the routes ``platform`` declares that apply to this SGLang; their names."""
    routes = [_route(name, platform) for name in sorted(set(names))]
    installed = []
    for route in routes:
        if route.applies():
            route.install()
            installed.append(route.name)
    if installed:
        logger.info("PyTorch routes for the %s platform: %s", platform, ", ".join(installed))
    return installed


def _route(name: str, platform: str) -> TorchRoute:
    if name not in ROUTES:
        raise PlatformError(
            f"the {platform} platform declares the PyTorch route {name!r}, which sglang-fl does "
            f"not have; known: {one_of(ROUTES)}"
        )
    return ROUTES[name]
