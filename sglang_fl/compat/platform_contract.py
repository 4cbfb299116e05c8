"""The platform contract: does a platform class fit an SGLang release's platform API?

SGLang's platform API changes from release to release, and it changes quietly: a hook it
stops calling is simply never called again, and a capability it adds defaults to False. So
three questions are asked of a platform class against a release (:class:`ReleaseAPI`):

1. **No stale hooks.** Every public name the class (or a non-SGLang base, FLPlatform
   included) defines is a member of the release's ``SRTPlatform``, apart from sglang-fl's own
   ``fl_`` declarations and the hooks :data:`~.platform_api.HOOKS_ADDED` says a later release
   brings. A hook SGLang removed or renamed is caught instead of silently never called.
2. **No missing hooks.** Every hook SGLang requires of an out-of-tree platform is implemented:
   a base method that only raises ``NotImplementedError`` and that SGLang's code calls on the
   platform, and every hook SGLang names through ``require_out_of_tree_impl``. A hook needed
   only for something the platform does not declare (graph capture, speculative decoding) is
   exempt while it does not.
3. **Capabilities as declared.** On releases with a capability struct, every field SGLang
   reads is one sglang-fl declares (:class:`~.platform_api.Capabilities`), and the class's
   struct carries its ``fl_capabilities``; hooks the adapter derives from the ``fl_``
   declarations are not overridden around it.

The tests of every CPU environment run it for each bundle against the installed release; at
startup it decides whether a release newer than the tested ones may run
(``SGLANG_FL_ALLOW_UNTESTED_SGLANG=1``). :meth:`ReleaseAPI.installed` reads the installed
SGLang (its classes, and its source for the calls); tests build synthetic ones.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import inspect
import pkgutil
import re
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from packaging.version import Version

from sglang_fl.compat.platform_api import (
    ADAPTER_CLASSES,
    CAPABILITY_NAMES,
    HOOKS_ADDED,
    struct_fields,
    to_struct,
)

OWN_PREFIX = "fl_"  # sglang-fl's own declarations on a platform class, never SGLang hooks


def _declares_graph_capture(platform: object, base: type) -> bool:
    return platform.fl_capabilities.graph_capture  # type: ignore[attr-defined]


def _declares_piecewise_graphs(platform: object, base: type) -> bool:
    return platform.fl_capabilities.piecewise_graph  # type: ignore[attr-defined]


def _declares_speculative(platform: object, base: type) -> bool:
    name = "supports_speculative_algorithm"
    return getattr(type(platform), name, None) is not getattr(base, name, None)


# Hooks SGLang needs only when the platform declares something: (what, is it declared?).
CONDITIONAL_HOOKS: dict[str, tuple[str, Callable[[object, type], bool]]] = {
    "get_graph_runner_cls": ("graph capture", _declares_graph_capture),
    "get_piecewise_backend_cls": ("piecewise prefill graphs", _declares_piecewise_graphs),
    "get_default_speculative_draft_attention_backend": (
        "speculative decoding", _declares_speculative,
    ),
}  # fmt: skip

# What SGLang's code calls on the platform, and the hooks it names as required.
_CALL = re.compile(r"\b(?:current_platform|platform|_platform)\.(\w+)\s*\(")
_CAPABILITY = re.compile(r"\bcapabilities\.(\w+)")
_REQUIRED = re.compile(r"require_out_of_tree_impl\([^)]*?hook=[\"'](\w+)", re.DOTALL)
# Parts of the SGLang package that are not the serving runtime (diffusion has its own
# platform classes) or that define platforms rather than call them.
_SKIPPED_DIRS = ("multimodal_gen", "platforms")


@dataclass(frozen=True)
class ReleaseAPI:
    """One SGLang release's platform API, as far as the contract needs it.

    base:              its ``SRTPlatform``.
    capability_fields: the capability struct's fields; None before the struct existed.
    calls:             the method names SGLang's code calls on the platform.
    read_capabilities: the capability fields SGLang's code reads.
    oot_required:      the hooks SGLang names in ``require_out_of_tree_impl``.
    """

    version: Version
    base: type
    capability_fields: frozenset[str] | None
    calls: frozenset[str]
    read_capabilities: frozenset[str]
    oot_required: frozenset[str]

    @property
    def members(self) -> frozenset[str]:
        return frozenset(name for name in dir(self.base) if not name.startswith("_"))

    @classmethod
    @functools.cache
    def installed(cls) -> ReleaseAPI:
        """The installed SGLang's API (reads its ~4000 source files once, about a second)."""
        from sglang.srt.platforms.interface import SRTPlatform

        from sglang_fl.compat.platform_api import capability_struct
        from sglang_fl.compat.versions import sglang_version

        struct = capability_struct()
        calls, capabilities, required = scan_source(_package_dir("sglang"))
        fields = frozenset(struct_fields(struct)) if struct is not None else None
        return cls(
            version=sglang_version(),
            base=SRTPlatform,
            capability_fields=fields,
            calls=calls,
            read_capabilities=capabilities & fields if fields else frozenset(),
            oot_required=required,
        )


