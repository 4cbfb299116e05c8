"""Architectures SGLang cannot serve on this machine, known before the model loads.

Some SGLang model modules import a CUDA-only package when they are imported. Without the
CUTLASS DSL (``cutlass``), measured: on 0.5.15, 30 modules of ``sglang.srt.models`` --
``deepseek_v2`` (DeepSeek-V2/V3/V3.2, through its DSA indexer) and those that import it
(GLM-4-MoE, Kimi, ...); on 0.5.21-0.5.23, ``inkling`` only. SGLang's model registry logs
"Ignore import error" for such a module and serves the architecture with its Transformers
backend, which cannot run these models (DeepSeek-V2: "Unsupported TP style 'mla_kv_a_proj'")
once the scheduler builds the model. Checked here at startup instead: where a package of
:data:`CUDA_ONLY_IMPORTS` is not installed, the module that defines the served architecture is
imported (in the launcher, which has imported most of what it needs already: ~0.1 s), and an
import that fails on that package is a refusal naming the architecture and the package.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import re
from collections.abc import Sequence
from pathlib import Path

from sglang_fl.compat.versions import sglang_version

# Packages SGLang model modules import at module level that exist only for CUDA: name -> what.
CUDA_ONLY_IMPORTS: dict[str, str] = {
    "cutlass": "the CUDA-only CUTLASS DSL, nvidia-cutlass-dsl",
}
MODELS_PACKAGE = "sglang.srt.models"


def refusal_for_model(model_path: str, revision: str | None = None) -> str | None:
    """:func:`refusal` for the model at ``model_path`` (a directory or a hub id, as SGLang
    takes it); its config is read only where a CUDA-only package is missing. A config that
    cannot be read is SGLang's to report: None."""
    if not missing_cuda_only_packages():
        return None
    architectures = _architectures(model_path, revision)
    return refusal(architectures) if architectures else None


def missing_cuda_only_packages() -> list[str]:
    """The packages of :data:`CUDA_ONLY_IMPORTS` not installed here."""
    return [name for name in CUDA_ONLY_IMPORTS if importlib.util.find_spec(name) is None]


def refusal(architectures: Sequence[str]) -> str | None:
    """Why SGLang cannot serve a model declaring ``architectures`` here, in one line; None if
    nothing known stops it."""
    missing = missing_cuda_only_packages()
    if not missing:
        return None
    for architecture in architectures:
        module = defining_module(architecture)
        if module is None:
            continue
        lacking = _missing_on_import(module)
        if lacking in missing:
            return (
                f"{architecture} cannot be served with sglang {sglang_version()} here: SGLang's "
                f"model module {module} imports {lacking!r} ({CUDA_ONLY_IMPORTS[lacking]}), "
                "which is not installed"
            )
    return None


def _architectures(model_path: str, revision: str | None) -> list[str]:
    from transformers import PretrainedConfig

    try:
        config, _ = PretrainedConfig.get_config_dict(model_path, revision=revision)
    except Exception:  # SGLang reports an unreadable model itself, as without sglang-fl
        return []
    return list(config.get("architectures") or [])


def defining_module(architecture: str) -> str | None:
    """The module of SGLang's model package that defines the class ``architecture`` (what its
    model registry would serve it with), found in the source without importing anything."""
    return _class_modules().get(architecture)


@functools.cache
def _class_modules() -> dict[str, str]:
    spec = importlib.util.find_spec(MODELS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return {}
    found: dict[str, str] = {}
    for path in sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.py")):
        for name in re.findall(r"^class (\w+)\(", path.read_text(encoding="utf-8"), re.M):
            found.setdefault(name, f"{MODELS_PACKAGE}.{path.stem}")
    return found


def _missing_on_import(module: str) -> str | None:
    """The top-level package whose absence makes importing ``module`` fail; None if it
    imports (or fails otherwise: SGLang's own error then stands)."""
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        return (exc.name or "").partition(".")[0] or None
    except Exception:  # any other failure: SGLang reports it as it does without sglang-fl
        return None
    return None
