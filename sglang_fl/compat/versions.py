"""Which SGLang releases sglang-fl runs on, and what happens with one it was never tested on.

``TESTED`` is the release train: every release in it has its own CPU test environment (real
SGLang through the plugin) and passes the platform contract (:mod:`.platform_contract`). Any
release between the oldest and the newest tested one is accepted. A release newer than the
newest tested one is refused unless ``SGLANG_FL_ALLOW_UNTESTED_SGLANG=1``, and then it must
pass the same platform contract at startup. Adding a release: docs/sglang-releases.md.

This module reads package metadata only; it never imports SGLang.
"""

from __future__ import annotations

import enum
import functools
from importlib.metadata import PackageNotFoundError, version

from packaging.version import Version

from sglang_fl.config.settings import ENV
from sglang_fl.errors import UnsupportedSGLangError

# The SGLang releases sglang-fl is tested on, oldest first (ci/matrix.yml lists the same).
TESTED: tuple[str, ...] = ("0.5.15", "0.5.21", "0.5.22", "0.5.23")
OLDEST = Version(TESTED[0])
NEWEST = Version(TESTED[-1])
SUPPORTED_RANGE = f">={OLDEST}, <={NEWEST}"


class Support(enum.Enum):
    """How the installed release relates to the tested train."""

    TESTED = "tested"  # one of TESTED
    IN_RANGE = "in range"  # between two tested releases
    UNTESTED = "untested"  # newer than NEWEST, allowed by the opt-in


@functools.cache
def sglang_version() -> Version:
    """The installed SGLang release (from its distribution metadata)."""
    try:
        return Version(version("sglang"))
    except PackageNotFoundError as exc:
        raise UnsupportedSGLangError(
            f"SGLang is not installed; sglang-fl supports sglang {SUPPORTED_RANGE}"
        ) from exc


def release(found: Version) -> Version:
    """``found`` without pre/post/dev/local parts (0.5.21.post1 is release 0.5.21)."""
    return Version(found.base_version)


def check_version(allow_untested: bool) -> tuple[Version, Support]:
    """The installed SGLang and how it is supported; an error naming the range otherwise.

    A release newer than the tested train is refused unless ``allow_untested``; the caller then
    runs the platform contract before trusting it (``plugin.check_sglang``).
    """
    found = sglang_version()
    base = release(found)
    if base < OLDEST:
        raise UnsupportedSGLangError(
            f"sglang {found} is installed; sglang-fl supports sglang {SUPPORTED_RANGE} "
            f"(tested: {', '.join(TESTED)}); install one of those"
        )
    if base > NEWEST:
        if not allow_untested:
            raise UnsupportedSGLangError(
                f"sglang {found} is installed, newer than sglang-fl is tested with "
                f"({SUPPORTED_RANGE}; tested: {', '.join(TESTED)}); install one of those, or "
                f"set {ENV['allow_untested_sglang']}=1 to check this release's platform API at "
                "startup and run on it untested"
            )
        return found, Support.UNTESTED
    return found, Support.TESTED if str(base) in TESTED else Support.IN_RANGE


def at_least(minimum: str) -> bool:
    """The installed SGLang is ``minimum`` or newer (by release)."""
    return release(sglang_version()) >= Version(minimum)