def load_platform_class(path: str) -> type:
    """Import a bundle's platform class (``module.Class``) as SGLang does: after
    ``sglang.srt.platforms``, whose import resolves the current platform and would otherwise
    re-enter the half-imported platform module."""
    import sglang.srt.platforms  # noqa: F401

    return pkgutil.resolve_name(path)


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.submodule_search_locations, name
    return Path(next(iter(spec.submodule_search_locations)))


def scan_source(root: Path) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(methods called on the platform, capability fields read, hooks named as required by
    ``require_out_of_tree_impl``) in the Python files under ``root``."""
    calls: set[str] = set()
    capabilities: set[str] = set()
    required: set[str] = set()
    for path in root.rglob("*.py"):
        if any(part in _SKIPPED_DIRS for part in path.relative_to(root).parts[:-1]):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if "platform" not in text:
            continue
        calls.update(_CALL.findall(text))
        capabilities.update(_CAPABILITY.findall(text))
        required.update(_REQUIRED.findall(text))
    return frozenset(calls), frozenset(capabilities), frozenset(required)


@dataclass(frozen=True)
class Violation:
    hook: str
    problem: str

    def __str__(self) -> str:
        return f"{self.hook}: {self.problem}"


@dataclass(frozen=True)
class ContractReport:
    platform: str  # module.Class
    sglang: Version
    violations: tuple[Violation, ...]

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> str:
        return "; ".join(str(v) for v in self.violations) or "ok"


def check_platform(platform_cls: type, api: ReleaseAPI) -> ContractReport:
    """Check ``platform_cls`` against ``api`` (see the module docstring for the rules)."""
    violations = [
        *_stale_hooks(platform_cls, api),
        *_missing_hooks(platform_cls, api),
        *_capability_problems(platform_cls, api),
    ]
    name = f"{platform_cls.__module__}.{platform_cls.__qualname__}"
    return ContractReport(name, api.version, tuple(violations))


def own_classes(platform_cls: type) -> list[type]:
    """The classes of ``platform_cls``'s MRO that are not SGLang's (nor ``object``)."""
    return [
        klass
        for klass in platform_cls.__mro__
        if klass is not object and klass.__module__.split(".")[0] != "sglang"
    ]


def defined_names(platform_cls: type) -> dict[str, type]:
    """Public names defined by the non-SGLang classes of the MRO -> the first class defining it."""
    found: dict[str, type] = {}
    for klass in reversed(own_classes(platform_cls)):
        for name in vars(klass):
            if not name.startswith("_"):
                found[name] = klass
    return found


def _stale_hooks(platform_cls: type, api: ReleaseAPI) -> Iterable[Violation]:
    members = api.members
    for name, klass in sorted(defined_names(platform_cls).items()):
        if name.startswith(OWN_PREFIX) or name in members:
            continue
        added = HOOKS_ADDED.get(name)
        if added is not None and api.version.release < Version(added).release:
            continue  # a later release's hook, dormant on this one
        yield Violation(
            name,
            f"defined by {klass.__qualname__}, but sglang {api.version}'s SRTPlatform has no "
            f"such hook (removed or renamed?): SGLang would never call it",
        )


def _needs_implementation(name: str, base: type) -> bool:
    """The base's ``name`` only raises NotImplementedError."""
    func = inspect.getattr_static(base, name, None)
    func = getattr(func, "__func__", func)
    if not inspect.isfunction(func):
        return False
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    except (OSError, TypeError, SyntaxError):
        return False
    body = tree.body[0].body  # type: ignore[attr-defined]
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    if len(body) != 1 or not isinstance(body[0], ast.Raise) or body[0].exc is None:
        return False
    exc = body[0].exc
    target = exc.func if isinstance(exc, ast.Call) else exc
    return isinstance(target, ast.Name) and target.id == "NotImplementedError"


