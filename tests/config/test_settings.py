"""Unit tests for ``sglang_fl.config.settings``: layering, provenance, validation, sample file.

Every test calls ``load_settings(env=...)`` with an explicit dict, so the real process
environment never matters.

Test doubles of installed bundles
---------------------------------
With only the first-party ``cpu`` bundle installed there are no vendors, and ``cpu.yaml`` only
sets ``prefer``. To exercise vendor tokens / aliases and the platform-YAML layer of the other
fields, some tests monkeypatch ``sglang_fl.config.settings.discover_bundles`` (the name the
settings module looked up) to return:

* the real ``cpu`` bundle, or a ``dataclasses.replace`` of it whose ``config_file`` points at a
  temporary platform YAML (and, for the FlagCX case, whose ``dist_backends`` include flagcx);
* plus ``fakevendor``: a test double of an installed vendor bundle
  (``PlatformBundle(name="fakevendor", aliases=("fv",), vendor="fakevendor", ...)``) whose
  hardware is never detected, so the cpu bundle is still the one auto-detected.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

import sglang_fl.config.settings as settings_mod
from sglang_fl.bundles import PlatformBundle, discover_bundles
from sglang_fl.config import (
    _CONFIG_DIR,
    ENV,
    FIELDS,
    PUBLIC_FIELDS,
    YAML_FIELDS,
    Settings,
    load_settings,
)
from sglang_fl.errors import ConfigError, NoPlatformError
from sglang_fl.ops.catalog import CLASS_NAMES, OP_NAMES

REAL_CPU = discover_bundles()["cpu"]

BOOL_ACCEPTED = "1, 0, true, false, yes, no, on, off"
OPS_ACCEPTED = ", ".join(sorted(OP_NAMES))  # every op of the catalogue, sorted
YAML_ACCEPTED = (
    "allow_vendors, deny_vendors, flagos_blacklist, flagos_whitelist, oot_blacklist, op_backends, "
    "prefer, strict"
)
PUBLIC_KEYS = {
    "prefer", "strict", "op_backends", "allow_vendors", "deny_vendors", "oot_enabled",
    "oot_whitelist", "oot_blacklist", "use_flaggems", "flagos_whitelist", "flagos_blacklist",
    "dispatch_log", "dist_backend", "flagcx_path", "platform", "allow_untested_sglang", "sources",
}  # fmt: skip

# --------------------------------------------------------------------------- helpers


def fake_vendor_bundle(tmp_path: Path, yaml_text: str = "prefer: vendor\n") -> PlatformBundle:
    """Test double of an installed vendor bundle (never detected; selectable by name/alias)."""
    config = tmp_path / "fakevendor.yaml"
    config.write_text(yaml_text, encoding="utf-8")
    return PlatformBundle(
        name="fakevendor",
        aliases=("fv",),
        vendor="fakevendor",
        backend_factory="x:y",
        detect=lambda: False,
        dist_backends=("gloo",),
        config_file=config,
        platform_class="x.Y",
    )


@pytest.fixture
def bundles(monkeypatch, tmp_path):
    """Install test-double bundles: ``bundles(platform_yaml=..., cpu_dist=..., vendor=True)``."""

    def install(
        *, platform_yaml: str | None = None, cpu_dist: tuple[str, ...] | None = None,
        vendor: bool = False,
    ) -> dict[str, PlatformBundle]:  # fmt: skip
        changes: dict[str, Any] = {}
        if platform_yaml is not None:
            path = tmp_path / "platform_cpu.yaml"
            path.write_text(platform_yaml, encoding="utf-8")
            changes["config_file"] = path
        if cpu_dist is not None:
            changes["dist_backends"] = cpu_dist
        found = {"cpu": dataclasses.replace(REAL_CPU, **changes) if changes else REAL_CPU}
        if vendor:
            found["fakevendor"] = fake_vendor_bundle(tmp_path)
        monkeypatch.setattr(settings_mod, "discover_bundles", lambda: found)
        return found

    return install


def write_user_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "user.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _sub(value: Any, tmp_path: Path, user_path: Path) -> Any:
    """Replace the <tmp> / <file> placeholders of the case tables."""
    if isinstance(value, str):
        return value.replace("<tmp>", str(tmp_path)).replace("<file>", str(user_path))
    if isinstance(value, Path):
        return Path(_sub(str(value), tmp_path, user_path))
    if isinstance(value, dict):
        return {k: _sub(v, tmp_path, user_path) for k, v in value.items()}
    return value


# --------------------------------------------------------------------------- (1) precedence

P = pytest.param
FV = {"vendor": True}
# only the real cpu bundle, whatever else is installed (e.g. the ascend bundle, a vendor)
CPU_ONLY = {"vendor": False}
PICK = "SGLANG_FL_PLATFORM"

# (env, user YAML or None, field, expected value, expected source, bundle options)
# Bundle options: platform_yaml=<text of the cpu platform YAML double> (absent: real cpu.yaml,
# which sets only `prefer: reference`), cpu_dist=..., vendor=True (adds the fakevendor double).
PRECEDENCE = [
    # ---- prefer
    P({}, None, "prefer", "flagos", "default", {"platform_yaml": ""}, id="prefer-default"),
    P({}, None, "prefer", "reference", "platform:cpu", {}, id="prefer-platform"),
    P({}, "prefer: vendor\n", "prefer", "vendor", "file:<file>", {}, id="prefer-file>platform"),
    P({"SGLANG_FL_PREFER": "flagos"}, "prefer: vendor\n", "prefer", "flagos",
      "env:SGLANG_FL_PREFER", {}, id="prefer-env>file"),
    P({"SGLANG_FL_PREFER": "vendor"}, None, "prefer", "vendor", "env:SGLANG_FL_PREFER", {},
      id="prefer-env>platform"),
    P({"SGLANG_FL_PREFER": ""}, "prefer: vendor\n", "prefer", "vendor", "file:<file>", {},
      id="prefer-empty-env-is-unset"),
    P({"SGLANG_FL_PREFER": "   "}, None, "prefer", "reference", "platform:cpu", {},
      id="prefer-blank-env-is-unset"),
    P({"SGLANG_FL_CONFIG": ""}, None, "prefer", "reference", "platform:cpu", {},
      id="prefer-empty-config-var-means-no-file"),
    P({PICK: "fv"}, None, "prefer", "vendor", "platform:fakevendor", FV,
      id="prefer-from-forced-platform-yaml"),
    # ---- strict
    P({}, None, "strict", False, "default", {}, id="strict-default"),
    P({}, None, "strict", True, "platform:cpu", {"platform_yaml": "strict: true\n"},
      id="strict-platform"),
    P({}, "strict: false\n", "strict", False, "file:<file>", {"platform_yaml": "strict: true\n"},
      id="strict-file>platform"),
    P({"SGLANG_FL_STRICT": "1"}, "strict: false\n", "strict", True, "env:SGLANG_FL_STRICT", {},
      id="strict-env>file"),
    P({"SGLANG_FL_STRICT": "off"}, "strict: true\n", "strict", False, "env:SGLANG_FL_STRICT", {},
      id="strict-env-off>file"),
    P({"SGLANG_FL_STRICT": ""}, "strict: true\n", "strict", True, "file:<file>", {},
      id="strict-empty-env-is-unset"),
    # ---- op_backends (overrides replace whole mappings)
    P({}, None, "op_backends", {}, "default", {}, id="op_backends-default"),
    P({}, None, "op_backends", {"rms_norm": ("reference",)}, "platform:cpu",
      {"platform_yaml": "op_backends:\n  rms_norm: [reference]\n"}, id="op_backends-platform"),
    P({}, "op_backends:\n  rms_norm: [flagos, reference]\n", "op_backends",
      {"rms_norm": ("flagos", "reference")}, "file:<file>",
      {"platform_yaml": "op_backends:\n  rms_norm: [reference]\n  silu_and_mul: [reference]\n"},
      id="op_backends-file-replaces-platform"),
    P({"SGLANG_FL_PER_OP": "silu_and_mul=vendor|reference"},
      "op_backends:\n  rms_norm: [flagos]\n  silu_and_mul: [flagos]\n", "op_backends",
      {"silu_and_mul": ("vendor", "reference")}, "env:SGLANG_FL_PER_OP", {},
      id="op_backends-env-replaces-file"),
    P({"SGLANG_FL_PER_OP": " rms_norm = vendor | flagos ; silu_and_mul=reference ;"}, None,
      "op_backends", {"rms_norm": ("vendor", "flagos"), "silu_and_mul": ("reference",)},
      "env:SGLANG_FL_PER_OP", {}, id="op_backends-env-syntax"),
    P({}, "op_backends:\n  rotary_embedding: reference|flagos\n", "op_backends",
      {"rotary_embedding": ("reference", "flagos")}, "file:<file>", {},
      id="op_backends-file-string-form"),
    P({"SGLANG_FL_PER_OP": "rms_norm=vendor:fv|vendor:fakevendor|reference"}, None,
      "op_backends", {"rms_norm": ("vendor:fakevendor", "vendor:fakevendor", "reference")},
      "env:SGLANG_FL_PER_OP", FV, id="op_backends-env-vendor-alias-canonical"),
    P({}, "op_backends:\n  rms_norm: ['vendor:fv', flagos]\n", "op_backends",
      {"rms_norm": ("vendor:fakevendor", "flagos")}, "file:<file>", FV,
      id="op_backends-file-vendor-alias-canonical"),
    P({"SGLANG_FL_PER_OP": ""}, "op_backends:\n  rms_norm: [reference]\n", "op_backends",
      {"rms_norm": ("reference",)}, "file:<file>", {}, id="op_backends-empty-env-is-unset"),
    # ---- allow_vendors / deny_vendors
    P({}, None, "allow_vendors", None, "default", FV, id="allow-default"),
    P({}, None, "allow_vendors", ("fakevendor",), "platform:cpu",
      {"platform_yaml": "allow_vendors: [fakevendor]\n", **FV}, id="allow-platform"),
    P({}, "allow_vendors: [fv]\n", "allow_vendors", ("fakevendor",), "file:<file>",
      {"platform_yaml": "allow_vendors: []\n", **FV}, id="allow-file>platform-alias"),
    P({"SGLANG_FL_ALLOW_VENDORS": "fv, fakevendor"}, "allow_vendors: []\n", "allow_vendors",
      ("fakevendor",), "env:SGLANG_FL_ALLOW_VENDORS", FV, id="allow-env>file-dedup"),
    P({"SGLANG_FL_ALLOW_VENDORS": ""}, "allow_vendors: [fakevendor]\n", "allow_vendors",
      ("fakevendor",), "file:<file>", FV, id="allow-empty-env-is-unset"),
    P({}, None, "deny_vendors", (), "default", FV, id="deny-default"),
    P({}, None, "deny_vendors", ("fakevendor",), "platform:cpu",
      {"platform_yaml": "deny_vendors: [fv]\n", **FV}, id="deny-platform"),
    P({}, "deny_vendors: []\n", "deny_vendors", (), "file:<file>",
      {"platform_yaml": "deny_vendors: [fakevendor]\n", **FV}, id="deny-file-replaces-platform"),
    P({"SGLANG_FL_DENY_VENDORS": "fv"}, "deny_vendors: []\n", "deny_vendors", ("fakevendor",),
      "env:SGLANG_FL_DENY_VENDORS", FV, id="deny-env>file"),
    # ---- oot_enabled (env only)
    P({}, None, "oot_enabled", True, "default", {}, id="oot_enabled-default"),
    P({"SGLANG_FL_OOT_ENABLED": "0"}, None, "oot_enabled", False, "env:SGLANG_FL_OOT_ENABLED",
      {}, id="oot_enabled-env"),
    P({"SGLANG_FL_OOT_ENABLED": "No"}, None, "oot_enabled", False, "env:SGLANG_FL_OOT_ENABLED",
      {}, id="oot_enabled-env-case-insensitive"),
    P({"SGLANG_FL_OOT_ENABLED": ""}, None, "oot_enabled", True, "default", {},
      id="oot_enabled-empty-env-is-unset"),
    # ---- OOT white/blacklists
    P({}, None, "oot_blacklist", (), "default", {}, id="oot_blacklist-default"),
    P({}, None, "oot_whitelist", None, "default", {}, id="oot_whitelist-default"),
    P({}, None, "oot_blacklist", ("RotaryEmbedding",), "platform:cpu",
      {"platform_yaml": "oot_blacklist: [RotaryEmbedding]\n"}, id="oot_blacklist-platform"),
    P({}, "oot_blacklist: [SiluAndMul]\n", "oot_blacklist", ("SiluAndMul",), "file:<file>",
      {"platform_yaml": "oot_blacklist: [RotaryEmbedding, RMSNorm]\n"},
      id="oot_blacklist-file-replaces-platform"),
    P({"SGLANG_FL_OOT_BLACKLIST": "RMSNorm"}, "oot_blacklist: [SiluAndMul, RotaryEmbedding]\n",
      "oot_blacklist", ("RMSNorm",), "env:SGLANG_FL_OOT_BLACKLIST", {},
      id="oot_blacklist-env-replaces-file"),
    P({"SGLANG_FL_OOT_BLACKLIST": "RMSNorm"}, None, "oot_whitelist", None, "default", {},
      id="oot_whitelist-unset-with-env-blacklist"),
    P({"SGLANG_FL_OOT_WHITELIST": "RMSNorm, SiluAndMul"}, "oot_blacklist: [RMSNorm]\n",
      "oot_whitelist", ("RMSNorm", "SiluAndMul"), "env:SGLANG_FL_OOT_WHITELIST", {},
      id="oot_whitelist-env"),
    P({"SGLANG_FL_OOT_WHITELIST": "RMSNorm"}, "oot_blacklist: [RMSNorm]\n", "oot_blacklist", (),
      "env:SGLANG_FL_OOT_WHITELIST", {"platform_yaml": "oot_blacklist: [SiluAndMul]\n"},
      id="oot_whitelist-env-empties-yaml-blacklist"),
    P({"SGLANG_FL_OOT_WHITELIST": "", "SGLANG_FL_OOT_BLACKLIST": "SiluAndMul"}, None,
      "oot_blacklist", ("SiluAndMul",), "env:SGLANG_FL_OOT_BLACKLIST", {},
      id="oot_whitelist-empty-env-is-unset"),
    # ---- use_flaggems (env only)
    P({}, None, "use_flaggems", True, "default", {}, id="use_flaggems-default"),
    P({"USE_FLAGGEMS": "false"}, None, "use_flaggems", False, "env:USE_FLAGGEMS", {},
      id="use_flaggems-env"),
    P({"USE_FLAGGEMS": " "}, None, "use_flaggems", True, "default", {},
      id="use_flaggems-blank-env-is-unset"),
    # ---- FlagOS white/blacklists
    P({}, None, "flagos_blacklist", (), "default", {}, id="flagos_blacklist-default"),
    P({}, None, "flagos_blacklist", ("mm", "to_copy"), "platform:cpu",
      {"platform_yaml": "flagos_blacklist: [mm, to_copy]\n"}, id="flagos_blacklist-platform"),
    P({}, "flagos_blacklist: [mul, sub]\n", "flagos_blacklist", ("mul", "sub"), "file:<file>",
      {"platform_yaml": "flagos_blacklist: [mm, to_copy]\n"},
      id="flagos_blacklist-file-replaces-platform"),
    P({"SGLANG_FL_FLAGOS_BLACKLIST": "index_put_,zeros"}, "flagos_blacklist: [mul, sub]\n",
      "flagos_blacklist", ("index_put_", "zeros"), "env:SGLANG_FL_FLAGOS_BLACKLIST", {},
      id="flagos_blacklist-env-replaces-file"),
    P({"SGLANG_FL_FLAGOS_WHITELIST": "silu_and_mul,rms_norm"}, None, "flagos_whitelist",
      ("silu_and_mul", "rms_norm"), "env:SGLANG_FL_FLAGOS_WHITELIST", {},
      id="flagos_whitelist-env"),
    P({}, None, "flagos_whitelist", None, "default", {}, id="flagos_whitelist-default"),
    P({"SGLANG_FL_FLAGOS_WHITELIST": "mm"}, "flagos_blacklist: [mul, sub]\n", "flagos_blacklist",
      (), "env:SGLANG_FL_FLAGOS_WHITELIST", {"platform_yaml": "flagos_blacklist: [mm]\n"},
      id="flagos_whitelist-env-empties-yaml-blacklist"),
    P({"SGLANG_FL_FLAGOS_WHITELIST": ""}, "flagos_blacklist: [mul]\n", "flagos_blacklist",
      ("mul",), "file:<file>", {}, id="flagos_whitelist-empty-env-is-unset"),
    # YAML whitelist (platforms ship measured ATen sets): the highest YAML setting either list
    # decides, and an env blacklist replaces a YAML whitelist too
    P({}, None, "flagos_whitelist", ("softmax",), "platform:cpu",
      {"platform_yaml": "flagos_whitelist: [softmax]\n"}, id="flagos_whitelist-platform"),
    P({}, None, "flagos_blacklist", (), "platform:cpu",
      {"platform_yaml": "flagos_whitelist: [softmax]\n"},
      id="flagos_whitelist-platform-empties-blacklist"),
    P({}, "flagos_blacklist: [mul]\n", "flagos_whitelist", None, "file:<file>",
      {"platform_yaml": "flagos_whitelist: [softmax]\n"},
      id="flagos_blacklist-file-replaces-platform-whitelist"),
    P({}, "flagos_whitelist: [mm]\n", "flagos_whitelist", ("mm",), "file:<file>",
      {"platform_yaml": "flagos_blacklist: [mul]\n"},
      id="flagos_whitelist-file-replaces-platform-blacklist"),
    P({"SGLANG_FL_FLAGOS_BLACKLIST": "mul"}, None, "flagos_whitelist", None, "default",
      {"platform_yaml": "flagos_whitelist: [softmax]\n"},
      id="flagos_blacklist-env-replaces-platform-whitelist"),
    P({"SGLANG_FL_FLAGOS_WHITELIST": "mm"}, "flagos_whitelist: [mul]\n", "flagos_whitelist",
      ("mm",), "env:SGLANG_FL_FLAGOS_WHITELIST", {}, id="flagos_whitelist-env-replaces-file"),
    P({}, None, "flagos_whitelist", (), "platform:cpu",
      {"platform_yaml": "flagos_whitelist: []\n"}, id="flagos_whitelist-platform-empty"),
    # ---- dispatch_log (env only)
    P({}, None, "dispatch_log", None, "default", {}, id="dispatch_log-default"),
    P({"SGLANG_FL_DISPATCH_LOG": "<tmp>/dispatch.log"}, None, "dispatch_log",
      Path("<tmp>/dispatch.log"), "env:SGLANG_FL_DISPATCH_LOG", {}, id="dispatch_log-env"),
    P({"SGLANG_FL_DISPATCH_LOG": ""}, None, "dispatch_log", None, "default", {},
      id="dispatch_log-empty-env-is-unset"),
    # ---- dist_backend
    P({}, None, "dist_backend", "gloo", "platform:cpu", {}, id="dist_backend-platform-default"),
    P({"SGLANG_FL_DIST_BACKEND": "gloo"}, None, "dist_backend", "gloo",
      "env:SGLANG_FL_DIST_BACKEND", {}, id="dist_backend-env"),
    P({"SGLANG_FL_DIST_BACKEND": "GLOO"}, None, "dist_backend", "gloo",
      "env:SGLANG_FL_DIST_BACKEND", {}, id="dist_backend-env-case-insensitive"),
    P({"FLAGCX_PATH": ""}, None, "dist_backend", "gloo", "platform:cpu", {},
      id="dist_backend-empty-flagcx-path-is-unset"),
    P({"FLAGCX_PATH": "/opt/flagcx"}, None, "dist_backend", "flagcx", "env:FLAGCX_PATH",
      {"cpu_dist": ("gloo", "flagcx")}, id="dist_backend-flagcx-path-wants-flagcx"),
    P({"FLAGCX_PATH": "/opt/flagcx", "SGLANG_FL_DIST_BACKEND": "gloo"}, None, "dist_backend",
      "gloo", "env:SGLANG_FL_DIST_BACKEND", {"cpu_dist": ("gloo", "flagcx")},
      id="dist_backend-explicit-env>flagcx-path"),
    # ---- flagcx_path (env only; kept as given, resolved by Layer 3)
    P({}, None, "flagcx_path", None, "default", {}, id="flagcx_path-default"),
    P({"FLAGCX_PATH": "  "}, None, "flagcx_path", None, "default", {},
      id="flagcx_path-blank-is-unset"),
    P({"FLAGCX_PATH": " /opt/flagcx "}, None, "flagcx_path", "/opt/flagcx", "env:FLAGCX_PATH",
      {"cpu_dist": ("gloo", "flagcx")}, id="flagcx_path-env"),
    P({"FLAGCX_PATH": "/opt/flagcx", "SGLANG_FL_DIST_BACKEND": "gloo"}, None, "flagcx_path",
      "/opt/flagcx", "env:FLAGCX_PATH", {"cpu_dist": ("gloo", "flagcx")},
      id="flagcx_path-kept-when-another-backend-is-chosen"),
    # ---- platform
    P({}, None, "platform", "cpu", "default", {}, id="platform-detected"),
    P({PICK: "cpu"}, None, "platform", "cpu", "env:SGLANG_FL_PLATFORM", {}, id="platform-env"),
    P({PICK: ""}, None, "platform", "cpu", "default", {}, id="platform-empty-env-is-unset"),
    P({}, None, "platform", "cpu", "default", FV, id="platform-undetected-vendor-not-chosen"),
    P({PICK: "fv"}, None, "platform", "fakevendor", "env:SGLANG_FL_PLATFORM", FV,
      id="platform-env-alias"),
]  # fmt: skip


@pytest.mark.parametrize(("env", "user", "field", "expected", "source", "options"), PRECEDENCE)
def test_precedence(bundles, tmp_path, env, user, field, expected, source, options):
    if options:
        bundles(**options)
    user_path = (tmp_path / "user.yaml").resolve()
    env = _sub(dict(env), tmp_path, user_path)
    if user is not None:
        write_user_file(tmp_path, user)
        env["SGLANG_FL_CONFIG"] = str(tmp_path / "user.yaml")
    settings = load_settings(env=env)
    assert getattr(settings, field) == _sub(expected, tmp_path, user_path)
    assert settings.sources[field] == _sub(source, tmp_path, user_path)
    kind, _, name = _sub(source, tmp_path, user_path).partition(":")
    assert (settings.sources[field].kind.value, settings.sources[field].name) == (kind, name)
    if user is not None:
        assert settings.config_file == user_path


def test_each_field_takes_its_own_highest_source(bundles, tmp_path):
    """One load, four layers: each field remembers where it came from independently."""
    bundles(platform_yaml="prefer: vendor\nstrict: true\noot_blacklist: [RMSNorm]\n"
            "flagos_blacklist: [mm]\n")  # fmt: skip
    user = write_user_file(tmp_path, "strict: false\noot_blacklist: [SiluAndMul]\n")
    settings = load_settings(
        env={"SGLANG_FL_CONFIG": str(user), "SGLANG_FL_OOT_BLACKLIST": "RotaryEmbedding"}
    )
    assert (settings.prefer, settings.sources["prefer"]) == ("vendor", "platform:cpu")
    assert (settings.strict, settings.sources["strict"]) == (False, f"file:{user.resolve()}")
    assert settings.oot_blacklist == ("RotaryEmbedding",)
    assert settings.sources["oot_blacklist"] == "env:SGLANG_FL_OOT_BLACKLIST"
    assert settings.flagos_blacklist == ("mm",)
    assert settings.sources["flagos_blacklist"] == "platform:cpu"
    assert (settings.use_flaggems, settings.sources["use_flaggems"]) == (True, "default")


def test_flagcx_path_on_cpu_is_an_error():
    """FLAGCX_PATH makes flagcx the wanted backend; the cpu bundle only supports gloo."""
    with pytest.raises(ConfigError) as info:
        load_settings(env={"FLAGCX_PATH": "/opt/flagcx"})
    message = str(info.value)
    for part in ("FLAGCX_PATH", "'/opt/flagcx'", "flagcx", "'cpu'", "accepted: gloo"):
        assert part in message
    assert info.value.setting == "FLAGCX_PATH"


def test_load_settings_ignores_the_real_environment(monkeypatch):
    monkeypatch.setenv("SGLANG_FL_PREFER", "vendor")
    monkeypatch.setenv("SGLANG_FL_PREFFER", "typo")
    settings = load_settings(env={})
    assert settings.prefer == "reference"
    assert settings.sources["prefer"] == "platform:cpu"


# --------------------------------------------------------------------------- (2) error paths

# (env, user YAML or None, substrings the ConfigError message must contain, bundle options)
# In env values and substrings, <file> is the resolved user-file path and <tmp> the tmp dir.
ERRORS = [
    # ---- backend tokens and vendor names
    P({"SGLANG_FL_PER_OP": "rms_norm=cuda"}, None,
      ["SGLANG_FL_PER_OP[rms_norm]", "'cuda'", "unknown backend token",
       "accepted: flagos, reference, vendor"], {}, id="per_op-unknown-token"),
    P({"SGLANG_FL_PER_OP": "rms_norm=vendor|FlagOS"}, None,
      ["SGLANG_FL_PER_OP[rms_norm]", "'FlagOS'", "accepted: flagos, reference, vendor"], {},
      id="per_op-token-is-case-sensitive"),
    P({"SGLANG_FL_PER_OP": "rms_norm=vendor:nvidia"}, None,
      ["SGLANG_FL_PER_OP[rms_norm]", "'vendor:nvidia'", "unknown vendor 'nvidia'",
       "vendor:fakevendor", "vendor:fv"], FV, id="per_op-unknown-vendor"),
    P({"SGLANG_FL_PER_OP": "rms_norm=vendor:fv|vendor:"}, None,
      ["SGLANG_FL_PER_OP[rms_norm]", "'vendor:'", "vendor:fakevendor"], FV,
      id="per_op-empty-vendor-name"),
    P({}, "op_backends:\n  silu_and_mul: [flagos, 'vendor:nvidia']\n",
      ["<file>", "op_backends", "silu_and_mul", "'vendor:nvidia'", "unknown vendor",
       "vendor:fakevendor"], FV, id="yaml-op_backends-unknown-vendor"),
    P({}, "op_backends:\n  rms_norm: [torch]\n",
      ["<file>", "op_backends", "rms_norm", "'torch'", "accepted: flagos, reference, vendor"],
      {}, id="yaml-op_backends-unknown-token"),
    P({}, "op_backends:\n  rms_norm: []\n",
      ["<file>", "op_backends", "rms_norm", "non-empty list of backend tokens"], {},
      id="yaml-op_backends-empty-list"),
    P({"SGLANG_FL_ALLOW_VENDORS": "fakevendor,nvidia"}, None,
      ["SGLANG_FL_ALLOW_VENDORS", "'nvidia'", "unknown vendor", "accepted: fakevendor, fv"], FV,
      id="allow-unknown-vendor"),
    P({"SGLANG_FL_ALLOW_VENDORS": "cuda"}, None,
      ["SGLANG_FL_ALLOW_VENDORS", "'cuda'", "accepted: (none available)"], CPU_ONLY,
      id="allow-any-vendor-with-no-vendor-bundle"),
    P({"SGLANG_FL_DENY_VENDORS": "ascend"}, None,
      ["SGLANG_FL_DENY_VENDORS", "'ascend'", "unknown vendor", "accepted: fakevendor, fv"], FV,
      id="deny-unknown-vendor"),
    P({}, "allow_vendors: [nvidia]\n",
      ["<file>", "allow_vendors", "'nvidia'", "accepted: fakevendor, fv"], FV,
      id="yaml-allow-unknown-vendor"),
    P({}, "deny_vendors: [nvidia]\n",
      ["<file>", "deny_vendors", "'nvidia'", "accepted: fakevendor, fv"], FV,
      id="yaml-deny-unknown-vendor"),
    # ---- op names
    P({"SGLANG_FL_PER_OP": "fused_moe=reference"}, None,
      ["SGLANG_FL_PER_OP", "'fused_moe'", OPS_ACCEPTED], {}, id="per_op-unknown-op"),
    P({}, "op_backends:\n  fused_moe: [reference]\n",
      ["<file>", "op_backends", "'fused_moe'", OPS_ACCEPTED], {}, id="yaml-op_backends-unknown-op"),
    # ---- OOT class names
    P({"SGLANG_FL_OOT_BLACKLIST": "RMSNorm,FusedMoE"}, None,
      ["SGLANG_FL_OOT_BLACKLIST", "'FusedMoE'", "unknown op class name", "RMSNorm",
       "RotaryEmbedding", "SiluAndMul", "GemmaRMSNorm"], {}, id="oot_blacklist-unknown-class"),
    P({"SGLANG_FL_OOT_WHITELIST": "rms_norm"}, None,
      ["SGLANG_FL_OOT_WHITELIST", "'rms_norm'", "RMSNorm", "SiluAndMul"], {},
      id="oot_whitelist-unknown-class"),
    P({}, "oot_blacklist: [fused_moe]\n",
      ["<file>", "oot_blacklist", "'fused_moe'", "RMSNorm", "SiluAndMul"], {},
      id="yaml-oot_blacklist-unknown-class"),
    # ---- FlagOS ATen names
    P({"SGLANG_FL_FLAGOS_BLACKLIST": "mm,not-an-op"}, None,
      ["SGLANG_FL_FLAGOS_BLACKLIST", "'not-an-op'", "ATen op names"], {},
      id="flagos_blacklist-bad-aten-name"),
    P({"SGLANG_FL_FLAGOS_WHITELIST": "1mm"}, None,
      ["SGLANG_FL_FLAGOS_WHITELIST", "'1mm'", "ATen op names"], {},
      id="flagos_whitelist-bad-aten-name"),
    P({}, "flagos_whitelist: [mm, 2x]\n",
      ["<file>", "flagos_whitelist", "'2x'", "ATen op names"], {},
      id="yaml-flagos_whitelist-bad-aten-name"),
    P({}, "flagos_whitelist: [mm]\nflagos_blacklist: [mul]\n",
      ["<file>", "'flagos_whitelist' and 'flagos_blacklist'", "mutually exclusive"], {},
      id="yaml-flagos-both-lists"),
    # ---- malformed SGLANG_FL_PER_OP
    P({"SGLANG_FL_PER_OP": "rms_norm"}, None,
      ["SGLANG_FL_PER_OP", "'rms_norm'", "malformed", "op=token|token"], {},
      id="per_op-no-equals"),
    P({"SGLANG_FL_PER_OP": "rms_norm=reference|"}, None,
      ["SGLANG_FL_PER_OP", "'rms_norm=reference|'", "malformed", "op=token|token"], {},
      id="per_op-empty-token"),
    P({"SGLANG_FL_PER_OP": "rms_norm="}, None,
      ["SGLANG_FL_PER_OP", "'rms_norm='", "malformed", "op=token|token"], {},
      id="per_op-no-tokens"),
    P({"SGLANG_FL_PER_OP": "=reference"}, None,
      ["SGLANG_FL_PER_OP", "'=reference'", "malformed", "op=token|token"], {},
      id="per_op-no-op"),
    P({"SGLANG_FL_PER_OP": "rms_norm=reference;rms_norm=flagos"}, None,
      ["SGLANG_FL_PER_OP", "'rms_norm=reference;rms_norm=flagos'", "given twice",
       "op=token|token"], {}, id="per_op-duplicate-op"),
    P({"SGLANG_FL_PER_OP": ";"}, None,
      ["SGLANG_FL_PER_OP", "';'", "no entries", "op=token|token"], {}, id="per_op-only-semicolon"),
    P({"SGLANG_FL_PER_OP": " ; ; "}, None,
      ["SGLANG_FL_PER_OP", "' ; ; '", "no entries", "op=token|token"], {},
      id="per_op-only-semicolons"),
    # ---- booleans
    *[
        P({var: "maybe"}, None, [var, "'maybe'", BOOL_ACCEPTED], {}, id=f"bool-{var}")
        for var in ("SGLANG_FL_STRICT", "SGLANG_FL_OOT_ENABLED", "USE_FLAGGEMS",
                    "SGLANG_FLAGGEMS_RECORD", "SGLANG_FLAGGEMS_LOG_ONCE",
                    "SGLANG_FL_ALLOW_UNTESTED_SGLANG")
    ],
    P({"SGLANG_FL_STRICT": "2"}, None, ["SGLANG_FL_STRICT", "'2'", BOOL_ACCEPTED], {},
      id="bool-numeric-2"),
    # ---- choices
    P({"SGLANG_FL_PREFER": "fastest"}, None,
      ["SGLANG_FL_PREFER", "'fastest'", "accepted: flagos, vendor, reference"], {},
      id="prefer-bad"),
    P({"SGLANG_FL_LOG_LEVEL": "verbose"}, None,
      ["SGLANG_FL_LOG_LEVEL", "'verbose'", "accepted: DEBUG, INFO, WARNING, ERROR"], {},
      id="log_level-bad"),
    # ---- the user file itself
    P({"SGLANG_FL_CONFIG": "<tmp>/missing.yaml"}, None,
      ["SGLANG_FL_CONFIG", "<tmp>/missing.yaml", "file not found", "existing YAML file"], {},
      id="config-missing-file"),
    P({}, "prefer: [flagos\n",
      ["SGLANG_FL_CONFIG", "<file>", "YAML error", "accepted: a valid YAML mapping"], {},
      id="config-invalid-yaml"),
    P({}, "- prefer\n- strict\n",
      ["SGLANG_FL_CONFIG", "<file>", "YAML mapping of config fields"], {},
      id="config-yaml-is-a-list"),
    P({}, "prefe: vendor\n",
      ["<file>", "key 'prefe'", "unknown key", YAML_ACCEPTED], {}, id="yaml-unknown-key"),
    P({}, "oot_enabled: false\n",
      ["<file>", "key 'oot_enabled'", "unknown key", YAML_ACCEPTED], {},
      id="yaml-env-only-field-is-unknown-key"),
    P({}, "stric: true\n", ["<file>", "key 'stric'", "unknown key", YAML_ACCEPTED], {},
      id="yaml-unknown-key-starting-with-str"),
    P({}, 'strict: "yes"\n', ["<file>", "field 'strict'", "'yes'", "true or false"], {},
      id="yaml-strict-string"),
    P({}, "prefer: 3\n", ["<file>", "field 'prefer'", "3", "accepted: flagos, vendor, reference"],
      {}, id="yaml-prefer-int"),
    P({}, "oot_blacklist: RMSNorm\n",
      ["<file>", "field 'oot_blacklist'", "'RMSNorm'", "a list of strings"], {},
      id="yaml-oot_blacklist-string"),
    P({}, "op_backends: [rms_norm]\n",
      ["<file>", "field 'op_backends'", "mapping of op name to a list of backend tokens"], {},
      id="yaml-op_backends-list"),
    # ---- mutually exclusive lists
    P({"SGLANG_FL_OOT_WHITELIST": "RMSNorm", "SGLANG_FL_OOT_BLACKLIST": "SiluAndMul"}, None,
      ["SGLANG_FL_OOT_WHITELIST", "SGLANG_FL_OOT_BLACKLIST", "RMSNorm", "SiluAndMul",
       "mutually exclusive"], {}, id="oot-white-and-black"),
    P({"SGLANG_FL_FLAGOS_WHITELIST": "mm", "SGLANG_FL_FLAGOS_BLACKLIST": "mul"}, None,
      ["SGLANG_FL_FLAGOS_WHITELIST", "SGLANG_FL_FLAGOS_BLACKLIST", "mm", "mul",
       "mutually exclusive"], {}, id="flagos-white-and-black"),
    # ---- log paths
    P({"SGLANG_FL_DISPATCH_LOG": "<tmp>/no/such/dir/d.log"}, None,
      ["SGLANG_FL_DISPATCH_LOG", "<tmp>/no/such/dir/d.log", "no such directory",
       "a file path whose directory exists"], {}, id="dispatch_log-missing-dir"),
    P({"SGLANG_FL_DISPATCH_LOG": "<tmp>"}, None,
      ["SGLANG_FL_DISPATCH_LOG", "<tmp>", "directory", "accepted: a file path"], {},
      id="dispatch_log-is-a-directory"),
    P({"SGLANG_FLAGGEMS_LOG_PATH": "<tmp>/nope/aten.log"}, None,
      ["SGLANG_FLAGGEMS_LOG_PATH", "<tmp>/nope/aten.log", "a file path whose directory exists"],
      {}, id="flaggems_log_path-missing-dir"),
    # ---- variables, platform, dist backend
    P({"SGLANG_FL_PREFFER": "vendor"}, None,
      ["SGLANG_FL_PREFFER", "'vendor'", "unknown sglang-fl variable", "SGLANG_FL_PREFER",
       "SGLANG_FL_CONFIG"], {}, id="unknown-variable"),
    P({"SGLANG_FLAGGEMS_RECORDS": "1"}, None,
      ["SGLANG_FLAGGEMS_RECORDS", "'1'", "unknown sglang-fl variable", "SGLANG_FLAGGEMS_RECORD",
       "SGLANG_FLAGGEMS_LOG_PATH"], {}, id="unknown-flaggems-variable"),
    P({"SGLANG_FLAGGEMS_LOGPATH": ""}, None,
      ["SGLANG_FLAGGEMS_LOGPATH", "''", "unknown sglang-fl variable", "SGLANG_FLAGGEMS_LOG_PATH"],
      {}, id="unknown-flaggems-variable-even-empty"),
    P({"SGLANG_FL_PLATFORM": "nonexistent"}, None,
      ["SGLANG_FL_PLATFORM", "'nonexistent'", "accepted: cpu"], CPU_ONLY,
      id="platform-unknown"),
    P({"SGLANG_FL_PLATFORM": "nvidia"}, None,
      ["SGLANG_FL_PLATFORM", "'nvidia'", "accepted: cpu, fakevendor, fv"], FV,
      id="platform-unknown-lists-aliases"),
    P({"SGLANG_FL_DIST_BACKEND": "nccl"}, None,
      ["SGLANG_FL_DIST_BACKEND", "'nccl'", "not supported on platform 'cpu'", "accepted: gloo"],
      {}, id="dist_backend-nccl-on-cpu"),
    P({"SGLANG_FL_DIST_BACKEND": "mpi"}, None,
      ["SGLANG_FL_DIST_BACKEND", "'mpi'", "nccl", "hccl", "gloo", "flagcx"], {},
      id="dist_backend-unknown"),
]  # fmt: skip


@pytest.mark.parametrize(("env", "user", "parts", "options"), ERRORS)
def test_config_errors(bundles, tmp_path, env, user, parts, options):
    if options:
        bundles(**options)
    user_path = (tmp_path / "user.yaml").resolve()
    env = _sub(dict(env), tmp_path, user_path)
    if user is not None:
        write_user_file(tmp_path, user)
        env["SGLANG_FL_CONFIG"] = str(user_path)
    with pytest.raises(ConfigError) as info:
        load_settings(env=env)
    message = str(info.value)
    for part in parts:
        assert _sub(part, tmp_path, user_path) in message, message
    assert "accepted: " in message  # every ConfigError lists what is accepted
    assert info.value.accepted and info.value.accepted in message


def test_error_in_platform_yaml_names_the_bundle(bundles):
    bundles(platform_yaml="prefer: fastest\n")
    with pytest.raises(ConfigError, match=r"platform_cpu\.yaml: field 'prefer'.*'fastest'"):
        load_settings(env={})


def test_user_file_that_is_not_text_is_a_config_error(tmp_path):
    path = tmp_path / "user.yaml"
    path.write_bytes(b"prefer: \xff\xfe\n")
    with pytest.raises(ConfigError) as info:
        load_settings(env={"SGLANG_FL_CONFIG": str(path)})
    message = str(info.value)
    assert message.startswith(f"SGLANG_FL_CONFIG: invalid value '{path}' (")
    assert "can't decode byte 0xff" in message
    assert message.endswith("; accepted: a readable UTF-8 YAML file")


# The documented variables (README "Environment variables"), by the setting they feed.
DOCUMENTED_ENV = {
    "prefer": "SGLANG_FL_PREFER", "strict": "SGLANG_FL_STRICT", "op_backends": "SGLANG_FL_PER_OP",
    "allow_vendors": "SGLANG_FL_ALLOW_VENDORS", "deny_vendors": "SGLANG_FL_DENY_VENDORS",
    "oot_enabled": "SGLANG_FL_OOT_ENABLED", "oot_whitelist": "SGLANG_FL_OOT_WHITELIST",
    "oot_blacklist": "SGLANG_FL_OOT_BLACKLIST", "use_flaggems": "USE_FLAGGEMS",
    "flagos_whitelist": "SGLANG_FL_FLAGOS_WHITELIST",
    "flagos_blacklist": "SGLANG_FL_FLAGOS_BLACKLIST", "dispatch_log": "SGLANG_FL_DISPATCH_LOG",
    "dist_backend": "SGLANG_FL_DIST_BACKEND", "platform": "SGLANG_FL_PLATFORM",
    "log_level": "SGLANG_FL_LOG_LEVEL", "flaggems_record": "SGLANG_FLAGGEMS_RECORD",
    "flaggems_log_path": "SGLANG_FLAGGEMS_LOG_PATH",
    "flaggems_log_once": "SGLANG_FLAGGEMS_LOG_ONCE", "aten_trace": "SGLANG_FL_ATEN_TRACE",
    "allow_untested_sglang": "SGLANG_FL_ALLOW_UNTESTED_SGLANG",
}  # fmt: skip
KNOWN_FL = sorted(
    [*(v for v in DOCUMENTED_ENV.values() if v.startswith("SGLANG_FL_")), "SGLANG_FL_CONFIG"]
)
KNOWN_FLAGGEMS = ["SGLANG_FLAGGEMS_LOG_ONCE", "SGLANG_FLAGGEMS_LOG_PATH", "SGLANG_FLAGGEMS_RECORD"]


@pytest.mark.parametrize(
    ("name", "value", "known"),
    [
        P("SGLANG_FL_PREFFER", "vendor", KNOWN_FL, id="sglang_fl"),
        P("SGLANG_FLAGGEMS_LOGONCE", "0", KNOWN_FLAGGEMS, id="sglang_flaggems"),
    ],
)
def test_mistyped_variables_of_both_prefixes_fail_alike(name, value, known):
    """One ConfigError naming the variable, its value and the known variables of its prefix."""
    with pytest.raises(ConfigError) as info:
        load_settings(env={"SGLANG_FL_PREFER": "flagos", name: value, "USE_FLAGGEMS": "1"})
    assert str(info.value) == (
        f"{name}: invalid value {value!r} (unknown sglang-fl variable); "
        f"accepted: known variables: {', '.join(known)}"
    )
    assert (info.value.setting, info.value.value) == (name, value)


def test_unknown_variable_check_ignores_other_prefixes():
    """Only SGLANG_FL_* and SGLANG_FLAGGEMS_* are reserved: SGLang's own SGLANG_* and unrelated
    vars are fine."""
    settings = load_settings(env={"SGLANG_PLUGINS": "sglang_fl", "SGLANG_FLAGGEMS_RECORD": "1",
                                  "PATH": "/usr/bin"})  # fmt: skip
    assert settings.flaggems_record is True


# --------------------------------------------------------------------------- (3) sample config


SAMPLE = _CONFIG_DIR / "sample.yaml"


def test_sample_config_exists_where_spec_says():
    assert SAMPLE.is_file()
    assert Path(settings_mod.__file__).resolve().parent == _CONFIG_DIR


def test_sample_config_loads_via_sglang_fl_config():
    settings = load_settings(env={"SGLANG_FL_CONFIG": str(SAMPLE)})
    data = yaml.safe_load(SAMPLE.read_text(encoding="utf-8"))
    source = f"file:{SAMPLE.resolve()}"
    assert settings.config_file == SAMPLE.resolve()
    assert settings.prefer == data["prefer"]
    assert settings.sources["prefer"] == source
    assert settings.strict is data["strict"]
    assert dict(settings.op_backends) == {k: tuple(v) for k, v in data["op_backends"].items()}
    assert settings.sources["op_backends"] == source
    assert settings.oot_blacklist == tuple(data["oot_blacklist"])
    assert settings.flagos_blacklist == tuple(data["flagos_blacklist"])


def test_sample_config_has_every_field():
    text = SAMPLE.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    assert set(data) == set(YAML_FIELDS)  # "all available options", each as a real key
    for name in YAML_FIELDS:
        assert re.search(rf"^{name}:", text, re.MULTILINE), name


def test_sample_config_documents_every_op_and_class_name():
    text = SAMPLE.read_text(encoding="utf-8")
    for name in (*OP_NAMES, *CLASS_NAMES):
        assert re.search(rf"\b{name}\b", text), name


# --------------------------------------------------------------------------- (4) public dict


def test_to_public_dict_keys_and_json(bundles, tmp_path):
    bundles(vendor=True)
    log = tmp_path / "dispatch.log"
    settings = load_settings(env={
        "SGLANG_FL_PER_OP": "rms_norm=vendor:fv|reference",
        "SGLANG_FL_ALLOW_VENDORS": "fv",
        "SGLANG_FL_OOT_WHITELIST": "RMSNorm",
        "SGLANG_FL_FLAGOS_BLACKLIST": "mm,mul",
        "SGLANG_FL_DISPATCH_LOG": str(log),
    })  # fmt: skip
    public = settings.to_public_dict()
    assert set(public) == PUBLIC_KEYS
    assert set(public["sources"]) == PUBLIC_KEYS - {"sources"}
    round_trip = json.loads(json.dumps(public))
    assert round_trip == public
    assert public["op_backends"] == {"rms_norm": ["vendor:fakevendor", "reference"]}
    assert public["allow_vendors"] == ["fakevendor"]
    assert public["deny_vendors"] == []
    assert public["oot_whitelist"] == ["RMSNorm"]
    assert public["oot_blacklist"] == []
    assert public["flagos_whitelist"] is None
    assert public["flagos_blacklist"] == ["mm", "mul"]
    assert public["dispatch_log"] == str(log)
    assert public["dist_backend"] == "gloo"
    assert public["platform"] == "cpu"
    assert public["prefer"] == "reference"
    assert public["sources"]["oot_blacklist"] == "env:SGLANG_FL_OOT_WHITELIST"
    assert public["sources"]["prefer"] == "platform:cpu"


def test_to_public_dict_defaults_json():
    public = load_settings(env={}).to_public_dict()
    assert set(public) == PUBLIC_KEYS
    assert public["allow_untested_sglang"] is False
    assert json.loads(json.dumps(public)) == public
    assert public["dispatch_log"] is None
    assert public["allow_vendors"] is None
    assert public["op_backends"] == {}


def test_without_steering_drops_every_variable_that_configures_sglang_fl():
    from sglang_fl.config import ENV, without_steering

    env = {"SGLANG_FL_PREFER": "vendor", "USE_FLAGGEMS": "0", "SGLANG_FLAGGEMS_RECORD": "1",
           "FLAGCX_PATH": "/opt/flagcx", "SGLANG_PLUGINS": "x", "SGLANG_PLATFORM": "y",
           "SGLANG_FL_TYPO": "1", "PATH": "/bin", "CUDA_VISIBLE_DEVICES": "0"}  # fmt: skip
    assert without_steering(env) == {"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "0"}
    for name in (*ENV.values(), "SGLANG_FL_CONFIG", "FLAGCX_PATH"):
        assert not without_steering({name: "1"}), name


# --------------------------------------------------------------------------- (5) the field table


def test_env_names_derive_from_the_table_and_stay_the_documented_ones():
    assert dict(ENV) == DOCUMENTED_ENV
    assert list(ENV) == [name for name, spec in FIELDS.items() if spec.env]


def test_public_and_yaml_fields_derive_from_the_table():
    # the order is the row order of `sglang-fl config`
    assert PUBLIC_FIELDS == (
        "prefer", "strict", "op_backends", "allow_vendors", "deny_vendors", "oot_enabled",
        "oot_whitelist", "oot_blacklist", "use_flaggems", "flagos_whitelist", "flagos_blacklist",
        "dispatch_log", "dist_backend", "flagcx_path", "platform", "allow_untested_sglang",
    )  # fmt: skip
    assert tuple(name for name, spec in FIELDS.items() if spec.public) == PUBLIC_FIELDS
    assert tuple(name for name, spec in FIELDS.items() if spec.yaml) == YAML_FIELDS
    assert tuple(settings_mod.FileConfig.model_fields) == YAML_FIELDS


def test_every_table_row_is_a_settings_field_and_defaults_come_from_it(bundles):
    """Unset everywhere, each setting is its table default (platform and dist_backend come
    from the platform bundle)."""
    bundles(platform_yaml="")
    settings = load_settings(env={})
    fields = {f.name for f in dataclasses.fields(Settings)}
    assert set(FIELDS) == fields - {"config_file", "sources"}
    assert set(settings.sources) == set(FIELDS)
    for name, spec in FIELDS.items():
        if name in ("platform", "dist_backend"):
            continue
        assert getattr(settings, name) == spec.default, name
        assert settings.sources[name] == "default", name
    assert (settings.platform, settings.dist_backend) == ("cpu", "gloo")


def test_defaults_are_not_shared_between_loads(bundles):
    bundles(platform_yaml="")
    first, second = load_settings(env={}), load_settings(env={})
    assert first.op_backends == second.op_backends == {}
    assert first.op_backends is not second.op_backends


# --------------------------------------------------------------------------- (6) the platform


def _cpu_only(monkeypatch, detect) -> None:
    cpu = dataclasses.replace(REAL_CPU, detect=detect)
    monkeypatch.setattr(settings_mod, "discover_bundles", lambda: {"cpu": cpu})


def test_no_platform_is_reported_before_any_other_check(monkeypatch):
    """Where no bundle applies sglang-fl stays inactive, so nothing else is judged there."""
    _cpu_only(monkeypatch, lambda: False)
    with pytest.raises(NoPlatformError) as info:
        load_settings(env={"SGLANG_FL_PREFFER": "typo", "SGLANG_FL_PREFER": "fastest"})
    assert str(info.value) == (
        "no installed platform bundle detected its hardware (installed: cpu); "
        "set SGLANG_FL_PLATFORM to force one"
    )


def test_a_forced_platform_needs_no_detection(monkeypatch):
    def never_called() -> bool:
        raise AssertionError("detection ran although the platform was forced")

    _cpu_only(monkeypatch, never_called)
    settings = load_settings(env={"SGLANG_FL_PLATFORM": "cpu"})
    assert (settings.platform, settings.sources["platform"]) == ("cpu", "env:SGLANG_FL_PLATFORM")


def test_the_platform_is_detected_once_per_load(monkeypatch):
    calls: list[int] = []
    _cpu_only(monkeypatch, lambda: not calls.append(1))
    settings = load_settings(env={})
    assert (settings.platform, settings.sources["platform"]) == ("cpu", "default")
    assert len(calls) == 1
