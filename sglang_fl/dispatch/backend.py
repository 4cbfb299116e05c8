"""What a backend is: a set of op implementations of one kind, with one availability check.

Implementations are factories. ``OpImpl.bind(params)`` runs once per op instance (at its first
call) with that instance's static parameters and returns the plain callable the model then
calls directly, so per-instance precomputation lives in ``bind`` and the hot path does none.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# Defined by the catalogue; vendor backends import ImplKind from here with the rest of the API.
from sglang_fl.ops.catalog import PRIORITY, ImplKind


@dataclass(frozen=True)
class Availability:
    """Can a backend run in this process at all (``reason`` says why not)."""

    ok: bool
    reason: str = ""

    @classmethod
    def yes(cls) -> Availability:
        return cls(True)

    @classmethod
    def no(cls, reason: str) -> Availability:
        return cls(False, reason)


@dataclass(frozen=True)
class Refusal:
    """Cannot, and why: what the once-per-process and once-per-instance steps return instead
    of their result (a bridge leaving an instance on SGLang's own path, a candidate refusing or
    failing its first call, a backend excluded by policy or availability). A type of its own,
    so a reason is never mistaken for a result."""

    reason: str


def _always_supported(params: Any) -> str | None:
    return None


@dataclass(frozen=True)
class OpImpl:
    """One backend's implementation of one op.

    bind:            params -> the hot-path callable (see ``sglang_fl.ops.params``).
    mutates_inputs:  the callable writes into its input tensors (e.g. an in-place fused add +
                     norm). A failing first call is then rolled back before falling back.
    supports:        params -> None, or the reason this instance (dtype, head size...) is not
                     supported, checked once at bind time.
    """

    bind: Callable[[Any], Callable[..., Any]]
    mutates_inputs: bool = False
    supports: Callable[[Any], str | None] = _always_supported


class Backend(ABC):
    """A source of op implementations: ``reference``, ``flagos`` or ``vendor.<name>``."""

    kind: ImplKind
    vendor: str | None = None

    @property
    def impl_id(self) -> str:
        return f"vendor.{self.vendor}" if self.kind is ImplKind.VENDOR else self.kind.value

    @property
    def priority(self) -> int:
        return PRIORITY[self.kind]

    @abstractmethod
    def availability(self) -> Availability:
        """Can this backend run here at all? Called at most once per process."""

    @abstractmethod
    def implementations(self) -> Mapping[str, OpImpl]:
        """Op name -> implementation. Must not import the vendor stack (bind may)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.impl_id}>"


class UnloadableBackend(Backend):
    """Stands in for a vendor backend whose factory failed to import, so the reason is shown."""

    kind = ImplKind.VENDOR

    def __init__(self, vendor: str, reason: str) -> None:
        self.vendor = vendor
        self._reason = reason

    def availability(self) -> Availability:
        return Availability.no(self._reason)

    def implementations(self) -> Mapping[str, OpImpl]:
        return {}
