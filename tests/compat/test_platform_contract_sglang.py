"""Every bundle's platform class against the installed SGLang release's platform API.

Runs in every tox env that has SGLang (one per release of the train), and is what
``ci/sglang_release.py`` runs against a new release (``-m platform_contract``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sglang.srt.platforms  # noqa: F401  (SGLang resolves its platform first, as it does)
from packaging.version import Version
from sglang.srt.platforms.interface import SRTPlatform

from sglang_fl.bundles import discover_bundles
from sglang_fl.compat.platform_api import HOOKS_ADDED, capability_struct
from sglang_fl.compat.platform_contract import (
    ReleaseAPI,
    check_platform,
    load_platform_class,
    required_hooks,
)
from sglang_fl.compat.versions import release, sglang_version

pytestmark = [pytest.mark.sglang, pytest.mark.platform_contract]

TEMPLATE = Path(__file__).resolve().parents[2] / "platforms" / "template"
# The first-party bundles (installed with sglang-fl) and the template, a separate distribution
# imported from its source here (tests/platforms/template installs it as a vendor would).
FIRST_PARTY = ("ascend", "cpu", "nvidia")


@pytest.fixture(scope="module")
def api() -> ReleaseAPI:
    return ReleaseAPI.installed()


def test_the_first_party_bundles_are_installed():
    assert set(FIRST_PARTY) <= set(discover_bundles())


@pytest.mark.parametrize("bundle", [*FIRST_PARTY, "template"])
def test_platform_class_fits_the_installed_release(bundle, api, monkeypatch):
    if bundle == "template":
        monkeypatch.syspath_prepend(str(TEMPLATE))
        platform_class = "sglang_fl_template.platform.TemplatePlatform"
    else:
        platform_class = discover_bundles()[bundle].platform_class
    report = check_platform(load_platform_class(platform_class), api)
    assert report.ok, report.summary()


def test_the_release_api_is_read_from_sglang(api):
    # what every supported release requires of an out-of-tree platform, at least
    assert {"get_default_attention_backend", "get_device_total_memory"} <= required_hooks(api)
    if capability_struct() is not None:
        assert {"graph_capture", "supports_triton"} <= api.read_capabilities
        assert "get_graph_runner_cls" in api.oot_required
    else:
        assert api.capability_fields is None and not api.read_capabilities


@pytest.mark.parametrize("hook", sorted(HOOKS_ADDED))
def test_hooks_added_says_when_each_hook_arrives(hook):
    arrives = Version(HOOKS_ADDED[hook])
    assert hasattr(SRTPlatform, hook) == (release(sglang_version()) >= arrives)
