"""SGLang's fused-op machinery as sglang-fl's Layer 2 uses it, on every supported release.

0.5.15-0.5.17: fused ops subclass ``MultiPlatformOp``, which binds the forward eagerly in
``__init__``; 0.5.18+: ``BaseFusedOp``, bound lazily on the first call. Both keep the bound
forward in ``self._forward_method`` and share ``register_oot_forward(op_cls, fn, key)``, keyed
on the exact class. Also here: SGLang's own CUDA rope kernel and its Triton mrope kernel (the
NVIDIA vendor backend calls them), and the server args some op constructors read before 0.5.18.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable, Iterable, Iterator
from types import ModuleType

from torch import nn

from sglang_fl.compat.versions import SUPPORTED_RANGE, at_least
from sglang_fl.errors import UnsupportedSGLangError
from sglang_fl.ops.catalog import OpFamily

# Modules that define the op families' classes, per family root.
_ACTIVATION = ("sglang.srt.layers.activation",)
_LAYERNORM = ("sglang.srt.layers.layernorm",)
_ROTARY = ("sglang.srt.layers.rotary_embedding",)
_FAMILY_MODULES = {
    "SiluAndMul": _ACTIVATION,
    "GeluAndMul": _ACTIVATION,
    "NewGELU": _ACTIVATION,
    "QuickGELU": _ACTIVATION,
    "RMSNorm": _LAYERNORM,
    "GemmaRMSNorm": _LAYERNORM,
    "Gemma3RMSNorm": _LAYERNORM,
    "RMSNormWithoutScale": _LAYERNORM,
    "LayerNorm": _LAYERNORM,
    "RotaryEmbedding": _ROTARY,
    "MRotaryEmbedding": _ROTARY,
    "DeepseekScalingRotaryEmbedding": _ROTARY,
}


@functools.cache
def fused_op_base() -> type[nn.Module]:
    """The base class SGLang's fused ops inherit in this version (owner of the OOT registry)."""
    from sglang.srt.layers.layernorm import RMSNorm

    for candidate in ("sglang.kernels.fused_op:BaseFusedOp",
                      "sglang.srt.layers.utils.multi_platform:MultiPlatformOp"):  # fmt: skip
        try:
            base = pkgutil.resolve_name(candidate)
        except (ImportError, AttributeError):
            continue
        if issubclass(RMSNorm, base):
            return base
    raise UnsupportedSGLangError(
        f"cannot find SGLang's fused-op base class; sglang-fl supports sglang {SUPPORTED_RANGE}"
    )


def _subclasses(cls: type) -> Iterator[type]:
    yield cls
    for sub in cls.__subclasses__():
        yield from _subclasses(sub)


def _family_modules(root: str) -> Iterator[ModuleType]:
    """The modules that may define ``root`` and its subclasses (a package: all its modules)."""
    for module_name in _FAMILY_MODULES[root]:
        module = importlib.import_module(module_name)
        yield module
        if hasattr(module, "__path__"):  # a package: its submodules hold the subclasses
            for info in pkgutil.iter_modules(module.__path__, module_name + "."):
                yield importlib.import_module(info.name)


def family_classes(family: OpFamily) -> dict[str, type[nn.Module]]:
    """The classes of ``family`` present in this SGLang, keeping the root's forward semantics.

    A catalogued subclass that overrides ``forward``/``forward_native`` has different
    semantics in this version and is left out (it stays on SGLang's own path).
    """
    found = {cls.__name__: cls for cls in _subclasses(_find_root(family.root))}
    root = found[family.root]
    return {
        name: cls
        for name, cls in found.items()
        if name in family.classes and _same_forward(cls, root)
    }


def _find_root(name: str) -> type:
    for module in _family_modules(name):
        cls = getattr(module, name, None)
        if isinstance(cls, type):
            return cls
    raise UnsupportedSGLangError(f"SGLang class {name} not found in {_FAMILY_MODULES[name]}")


def _same_forward(cls: type, root: type) -> bool:
    return all(getattr(cls, m) is getattr(root, m) for m in ("forward", "forward_native"))


def register_oot_forward(op_cls: type, fn: Callable, dispatch_key: str) -> None:
    fused_op_base().register_oot_forward(op_cls, fn, dispatch_key)


# Module-level op instances SGLang builds when the module is imported (module, attribute).
_PREBUILT = (("sglang.srt.layers.activation", "_ACTIVATION_REGISTRY"),)


