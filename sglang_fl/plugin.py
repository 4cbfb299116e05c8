"""SGLang entry points: ``sglang.srt.platforms`` (which platform) and ``sglang.srt.plugins``
(Layers 1-3, run early in every SGLang process).

SGLang logs and swallows exceptions raised by plugins, which would let a bad setting run the
server without sglang-fl. Our errors therefore end the process with one clear message.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import TYPE_CHECKING

from sglang_fl.errors import NoPlatformError, UnsupportedSGLangError, fatal_errors

if TYPE_CHECKING:
    from sglang_fl.config import Settings

logger = logging.getLogger(__name__)
_loaded_pid: int | None = None


def activate_platform() -> str | None:
    """The SGLang platform class of the detected (or forced) bundle; None if none applies."""
    from sglang_fl.bundles import discover_bundles

    with fatal_errors():
        settings = _active_settings()
        if settings is None:
            return None
        platform_class = discover_bundles()[settings.platform].platform_class
        check_sglang(platform_class)
        return platform_class


def load_plugin() -> None:
    """Validate the configuration and install Layers 1-3, then the PyTorch routes the platform
    declares (``fl_torch_routes``), in this process (idempotent)."""
    global _loaded_pid
    if _loaded_pid == os.getpid():
        return
    _loaded_pid = os.getpid()
    from sglang_fl.aten import install_layer1
    from sglang_fl.bundles import discover_bundles
    from sglang_fl.compat import torch_routes
    from sglang_fl.dispatch.oot import install_layer2
    from sglang_fl.distributed import layer3
    from sglang_fl.logs import configure_logging

    with fatal_errors():
        settings = _active_settings()
        if settings is None:
            logger.warning(
                "sglang-fl inactive: no installed platform bundle matches this machine; set "
                "SGLANG_FL_PLATFORM to force one (`sglang-fl config` lists them)"
            )
            return
        configure_logging(settings)
        check_sglang(discover_bundles()[settings.platform].platform_class)
        install_layer1(settings)
        platform = _current_platform()
        from sglang_fl.platform_base import FLPlatform

        if not isinstance(platform, FLPlatform):
            logger.warning(
                "sglang-fl Layers 2 and 3 inactive: the active SGLang platform (%s) is not "
                "sglang-fl's; "
                "set SGLANG_PLATFORM=sglang_fl or check SGLANG_PLUGINS",
                type(platform).__name__,
            )
            return
        layer3.install(settings, platform.device_type)
        install_layer2(settings, platform.get_dispatch_key_name())
        torch_routes.install(platform.fl_torch_routes, settings.platform)
        if settings.aten_trace is not None:  # `sglang-fl bench aten`'s trace run
            from sglang_fl.aten_trace import start

            start(settings.aten_trace)


@functools.cache
def check_sglang(platform_class: str) -> None:
    """Refuse an SGLang release outside the supported range, naming it. A release newer than
    the tested ones runs only when allowed (SGLANG_FL_ALLOW_UNTESTED_SGLANG=1) and when the
    platform class passes the platform contract against it; once per process."""
    from sglang_fl.compat.versions import SUPPORTED_RANGE, Support, check_version
    from sglang_fl.config import ENV, get_settings

    found, support = check_version(get_settings().allow_untested_sglang)
    if support is not Support.UNTESTED:
        return
    from sglang_fl.compat.platform_contract import ReleaseAPI, check_platform, load_platform_class

    try:
        report = check_platform(load_platform_class(platform_class), ReleaseAPI.installed())
    except (ImportError, AttributeError) as exc:  # the API moved under our imports
        raise UnsupportedSGLangError(
            f"sglang {found} is newer than sglang-fl is tested with ({SUPPORTED_RANGE}) and "
            f"its platform API moved: importing {platform_class} failed: {exc!r}"
        ) from exc
    if not report.ok:
        raise UnsupportedSGLangError(
            f"sglang {found} is newer than sglang-fl is tested with ({SUPPORTED_RANGE}) and "
            f"{platform_class} does not fit its platform API: {report.summary()}"
        )
    logger.warning(
        "sglang %s is newer than sglang-fl is tested with (%s); running on it untested "
        "(%s=1): the platform contract of %s passed",
        found, SUPPORTED_RANGE, ENV["allow_untested_sglang"], platform_class,
    )  # fmt: skip


def _active_settings() -> Settings | None:
    """This process's settings; None where no bundle is forced (SGLANG_FL_PLATFORM) or
    detects its hardware: sglang-fl then stays inactive and checks nothing else. The platform
    is chosen in the settings module, once per process (``get_settings`` is cached)."""
    from sglang_fl.config import get_settings

    try:
        return get_settings()
    except NoPlatformError:
        return None


def _current_platform():
    from sglang.srt import platforms

    return platforms.current_platform
