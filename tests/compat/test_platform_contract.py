"""The platform contract checker against synthetic SGLang platform APIs (no SGLang needed).

Each test builds a "release" whose API moved the way real releases did (0.5.22 dropped the
capability methods for a struct; 0.5.23 added a capability field and required hooks) and
shows the checker names exactly what no longer fits.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from packaging.version import Version

from sglang_fl.compat.platform_api import Capabilities
from sglang_fl.compat.platform_contract import (
    ReleaseAPI,
    check_platform,
    required_hooks,
    scan_source,
)


class Struct:
    """Stands in for SGLang's msgspec capability struct (fields, keyword construction, ==)."""

    __struct_fields__ = ("supports_triton", "graph_capture", "piecewise_graph")

    def __init__(self, **values: bool) -> None:
        for name in self.__struct_fields__:
            setattr(self, name, values.get(name, False))

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Struct({vars(self)})"


class OldBase:
    """A release before the struct: capability methods, one KV hook per kind."""

    def get_default_attention_backend(self) -> str:
        """Required of every platform."""
        raise NotImplementedError

    def get_mha_kv_pool_cls(self) -> type:
        raise NotImplementedError

    def support_cuda_graph(self) -> bool:
        return False

    def get_graph_runner_cls(self):
        return None


class NewBase:
    """A release after the move: the struct, get_kv_pool_cls, and a newly required hook."""

    capabilities = Struct()

    def get_default_attention_backend(self) -> str:
        raise NotImplementedError

    def get_kv_pool_cls(self, *, kind: str):
        return None

    def get_graph_runner_cls(self):
        return None

    def get_torch_profiler_activity_str(self) -> str:
        raise NotImplementedError(f"{type(self).__name__}: no profiler")


def api(base: type, *, fields=None, calls=(), reads=(), required=()) -> ReleaseAPI:
    return ReleaseAPI(
        version=Version("9.9.0"),
        base=base,
        capability_fields=frozenset(fields) if fields is not None else None,
        calls=frozenset(calls),
        read_capabilities=frozenset(reads),
        oot_required=frozenset(required),
    )


OLD = api(OldBase, calls=("get_default_attention_backend", "get_mha_kv_pool_cls"))
NEW = api(
    NewBase,
    fields=Struct.__struct_fields__,
    calls=("get_default_attention_backend", "get_torch_profiler_activity_str"),
    reads=("graph_capture", "supports_triton"),
    required=("get_graph_runner_cls",),
)


def make_platform(base: type, **body):
    """A platform class on ``base`` whose fl_capabilities declares graph capture."""
    namespace = {
        "fl_capabilities": Capabilities(graph_capture=True),
        "fl_graph_runner_cls": lambda self: object,
        "get_default_attention_backend": lambda self: "torch_native",
        **body,
    }
    return type("VendorPlatform", (base,), namespace)


def new_style(**body):
    """A platform class written for the moved API (NEW)."""
    namespace = {
        "capabilities": Struct(graph_capture=True),
        "get_graph_runner_cls": lambda self: object,
        "get_torch_profiler_activity_str": lambda self: "CPU",
        **body,
    }
    return make_platform(NewBase, **namespace)


def hooks(report) -> list[str]:
    return [v.hook for v in report.violations]


def test_a_platform_written_for_the_old_api_fits_it():
    platform = make_platform(OldBase, support_cuda_graph=lambda self: True,
                             get_mha_kv_pool_cls=lambda self: object)  # fmt: skip
    assert check_platform(platform, OLD).ok


def test_the_same_platform_against_the_moved_api_names_every_stale_and_missing_hook():
    platform = make_platform(
        NewBase, support_cuda_graph=lambda self: True, get_mha_kv_pool_cls=lambda self: object,
        capabilities=Struct(graph_capture=True),
    )  # fmt: skip
    report = check_platform(platform, NEW)
    assert not report.ok
    assert hooks(report) == [
        "get_mha_kv_pool_cls",  # removed: SGLang would never call it
        "support_cuda_graph",  # removed: the silent loss of decode graphs
        "get_graph_runner_cls",  # required of an out-of-tree platform that captures graphs
        "get_torch_profiler_activity_str",  # newly required of every out-of-tree platform
    ]
    stale = report.violations[1]
    assert "sglang 9.9.0's SRTPlatform has no such hook" in stale.problem
    assert "(the platform declares graph capture)" in report.violations[2].problem
    assert "requires it of an out-of-tree platform" in report.violations[3].problem
    assert report.summary().count(";") == 3


