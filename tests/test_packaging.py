"""What `pip install sglang-fl` pulls in, and the entry points SGLang and bundles rely on."""

from __future__ import annotations

import re
from importlib.metadata import entry_points
from pathlib import Path

import tomllib

PYPROJECT = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())


def test_install_never_pulls_torch_or_sglang():
    names = {re.split(r"[<>=!~\[ ;]", d)[0].lower() for d in PYPROJECT["project"]["dependencies"]}
    assert names == {"pyyaml", "pydantic"}


def test_entry_points_are_registered():
    assert {
        ep.value for ep in entry_points(group="sglang.srt.plugins") if ep.name == "sglang_fl"
    } == {"sglang_fl.plugin:load_plugin"}
    platforms = entry_points(group="sglang.srt.platforms")
    assert {ep.value for ep in platforms if ep.name == "sglang_fl"} == {
        "sglang_fl.plugin:activate_platform"
    }
    assert "cpu" in {ep.name for ep in entry_points(group="sglang_fl.platforms")}


def test_bundle_yaml_ships_as_package_data():
    from sglang_fl_cpu import BUNDLE

    assert BUNDLE.config_file.is_file()
