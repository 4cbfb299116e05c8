"""Run the whole suite for one platform bundle and collect a Report."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from sglang_fl.bundles import PlatformBundle, discover_bundles, find_bundle
from sglang_fl.conformance.report import Check, Report, Status

VERSIONED = ("torch", "sglang", "sglang-fl")


@dataclass(frozen=True)
class Options:
    platform: str | None = None  # bundle name or alias; None: the configured/detected one
    device: str | None = None  # torch device of the op checks; None: current accelerator or cpu
    quick: bool = False
    ops_only: bool = False
    model_path: Path | None = None  # None: the embedded model
    dtype: str = "float32"
    zoo: tuple[str, ...] = ()  # zoo models to serve (sglang_fl.conformance.zoo); () = none


def select_bundle(name: str | None) -> PlatformBundle:
    bundles = discover_bundles()
    if name:
        return find_bundle(name, bundles, "--platform")
    from sglang_fl.config import load_settings

    return bundles[load_settings().platform]


def run_suite(options: Options) -> Report:
    bundle = select_bundle(options.platform)
    device, checks = _op_checks(bundle, options)
    report = Report(bundle.name, bundle.vendor, device, _versions(), checks)
    if options.ops_only:
        report.extend(
            [Check("generate", "SGLang runs", Status.NOT_APPLICABLE, "skipped (--ops-only)")]
        )
        return report
    from sglang_fl.conformance.serving import serving_checks

    report.extend([platform_contract_check(bundle)])
    with tempfile.TemporaryDirectory(prefix="sglang-fl-conformance-") as tmp:
        report.extend(
            serving_checks(bundle, _model(options), options.dtype, options.quick, Path(tmp))
        )
        if options.zoo:
            from sglang_fl.conformance.zoo import zoo_checks

            report.extend(zoo_checks(bundle, options.zoo, Path(tmp)))
    return report


def platform_contract_check(bundle: PlatformBundle) -> Check:
    """The bundle's SGLang platform class against the installed SGLang's platform API
    (sglang_fl.compat.platform_contract): a hook that release removed, one it requires and the
    class lacks, or a capability it reads that is not declared fails here, not at serving."""
    from sglang_fl.compat.platform_contract import ReleaseAPI, check_platform, load_platform_class

    name = "platform class vs SGLang's platform API"
    try:
        platform_cls = load_platform_class(bundle.platform_class)
    except Exception as exc:
        return Check("platform", name, Status.FAIL, f"{bundle.platform_class}: {exc!r}")
    report = check_platform(platform_cls, ReleaseAPI.installed())
    detail = f"{report.platform} fits sglang {report.sglang}"
    if not report.ok:
        detail = f"sglang {report.sglang}: {report.summary()}"
    return Check("platform", name, Status.PASS if report.ok else Status.FAIL, detail)


def _op_checks(bundle: PlatformBundle, options: Options) -> tuple[str, list[Check]]:
    """The device the ops ran on ("n/a" if they could not) and their checks."""
    if bundle.vendor is None:
        why = (f"bundle {bundle.name!r} ships no vendor backend: its ops run on the reference "
               "backend, so there is nothing to compare")  # fmt: skip
        return _no_ops(Status.NOT_APPLICABLE, why)
    try:
        backend = bundle.load_backend()
    except Exception as exc:
        return _no_ops(Status.FAIL, f"{bundle.backend_factory} failed to load: {exc!r}")
    available = backend.availability()
    if not available.ok:
        return _no_ops(Status.FAIL, f"{backend.impl_id} is unavailable here: {available.reason}")
    import torch

    from sglang_fl.conformance.ops import check_backend

    device = torch.device(options.device) if options.device else _default_device()
    return str(device), check_backend(backend, device, options.quick)


def _no_ops(status: Status, detail: str) -> tuple[str, list[Check]]:
    return "n/a", [Check("ops", "vendor backend", status, detail)]


def _default_device():
    """The current accelerator (after the backend's availability check imported its stack),
    else the CPU."""
    import torch

    accelerator = torch.accelerator.current_accelerator()
    return accelerator if accelerator is not None else torch.device("cpu")


def _model(options: Options) -> Path:
    if options.model_path is not None:
        return options.model_path
    from sglang_fl.models.embedded import ensure_embedded_model

    return ensure_embedded_model()


def _versions() -> dict[str, str]:
    found = {}
    for name in VERSIONED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found