def test_a_platform_written_for_the_moved_api_fits_it():
    assert check_platform(new_style(), NEW).ok


def test_a_struct_that_does_not_carry_the_declaration_is_named():
    report = check_platform(new_style(capabilities=Struct()), NEW)
    assert hooks(report) == ["capabilities"]
    assert "does not carry the declared fl_capabilities" in report.violations[0].problem


def test_a_capability_sglang_reads_but_sglang_fl_does_not_know_is_named():
    moved = api(NewBase, fields=(*Struct.__struct_fields__, "supports_dma"),
                reads=("graph_capture", "supports_dma"))  # fmt: skip
    report = check_platform(new_style(), moved)
    assert hooks(report) == ["capabilities.supports_dma"]
    assert "stay False for every sglang-fl platform" in report.violations[0].problem


def test_a_conditional_hook_is_required_only_with_its_capability():
    # get_graph_runner_cls is required (require_out_of_tree_impl) only for graph capture
    platform = make_platform(
        NewBase, fl_capabilities=Capabilities(), fl_graph_runner_cls=lambda self: None,
        capabilities=Struct(), get_torch_profiler_activity_str=lambda self: "CPU",
    )  # fmt: skip
    assert check_platform(platform, NEW).ok
    capturing = make_platform(
        NewBase, fl_graph_runner_cls=lambda self: None, capabilities=Struct(graph_capture=True),
        get_torch_profiler_activity_str=lambda self: "CPU",
    )  # fmt: skip
    assert hooks(check_platform(capturing, NEW)) == ["get_graph_runner_cls", "fl_graph_runner_cls"]
    assert "no graph runner is given" in check_platform(capturing, NEW).summary()


def test_own_declarations_are_never_hooks_and_later_hooks_are_dormant():
    platform = make_platform(
        OldBase, fl_anything=1, support_cuda_graph=lambda self: True,
        get_mha_kv_pool_cls=lambda self: object,
        post_load_model=lambda self, model: None,  # HOOKS_ADDED: a 0.5.22 hook
    )  # fmt: skip
    assert check_platform(platform, dataclasses.replace(OLD, version=Version("0.5.21"))).ok
    # a release at or after the one that brings the hook must have it: removed there
    assert hooks(check_platform(platform, OLD)) == ["post_load_model"]


def test_required_hooks_are_the_called_ones_that_only_raise():
    assert required_hooks(NEW) == {
        "get_default_attention_backend", "get_torch_profiler_activity_str", "get_graph_runner_cls",
    }  # fmt: skip
    uncalled = api(NewBase, fields=Struct.__struct_fields__)
    assert required_hooks(uncalled) == set()


def test_a_platform_class_that_cannot_be_built_is_named():
    def broken(self):
        raise RuntimeError("no device")

    report = check_platform(make_platform(OldBase, __init__=broken), OLD)
    assert hooks(report)[0] == "__init__" and "no device" in report.summary()


def test_source_scan_finds_calls_reads_and_required_hooks(tmp_path: Path):
    srt = tmp_path / "srt"
    (srt / "platforms").mkdir(parents=True)
    (srt / "runner.py").write_text(
        "from sglang.srt.platforms import current_platform\n"
        "if current_platform.capabilities.graph_capture:\n"
        "    cls = current_platform.get_graph_runner_cls()\n"
        "    require_out_of_tree_impl(\n        current_platform,\n"
        '        hook="get_graph_runner_cls()", subsystem="graphs")\n'
    )  # fmt: skip
    # the platform definitions themselves and diffusion's own platforms are not SGLang's calls
    (srt / "platforms" / "npu.py").write_text("platform.get_secret_thing()\n")
    (tmp_path / "multimodal_gen").mkdir()
    (tmp_path / "multimodal_gen" / "x.py").write_text("current_platform.diffusion_only()\n")
    calls, reads, required = scan_source(tmp_path)
    assert calls == {"get_graph_runner_cls"}
    assert reads == {"graph_capture"}
    assert required == {"get_graph_runner_cls"}
