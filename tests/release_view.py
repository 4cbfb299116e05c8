"""How the installed SGLang release asks a platform what it can do, spelled as that release's
own code spells it. Platform tests assert through these helpers, so they check what SGLang
sees on every release rather than what sglang-fl's adapter returns.

The decode-graph gate is read from SGLang's source: a release that asks in a new way fails
:func:`graph_gates` instead of passing unnoticed.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

# Every spelling of "does this platform capture decode graphs?" in SGLang 0.5.15-0.5.23.
GRAPH_GATES = {
    "current_platform.capabilities.graph_capture": lambda p: p.capabilities.graph_capture,
    "current_platform.support_cuda_graph()": lambda p: p.support_cuda_graph(),
}


def has_capability_struct() -> bool:
    from sglang.srt.platforms import interface

    return hasattr(interface, "PlatformCapabilities")


@functools.cache
def graph_gates() -> tuple[str, ...]:
    """The decode-graph gates the installed SGLang's serving runtime uses."""
    spec = importlib.util.find_spec("sglang")
    assert spec is not None and spec.submodule_search_locations
    srt = Path(next(iter(spec.submodule_search_locations))) / "srt"
    found = set()
    for path in srt.rglob("*.py"):
        if "platforms" in path.relative_to(srt).parts:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        found.update(gate for gate in GRAPH_GATES if gate in text)
    assert found, "this SGLang asks about decode graph capture in a way the tests do not know"
    return tuple(sorted(found))


def captures_decode_graphs(platform: Any) -> bool:
    """What every decode-graph gate of the installed SGLang answers for ``platform``."""
    answers = {gate: bool(GRAPH_GATES[gate](platform)) for gate in graph_gates()}
    assert len(set(answers.values())) == 1, answers
    return next(iter(answers.values()))


def captures_prefill_graphs(platform: Any) -> bool:
    if has_capability_struct():
        return bool(platform.capabilities.piecewise_graph)
    return bool(platform.support_piecewise_cuda_graph())


def graph_runner_cls(platform: Any) -> type | None:
    """The runner SGLang builds for a capturing out-of-tree platform (None: it would refuse)."""
    try:
        return platform.get_graph_runner_cls()
    except NotImplementedError:
        return None


def kv_pool_cls(platform: Any, kind: str) -> type:
    """The pool class SGLang builds for ``kind`` ("mha", "mla", "dsa") on ``platform``."""
    if has_capability_struct():
        from sglang.srt.mem_cache import memory_pool

        in_tree = {"mha": memory_pool.MHATokenToKVPool, "mla": memory_pool.MLATokenToKVPool,
                   "dsa": memory_pool.DSATokenToKVPool}  # fmt: skip
        chosen = platform.get_kv_pool_cls(kind=kind)
        if chosen is None:
            return in_tree[kind]
        assert issubclass(chosen, in_tree[kind])  # SGLang raises TypeError otherwise
        return chosen
    return getattr(platform, f"get_{kind}_kv_pool_cls")()


def make_allocator(platform: Any, size: int, page_size: int, kvcache: Any) -> Any:
    """The token-to-KV allocator SGLang builds for an out-of-tree platform."""
    args = {"dtype": None, "device": "cpu", "kvcache": kvcache, "need_sort": False}
    if has_capability_struct():
        from sglang.srt.mem_cache.allocator import (
            PagedTokenToKVPoolAllocator,
            TokenToKVPoolAllocator,
        )

        if page_size == 1:
            return TokenToKVPoolAllocator(size, **args)
        cls = platform.get_paged_allocator_cls() or PagedTokenToKVPoolAllocator
        return cls(size, page_size=page_size, **args)
    return platform.get_paged_allocator_cls()(size, page_size=page_size, **args)
