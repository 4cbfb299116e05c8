"""Exception types raised by sglang-fl.

Every user-facing failure maps to one of these, so callers (the CLI, the SGLang entry points)
can turn them into a single clear message instead of a traceback.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterable, Iterator

logger = logging.getLogger("sglang_fl")


class SglangFLError(Exception):
    """Base class of every error raised on purpose by sglang-fl."""


class ConfigError(SglangFLError, ValueError):
    """A setting (env var or YAML field) has a bad value.

    The message always names the setting, the bad value and what is accepted.
    """

    def __init__(self, setting: str, value: object, accepted: str, detail: str = "") -> None:
        self.setting = setting
        self.value = value
        self.accepted = accepted
        shown = value if isinstance(value, str) else repr(value)
        message = f"{setting}: invalid value {shown!r}"
        if detail:
            message += f" ({detail})"
        message += f"; accepted: {accepted}"
        super().__init__(message)


class DispatchError(SglangFLError, RuntimeError):
    """No implementation can serve an op under the current policy (strict mode or none left)."""


class PlatformError(SglangFLError, RuntimeError):
    """Platform bundle discovery or detection failed."""


class NoPlatformError(PlatformError):
    """No platform bundle is forced and none detects its hardware: sglang-fl stays inactive."""


class UnsupportedSGLangError(SglangFLError, RuntimeError):
    """The installed SGLang version is outside the supported range."""


class UnservableModelError(SglangFLError, RuntimeError):
    """SGLang cannot serve the model's architecture on this platform; the message names the
    architecture and what is missing."""


class BenchmarkError(SglangFLError, RuntimeError):
    """A benchmark cannot run here or its run failed (no device, a worker process that died or
    timed out, a missing dependency); the message names what failed and why, in one line."""


class FlagCXError(SglangFLError, RuntimeError):
    """Base of FlagCX failures: the library cannot be used, or a call failed."""


class FlagCXLibraryError(FlagCXError):
    """libflagcx.so is missing, cannot be loaded, lacks a symbol, or has an unsupported version."""


class FlagCXCallError(FlagCXError):
    """A FlagCX function returned a non-zero ``flagcxResult_t``."""

    def __init__(self, function: str, code: int, reason: str) -> None:
        self.function = function
        self.code = code
        self.reason = reason
        super().__init__(f"{function} failed with flagcxResult_t {code} ({reason})")


class FlagCXUnsupportedError(SglangFLError, TypeError):
    """A torch dtype or reduce op that FlagCX has no enum value for."""


class FlagCXUsageError(SglangFLError, ValueError):
    """Arguments FlagCX cannot run on (tensor layout, sizes, ranks), or a closed communicator."""


def one_of(choices: Iterable[str]) -> str:
    """Format a set of accepted values for an error message."""
    items = sorted(choices)
    return ", ".join(items) if items else "(none available)"


@contextlib.contextmanager
def fatal_errors() -> Iterator[None]:
    """End the process with one line (exit status 2) on an sglang-fl error.

    SGLang logs and swallows exceptions raised by plugins, which would let a bad setting run
    the server without sglang-fl; the platform hooks sglang-fl refuses a model in run inside
    SGLang's argument handling, where a traceback would bury the reason.
    """
    try:
        yield
    except SglangFLError as exc:
        message = f"sglang-fl: {exc}"
        logger.error(message)
        print(message, file=sys.stderr, flush=True)
        raise SystemExit(2) from exc
