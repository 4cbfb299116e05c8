"""The checks of ``sglang-fl doctor``: does this machine's stack fit together? No model loads.

One function per check, each returning its :class:`Check` rows (none where the check does not
apply here, several for the bundles). Each reuses the module that decides the same question at
startup (the settings, the SGLang version rule, the platform contract, bundle detection,
Triton's and FlagGems' probes, the FlagCX loader), so the doctor says what the plugin would do.

A check that raises becomes an ``error`` row naming the exception (:func:`_guarded`): one
broken piece never hides the others, and the command never ends in a traceback. SGLang, torch,
Triton, FlagGems and torch_npu are imported only inside the checks that look at them.
"""

from __future__ import annotations

import enum
import glob
import importlib.util
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from sglang_fl.errors import ConfigError, NoPlatformError, SglangFLError

if TYPE_CHECKING:
    from sglang_fl.compat.platform_api import Capabilities
    from sglang_fl.config import Settings

T = TypeVar("T")

# The bundle whose device needs torch_npu (the one place the doctor names a bundle: torch_npu
# is the check the issue asks for "where relevant").
NPU_BUNDLE = "ascend"
TORCH_INSTALL = "https://pytorch.org/get-started/locally/"


class Status(str, enum.Enum):
    """How a check came out; only ``error`` makes the command fail."""

    OK = "ok"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class Check:
    """One row of the report: what was looked at, how it came out, and what to do about it."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, str]:
        return {"check": self.name, "status": self.status.value, "detail": self.detail,
                "fix": self.fix}  # fmt: skip


@dataclass(frozen=True)
class Report:
    checks: tuple[Check, ...]

    def count(self, status: Status) -> int:
        return sum(check.status is status for check in self.checks)

    @property
    def ok(self) -> bool:
        return self.count(Status.ERROR) == 0

    def summary(self) -> str:
        return (f"{len(self.checks)} checks: {self.count(Status.ERROR)} error(s), "
                f"{self.count(Status.WARNING)} warning(s)")  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "errors": self.count(Status.ERROR),
            "warnings": self.count(Status.WARNING),
            "checks": [check.to_json() for check in self.checks],
        }


@dataclass(frozen=True)
class Context:
    """What the later checks need from the first two.

    settings:       the effective settings; None where the config check failed (the checks
                    that depend on a setting are then left out: the config row says why).
    platform_class: the selected bundle's platform class, loaded once; None where it is not
                    (no valid config, SGLang absent or refused) or failed (``platform_error``).
                    SGLang is imported only after the version check passed: importing it
                    resolves its platform through sglang-fl's entry point, which ends the
                    process on a refused release.
    """

    settings: Settings | None
    platform_class: type | None = None
    platform_error: str | None = None


def run_checks() -> Report:
    """Every check, in the order a user fixes things: config, SGLang, platform, devices, libs."""
    settings, config = check_config()
    sglang = _guarded("sglang", check_sglang, settings)
    accepted = all(row.status is not Status.ERROR for row in sglang)
    context = _load_platform(settings) if accepted else Context(settings)
    rows = [config, *sglang]
    for name, check in LATER_CHECKS:
        rows += _guarded(name, check, context)
    return Report(tuple(rows))


def _guarded(name: str, check: Callable[[T], list[Check]], arg: T) -> list[Check]:
    """``check(arg)``, or one error row naming what it raised."""
    try:
        return check(arg)
    except (Exception, SystemExit) as exc:
        return [Check(name, Status.ERROR, f"the check raised {_describe(exc)}",
                      "see the detail: a broken install of what this check imports")]  # fmt: skip


def _describe(exc: BaseException) -> str:
    """``Type: message``. For SystemExit, its cause: an sglang-fl error inside SGLang's platform
    resolution ends the process (``errors.fatal_errors``) with the error as the cause."""
    cause = exc.__cause__ if isinstance(exc, SystemExit) and exc.__cause__ else exc
    return f"{type(cause).__name__}: {cause}"


# --------------------------------------------------------------------------- config, SGLang


def check_config() -> tuple[Settings | None, Check]:
    """The settings as the plugin loads them at startup (env > SGLANG_FL_CONFIG > platform YAML
    > defaults); the one error they raise names the variable or field and what is accepted."""
    from sglang_fl.config import ENV, load_settings

    try:
        settings = load_settings()
    except NoPlatformError as exc:
        fix = f"set {ENV['platform']} to an installed bundle (see the bundle rows)"
        return None, Check("config", Status.ERROR, str(exc), fix)
    except ConfigError as exc:
        fix = f"set {exc.setting} to an accepted value: {exc.accepted}"
        return None, Check("config", Status.ERROR, str(exc), fix)
    except SglangFLError as exc:  # a broken bundle, or two bundles detecting at one priority
        fix = f"see the detail; {ENV['platform']} chooses a bundle when detection cannot"
        return None, Check("config", Status.ERROR, str(exc), fix)
    detail = (f"valid: platform {settings.platform} ({_how_selected(settings)}), prefer "
              f"{settings.prefer}, dist backend {settings.dist_backend}")  # fmt: skip
    if settings.config_file is not None:
        detail += f", config file {settings.config_file}"
    return settings, Check("config", Status.OK, detail)


def _how_selected(settings: Settings) -> str:
    from sglang_fl.config import ENV, SourceKind

    source = settings.sources["platform"]
    return f"forced by {ENV['platform']}" if source.kind is SourceKind.ENV else "detected"


def check_sglang(settings: Settings | None) -> list[Check]:
    """The installed SGLang against the supported range, by the rule the plugin applies at
    startup (``compat.versions.check_version`` with the untested-release opt-in)."""
    from sglang_fl.compat.versions import TESTED, Support, check_version, sglang_version
    from sglang_fl.config import ENV
    from sglang_fl.errors import UnsupportedSGLangError

    opt_in = ENV["allow_untested_sglang"]
    allow = settings is not None and settings.allow_untested_sglang
    tested = ", ".join(TESTED)
    try:
        found, support = check_version(allow)
    except UnsupportedSGLangError as exc:
        try:
            sglang_version()
        except UnsupportedSGLangError:  # not installed
            return [Check("sglang", Status.ERROR, str(exc), f"install SGLang {TESTED[-1]}")]
        fix = f"install a tested release ({tested})"
        if not allow and _accepted_with_opt_in():
            fix += f", or set {opt_in}=1 to run it untested if the platform contract passes"
        return [Check("sglang", Status.ERROR, str(exc), fix)]
    if support is Support.UNTESTED:
        detail = (f"sglang {found} is newer than the tested releases ({tested}); {opt_in}=1 "
                  "runs it untested if the platform contract passes (next row)")  # fmt: skip
        return [Check("sglang", Status.WARNING, detail, f"install a tested release ({tested})")]
    kind = "a tested release" if support is Support.TESTED else "between two tested releases"
    return [Check("sglang", Status.OK, f"sglang {found}: {kind} (tested: {tested})")]


def _accepted_with_opt_in() -> bool:
    from sglang_fl.compat.versions import check_version
    from sglang_fl.errors import UnsupportedSGLangError

    try:
        check_version(allow_untested=True)
    except UnsupportedSGLangError:
        return False
    return True


def _load_platform(settings: Settings | None) -> Context:
    """Import the selected bundle's platform class (and so SGLang) once, for the checks that
    read it; an untested release's startup contract check runs here, inside SGLang's import."""
    if settings is None:
        return Context(settings)
    from sglang_fl.bundles import discover_bundles
    from sglang_fl.compat.platform_contract import load_platform_class

    path = discover_bundles()[settings.platform].platform_class
    try:
        return Context(settings, platform_class=load_platform_class(path))
    except (Exception, SystemExit) as exc:
        return Context(settings, platform_error=f"importing {path} failed: {_describe(exc)}")


def check_contract(context: Context) -> list[Check]:
    """The selected bundle's platform class against the installed SGLang's platform API (what
    startup runs for an untested release; CI runs it for every tested one)."""
    from sglang_fl.compat.versions import TESTED

    fix = (f"install a tested SGLang release ({', '.join(TESTED)}); on a tested one this is a "
           "bug of the bundle: report it")  # fmt: skip
    if context.platform_error is not None:
        return [Check("platform_contract", Status.ERROR, context.platform_error, fix)]
    if context.platform_class is None:
        return []
    from sglang_fl.compat.platform_contract import ReleaseAPI, check_platform

    report = check_platform(context.platform_class, ReleaseAPI.installed())
    if report.ok:
        detail = f"{report.platform} fits sglang {report.sglang}'s platform API"
        return [Check("platform_contract", Status.OK, detail)]
    return [Check("platform_contract", Status.ERROR, report.summary(), fix)]


def _capabilities(context: Context) -> Capabilities | None:
    """What the selected platform declares (Triton or not); None where its class is not loaded
    (no valid config, SGLang absent or refused: the class subclasses SGLang's)."""
    if context.platform_class is None:
        return None
    return context.platform_class.fl_capabilities


# --------------------------------------------------------------------------- bundles


def check_bundles(context: Context) -> list[Check]:
    """Every installed bundle: does its ``detect()`` find its hardware, what it looks at, and
    whether it is the selected one (and how: forced or detected)."""
    from sglang_fl.bundles import discover_bundles
    from sglang_fl.config import ENV
    from sglang_fl.errors import PlatformError

    try:
        bundles = discover_bundles()
    except PlatformError as exc:
        fix = "reinstall or uninstall the distribution that provides the broken bundle"
        return [Check("bundles", Status.ERROR, str(exc), fix)]
    settings = context.settings
    selected = settings.platform if settings is not None else None
    rows = []
    for bundle in bundles.values():
        name = f"bundle:{bundle.name}"
        probe = f"when {bundle.probe}" if bundle.probe else f"by {_qualname(bundle.detect)}()"
        try:
            present = bool(bundle.detect())
        except Exception as exc:
            detail = f"detection raised {exc!r} (it detects {probe})"
            fix = f"repair the vendor stack it imports, or set {ENV['platform']} to another"
            rows.append(Check(name, Status.ERROR, detail, fix))
            continue
        detail = f"detected: {'yes' if present else 'no'} ({probe})"
        if bundle.name != selected:
            chosen = "" if selected is None else "; not selected"
            rows.append(Check(name, Status.OK, detail + chosen))
            continue
        detail += f"; selected ({_how_selected(settings)})"
        if present:
            rows.append(Check(name, Status.OK, detail))
        else:
            fix = f"unset {ENV['platform']} to use the detected bundle, unless this is meant"
            rows.append(Check(name, Status.WARNING, detail + " without its hardware", fix))
    return rows


def _qualname(function: Callable[..., Any]) -> str:
    return f"{function.__module__}.{function.__qualname__}"


# --------------------------------------------------------------------------- torch, devices


def check_torch(context: Context) -> list[Check]:
    """The torch build against the accelerator present: an NVIDIA GPU on the machine (device
    node or nvidia-smi) with a torch that cannot drive it is the classic broken install."""
    try:
        import torch
    except Exception as exc:
        detail = f"torch cannot be imported: {type(exc).__name__}: {exc}"
        return [Check("torch", Status.ERROR, detail, f"install torch for your device: "
                                                     f"{TORCH_INSTALL}")]  # fmt: skip
    cuda = torch.version.cuda
    build = f"CUDA {cuda}" if cuda else f"ROCm {torch.version.hip}" if torch.version.hip else None
    accelerator = torch.accelerator.current_accelerator()
    seen = accelerator.type if accelerator is not None else "none"
    detail = f"torch {torch.__version__} ({build or 'no CUDA/ROCm'} build), accelerator: {seen}"
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        detail += f", {count} GPU(s): {torch.cuda.get_device_name(0)}"
    nvidia = _nvidia_present()
    if nvidia is None:
        return [Check("torch", Status.OK, detail)]
    if cuda is None:
        fix = f"install a CUDA build of torch ({TORCH_INSTALL})"
        return [Check("torch", Status.ERROR, f"{detail}; but an NVIDIA GPU is here ({nvidia})",
                      fix)]  # fmt: skip
    if not torch.cuda.is_available():
        fix = (f"check that the driver (nvidia-smi) supports CUDA {cuda} and CUDA_VISIBLE_DEVICES; "
               "in a container, run it with GPU access (--gpus all)")  # fmt: skip
        return [Check("torch", Status.ERROR, f"{detail}; an NVIDIA GPU is here ({nvidia}) but "
                                             "torch sees none", fix)]  # fmt: skip
    return [Check("torch", Status.OK, f"{detail} ({nvidia})")]


def _nvidia_present() -> str | None:
    """Evidence of an NVIDIA GPU independent of torch: a device node, or nvidia-smi."""
    nodes = sorted(glob.glob("/dev/nvidia[0-9]*"))
    if nodes:
        return f"{len(nodes)} device node(s) {nodes[0]}..." if len(nodes) > 1 else nodes[0]
    smi = shutil.which("nvidia-smi")
    return f"{smi} exists" if smi else None


def check_torch_npu(context: Context) -> list[Check]:
    """torch_npu, where an Ascend NPU may be meant: the Ascend bundle selected, torch_npu
    installed, or a davinci device node present."""
    selected = context.settings is not None and context.settings.platform == NPU_BUNDLE
    nodes = sorted(glob.glob("/dev/davinci[0-9]*"))
    if not (selected or nodes or importlib.util.find_spec("torch_npu") is not None):
        return []
    why = f"bundle {NPU_BUNDLE} selected" if selected else (nodes[0] if nodes else "installed")
    fix = "install the torch_npu build matching torch and CANN (platforms/ascend/README.md)"
    try:
        import torch
        import torch_npu
    except Exception as exc:
        detail = f"{why}, but torch_npu cannot be imported: {type(exc).__name__}: {exc}"
        return [Check("torch_npu", Status.ERROR, detail, fix)]
    version = getattr(torch_npu, "__version__", "unknown version")
    if not torch.npu.is_available():
        detail = f"torch_npu {version} ({why}), but no NPU is visible to it"
        fix = "check the NPU driver (npu-smi info), ASCEND_RT_VISIBLE_DEVICES and CANN's env"
        status = Status.ERROR if selected or nodes else Status.WARNING
        return [Check("torch_npu", status, detail, fix)]
    detail = f"torch_npu {version}: {torch.npu.device_count()} NPU(s) visible ({why})"
    return [Check("torch_npu", Status.OK, detail)]


# --------------------------------------------------------------------------- kernels, comms


def check_triton(context: Context) -> list[Check]:
    """Triton's active backend (what the flagos kernels, FlagGems and SGLang's Triton paths need),
    judged by whether the selected platform declares Triton (``fl_capabilities``)."""
    from sglang_fl.backends.flagos import triton_backends, triton_unavailable_reason

    state = triton_backends()
    version = _triton_version() if state.error is None else None
    named = f"triton {version}" if version else "triton"
    if state.active:
        detail = f"{named}: active backend {', '.join(state.active)}; the flagos kernels can run"
        return [Check("triton", Status.OK, detail)]
    detail = f"{triton_unavailable_reason()}; the flagos kernels cannot run"
    if version:
        detail = f"{named}: {detail}"
    capabilities = _capabilities(context)
    platform = context.settings.platform if context.settings is not None else "?"
    fix = "install the Triton build for your device (and a torch that sees the device)"
    if capabilities is None:
        detail += " (whether the platform needs Triton is unknown: its class is not loaded)"
        return [Check("triton", Status.WARNING, detail, fix)]
    if capabilities.supports_triton:
        detail += f"; platform {platform} declares Triton, which SGLang then uses"
        return [Check("triton", Status.ERROR, detail, fix)]
    detail += f"; none needed: platform {platform} declares no Triton"
    return [Check("triton", Status.OK, detail)]


def _triton_version() -> str | None:
    import triton

    return getattr(triton, "__version__", None)


def check_flaggems(context: Context) -> list[Check]:
    """FlagGems where Layer 1 is on (``USE_FLAGGEMS`` and the whitelist): without it Layer 1
    stays inactive with only an INFO line at startup, so the doctor says it louder."""
    settings = context.settings
    if settings is None:
        return []
    from sglang_fl.config import ENV, SourceKind
    from sglang_fl.flaggems import flaggems_import_error

    variable = ENV["use_flaggems"]
    if not settings.use_flaggems:
        return [Check("flaggems", Status.OK, f"Layer 1 off ({variable}=0): FlagGems not needed")]
    switch = "set" if settings.sources["use_flaggems"].kind is SourceKind.ENV else "default"
    if settings.flagos_whitelist == ():
        source = settings.sources["flagos_whitelist"]
        detail = f"Layer 1 replaces no ATen op: the whitelist ({source}) is empty"
        return [Check("flaggems", Status.OK, detail)]
    error = flaggems_import_error()
    if error is None:
        import flag_gems

        version = getattr(flag_gems, "__version__", "unknown version")
        return [Check("flaggems", Status.OK, f"flag_gems {version}: Layer 1 replaces ATen ops")]
    detail = f"Layer 1 on ({variable} {switch}) but inactive: {error}"
    capabilities = _capabilities(context)
    if capabilities is not None and not capabilities.supports_triton:
        detail += f" (FlagGems runs on Triton; platform {settings.platform} declares none)"
        fix = f"set {variable}=0 (Layer 1 cannot run on this platform)"
        return [Check("flaggems", Status.WARNING, detail, fix)]
    fix = f"install FlagGems (flag_gems) for this device, or set {variable}=0"
    return [Check("flaggems", Status.ERROR, detail, fix)]


def check_flagcx(context: Context) -> list[Check]:
    """libflagcx.so, where the distributed backend is flagcx: found, loaded, symbols and version
    checked by the loader Layer 3 uses (``distributed.flagcx.load_library``)."""
    settings = context.settings
    if settings is None or settings.dist_backend != "flagcx":
        return []
    from sglang_fl.config.settings import FLAGCX_ENV
    from sglang_fl.distributed.flagcx import LIBRARY_NAME, load_library, version_string
    from sglang_fl.errors import FlagCXLibraryError

    try:
        library = load_library(settings.flagcx_path)
    except FlagCXLibraryError as exc:
        fix = f"set {FLAGCX_ENV} to a FlagCX build of a supported version (lib/{LIBRARY_NAME})"
        return [Check("flagcx", Status.ERROR, str(exc), fix)]
    source = settings.sources["dist_backend"]
    detail = f"{library.path}: FlagCX {version_string(library.version)} (flagcx from {source})"
    return [Check("flagcx", Status.OK, detail)]


def check_vendor_backend(context: Context) -> list[Check]:
    """The selected bundle's vendor backend: can it run here (``availability()``)? Ops that
    prefer it fall back when it cannot (strict mode refuses: ``sglang-fl ops`` shows which)."""
    settings = context.settings
    if settings is None:
        return []
    from sglang_fl.bundles import discover_bundles

    bundle = discover_bundles()[settings.platform]
    if bundle.backend_factory is None:
        detail = f"bundle {bundle.name} ships no vendor backend (ops use flagos or reference)"
        return [Check("vendor_backend", Status.OK, detail)]
    backend = bundle.load_backend()
    availability = backend.availability()
    if availability.ok:
        return [Check("vendor_backend", Status.OK, f"{backend.impl_id} available")]
    detail = f"{backend.impl_id} unavailable: {availability.reason}"
    fix = "see the reason; `sglang-fl ops` shows what each op falls back to"
    return [Check("vendor_backend", Status.WARNING, detail, fix)]


# The checks after config and SGLang, in report order: (row name if it raises, check).
LATER_CHECKS: tuple[tuple[str, Callable[[Context], list[Check]]], ...] = (
    ("platform_contract", check_contract),
    ("bundles", check_bundles),
    ("torch", check_torch),
    ("torch_npu", check_torch_npu),
    ("triton", check_triton),
    ("flaggems", check_flaggems),
    ("flagcx", check_flagcx),
    ("vendor_backend", check_vendor_backend),
)
