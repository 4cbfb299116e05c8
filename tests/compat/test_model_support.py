"""The startup refusal of an architecture whose SGLang module needs a CUDA-only package, on a
stand-in model package (no SGLang: tests/compat/test_torch_routes_sglang.py asks the real one)."""

from __future__ import annotations

import json
import sys

import pytest
from packaging.version import Version

from sglang_fl.compat import model_support

ARCH_MODULE = "# a model module\nimport torch\n\nclass {name}(object):\n    pass\n"


@pytest.fixture
def models(tmp_path, monkeypatch):
    """A stand-in ``sglang.srt.models``: ``ok`` imports, ``cuda`` imports the missing
    ``cutlass``, ``audio`` another missing package; cutlass itself is not installed."""
    package = tmp_path / "fake_models"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "ok.py").write_text(ARCH_MODULE.format(name="OkForCausalLM"))
    (package / "cuda.py").write_text(
        "import cutlass.cute\n" + ARCH_MODULE.format(name="MlaForCausalLM")
    )
    (package / "audio.py").write_text(
        "import not_installed_audio\n" + ARCH_MODULE.format(name="AudioForCausalLM")
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(model_support, "MODELS_PACKAGE", "fake_models")
    monkeypatch.setattr(model_support, "sglang_version", lambda: Version("0.5.15"))
    monkeypatch.setattr(model_support, "missing_cuda_only_packages", lambda: ["cutlass"])
    model_support._class_modules.cache_clear()
    yield package
    model_support._class_modules.cache_clear()
    for name in [m for m in sys.modules if m.startswith("fake_models")]:
        del sys.modules[name]


def test_the_defining_module_is_found_in_the_source(models):
    assert model_support.defining_module("MlaForCausalLM") == "fake_models.cuda"
    assert model_support.defining_module("OkForCausalLM") == "fake_models.ok"
    assert model_support.defining_module("NoSuchForCausalLM") is None


def test_a_module_that_needs_the_missing_package_is_refused_in_one_line(models):
    reason = model_support.refusal(["NoSuchForCausalLM", "MlaForCausalLM"])
    assert reason == (
        "MlaForCausalLM cannot be served with sglang 0.5.15 here: SGLang's model module "
        "fake_models.cuda imports 'cutlass' (the CUDA-only CUTLASS DSL, nvidia-cutlass-dsl), "
        "which is not installed"
    )
    assert "\n" not in reason


def test_modules_that_import_or_miss_something_else_are_not_refused(models):
    assert model_support.refusal(["OkForCausalLM"]) is None
    assert "fake_models.ok" in sys.modules  # it was imported to find out
    assert model_support.refusal(["AudioForCausalLM"]) is None  # SGLang's own error stands


def test_nothing_is_imported_where_the_cuda_only_packages_are_installed(models, monkeypatch):
    monkeypatch.setattr(model_support, "missing_cuda_only_packages", lambda: [])
    assert model_support.refusal(["MlaForCausalLM"]) is None
    assert "fake_models.cuda" not in sys.modules
    assert model_support.refusal_for_model("/does/not/matter") is None


def test_the_architectures_come_from_the_models_config(models, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"architectures": ["MlaForCausalLM"]}))
    assert "MlaForCausalLM cannot be served" in model_support.refusal_for_model(str(model))
    (model / "config.json").write_text(json.dumps({"architectures": ["OkForCausalLM"]}))
    assert model_support.refusal_for_model(str(model)) is None
    assert model_support.refusal_for_model(str(tmp_path / "missing")) is None