def rebind_prebuilt(registered: Iterable[type]) -> int:
    """Dispatch again the op instances SGLang built at import, before sglang-fl registered.

    Before 0.5.18 a fused op binds its forward in ``__init__`` (``MultiPlatformOp``), so module
    singletons such as the ``gelu_new`` NewGELU that Phi-2 and GPT-J share (``get_act_fn``) kept
    SGLang's own forward. Later releases bind on the first call: nothing to do. Returns how
    many instances were rebound."""
    base = fused_op_base()
    if base.__name__ != "MultiPlatformOp":
        return 0
    classes = tuple(registered)
    count = 0
    for module_name, attribute in _PREBUILT:
        instances = getattr(importlib.import_module(module_name), attribute, {})
        for instance in instances.values():
            if type(instance) in classes:
                instance._forward_method = instance.dispatch_forward()
                count += 1
    return count


def install_forward(module: nn.Module, forward: Callable) -> None:
    """Make ``forward`` what ``module.forward`` calls from now on (both versions read this)."""
    module._forward_method = forward


def own_path(module: nn.Module, dispatch_key: str) -> Callable:
    """What SGLang itself runs for ``module`` on an OOT platform with ``dispatch_key``:

    ``forward_<key>`` if the op class (not the base) defines it, else ``forward_native``.
    """
    base = fused_op_base()
    name = f"forward_{dispatch_key}"
    for klass in type(module).__mro__:
        if klass is base:
            break
        if name in klass.__dict__:
            return getattr(module, name)
    return module.forward_native


@functools.cache
def cuda_rope_kernel() -> Callable[..., None]:
    """SGLang's CUDA rope kernel ``apply_rope_with_cos_sin_cache_inplace(q, k, cos_sin_cache,
    positions, *, is_neox)`` (in place on ``[tokens, heads, rotary_dim]`` views, fp32 cache).

    It moved from ``sglang.jit_kernel.rope`` (0.5.15) to ``sglang.kernels.ops.attention.rope``.
    """
    for candidate in ("sglang.kernels.ops.attention.rope:apply_rope_with_cos_sin_cache_inplace",
                      "sglang.jit_kernel.rope:apply_rope_with_cos_sin_cache_inplace"):  # fmt: skip
        try:
            return pkgutil.resolve_name(candidate)
        except (ImportError, AttributeError):
            continue
    raise UnsupportedSGLangError(
        f"cannot find SGLang's CUDA rope kernel; sglang-fl supports sglang {SUPPORTED_RANGE}"
    )


@functools.cache
def triton_mrope_kernel() -> Callable[..., None]:
    """SGLang's Triton multimodal-rope kernel ``triton_mrope_fused(q, k, cos_sin_cache,
    positions, mrope_section, head_size, rotary_dim, mrope_interleaved, mrope_interleaved_glm,
    is_neox_style, axis_map)``: in place on 2-D ``[tokens, heads * head_size]`` q and k,
    ``positions`` ``[3, tokens]``, computing in the cache's dtype (SGLang casts the cache to the
    query dtype first; 0.5.15's kernel casts it itself, on every call, when they differ).

    It moved from ``sglang.srt.layers.rotary_embedding.triton_kernels`` (0.5.15) to
    ``sglang.kernels.ops.attention.rotary_triton`` (0.5.21+).
    """
    for candidate in (
        "sglang.kernels.ops.attention.rotary_triton:triton_mrope_fused",
        "sglang.srt.layers.rotary_embedding.triton_kernels:triton_mrope_fused",
    ):
        try:
            return pkgutil.resolve_name(candidate)
        except (ImportError, AttributeError):
            continue
    raise UnsupportedSGLangError(
        f"cannot find SGLang's Triton mrope kernel; sglang-fl supports sglang {SUPPORTED_RANGE}"
    )


def publish_default_server_args() -> None:
    """Give op constructors the global server args a running server would have published.

    SGLang < 0.5.18 reads them in some fused-op constructors (SiluAndMul, RotaryEmbedding);
    needed only when building op modules outside a server (benchmarks, tests).
    """
    if at_least("0.5.18"):
        return
    from sglang.srt.server_args import ServerArgs, set_global_server_args_for_scheduler

    set_global_server_args_for_scheduler(ServerArgs(model_path="dummy"))
