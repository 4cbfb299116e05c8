"""Test-only SGLang general plugin: the fused-op report on releases that have no model hook.

SGLang 0.5.22+ calls ``current_platform.post_load_model(model)`` once the weights are loaded,
and sglang-fl's platform logs there which fused-op classes the model reaches ("Layer 2: <Model>
reaches the fused ops ..."). Older releases have no such call, so the zoo audit installs this
plugin (``install_report_plugin``), which makes ``ModelRunner.load_model`` call the same hook
afterwards. It waits for SGLang to import the model runner itself (an import hook), so it
changes no import order: on 0.5.15 fused ops bind their forward when constructed, and an early
import could freeze some before sglang-fl registers its own.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

RUNNER_MODULE = "sglang.srt.model_executor.model_runner"
PLUGIN_NAME = "sglang_fl_zoo_report"


def load() -> None:
    """Entry point (``sglang.srt.plugins``): patch the model runner once SGLang imports it."""
    from sglang_fl.compat.versions import at_least

    if at_least("0.5.22"):
        return  # SGLang calls post_load_model itself
    module = sys.modules.get(RUNNER_MODULE)
    if module is not None:
        _patch(module)
    elif not any(isinstance(f, _PatchOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself; wraps the model runner module's loader to patch it once run."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != RUNNER_MODULE:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            run = spec.loader.exec_module

            def exec_module(module: ModuleType) -> None:
                run(module)
                _patch(module)

            spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _patch(module: ModuleType) -> None:
    runner = module.ModelRunner
    original = runner.load_model

    @functools.wraps(original)
    def load_model(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        from sglang.srt.platforms import current_platform

        hook = getattr(current_platform, "post_load_model", None)
        if hook is not None:
            hook(self.model)
        return result

    runner.load_model = load_model


def install_report_plugin(root: Path) -> str:
    """Make this module an SGLang general plugin through a dist-info under ``root``; returns
    the PYTHONPATH entries (``root`` and this module's directory) that make it discoverable."""
    info = root / f"{PLUGIN_NAME}-0.0.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {PLUGIN_NAME.replace('_', '-')}\nVersion: 0.0.0\n"
    )
    (info / "entry_points.txt").write_text(
        f"[sglang.srt.plugins]\n{PLUGIN_NAME} = {Path(__file__).stem}:load\n"
    )
    return os.pathsep.join((str(root), str(Path(__file__).parent)))