def required_hooks(api: ReleaseAPI) -> frozenset[str]:
    """The hooks an out-of-tree platform must implement on this release (before exemptions)."""
    called = {name for name in api.calls & api.members if _needs_implementation(name, api.base)}
    return frozenset(called | (api.oot_required & api.members))


def _missing_hooks(platform_cls: type, api: ReleaseAPI) -> Iterable[Violation]:
    try:
        platform = platform_cls()
    except Exception as exc:
        yield Violation("__init__", f"the platform class cannot be instantiated: {exc!r}")
        return
    for name in sorted(required_hooks(api)):
        if name in CONDITIONAL_HOOKS:
            what, declared = CONDITIONAL_HOOKS[name]
            if not declared(platform, api.base):
                continue
        else:
            what = ""
        implemented = hasattr(platform_cls, name) and (
            getattr(platform_cls, name) is not getattr(api.base, name, None)
        )
        if not implemented:
            why = f" (the platform declares {what})" if what else ""
            yield Violation(
                name,
                f"sglang {api.version} requires it of an out-of-tree platform{why}, and "
                f"{platform_cls.__qualname__} does not implement it",
            )
    declared = getattr(platform_cls, "fl_capabilities", None)
    if declared is not None and declared.graph_capture and platform.fl_graph_runner_cls() is None:
        yield Violation(
            "fl_graph_runner_cls",
            "fl_capabilities.graph_capture is declared but no graph runner is given",
        )


def _capability_problems(platform_cls: type, api: ReleaseAPI) -> Iterable[Violation]:
    if api.capability_fields is not None:
        for name in sorted(api.read_capabilities - CAPABILITY_NAMES):
            yield Violation(
                f"capabilities.{name}",
                f"sglang {api.version} reads this capability, which sglang-fl does not know "
                f"(it would stay False for every sglang-fl platform)",
            )
    declared = getattr(platform_cls, "fl_capabilities", None)
    struct = getattr(platform_cls, "capabilities", None)
    if declared is not None and api.capability_fields is not None:
        expected = to_struct(declared, type(struct)) if struct is not None else None
        if struct is None or expected != struct:
            yield Violation(
                "capabilities",
                f"{struct!r} does not carry the declared fl_capabilities ({declared!r})",
            )
    adapters = [klass for klass in ADAPTER_CLASSES if issubclass(platform_cls, klass)]
    adapter_names = {n for klass in adapters for n in vars(klass) if not n.startswith("_")}
    for name, klass in sorted(defined_names(platform_cls).items()):
        if name in adapter_names and klass not in ADAPTER_CLASSES:
            yield Violation(
                name,
                f"overridden by {klass.__qualname__}; sglang-fl derives it from the fl_ "
                f"declarations for each release: declare it there instead",
            )
