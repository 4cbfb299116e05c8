"""Unit tests for ``sglang_fl.config.source``: the typed provenance of a setting.

The rendered text (``env:VAR``, ``file:/path``, ``platform:name``, ``default``) is a documented
interface (``sglang-fl config``, its ``--json``, log lines), so these tests pin it exactly.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import pickle

import pytest

from sglang_fl.config import Source, SourceKind, load_settings
from sglang_fl.config.source import DEFAULT

P = pytest.param
RENDERED = [
    P(Source.env("SGLANG_FL_STRICT"), SourceKind.ENV, "SGLANG_FL_STRICT", "env:SGLANG_FL_STRICT",
      id="env"),
    P(Source.file("/etc/sglang-fl/my config.yaml"), SourceKind.FILE,
      "/etc/sglang-fl/my config.yaml", "file:/etc/sglang-fl/my config.yaml", id="file"),
    P(Source.platform("cpu"), SourceKind.PLATFORM, "cpu", "platform:cpu", id="platform"),
    P(DEFAULT, SourceKind.DEFAULT, "", "default", id="default"),
]  # fmt: skip


@pytest.mark.parametrize(("source", "kind", "name", "text"), RENDERED)
def test_parts_and_rendering(source, kind, name, text):
    assert (source.kind, source.name) == (kind, name)
    assert str(source) == text and type(str(source)) is str
    assert f"{source}" == text
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "from %s", (source,), None)
    assert record.getMessage() == f"from {text}"  # how log lines such as Layer 3's print it
    assert json.dumps({"s": source}) == json.dumps({"s": text})


@pytest.mark.parametrize(("source", "kind", "name", "text"), RENDERED)
def test_equal_to_its_rendering_and_to_the_same_parts(source, kind, name, text):
    """Code written against the old string form (``== "platform:cpu"``) keeps working."""
    assert source == text and text == source
    assert hash(source) == hash(text)
    assert source == Source(kind, name)
    assert source != Source(SourceKind.ENV, "SGLANG_FL_OTHER")


@pytest.mark.parametrize(("source", "kind", "name", "text"), RENDERED)
def test_survives_pickle_and_copy_with_its_parts(source, kind, name, text):
    for clone in (pickle.loads(pickle.dumps(source)), copy.copy(source), copy.deepcopy(source)):
        assert isinstance(clone, Source)
        assert (clone.kind, clone.name, str(clone)) == (kind, name, text)


def test_is_frozen():
    source = Source.env("SGLANG_FL_PREFER")
    with pytest.raises(dataclasses.FrozenInstanceError):
        source.name = "SGLANG_FL_STRICT"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kind", "name"),
    [(SourceKind.DEFAULT, "x"), (SourceKind.ENV, ""), (SourceKind.FILE, ""),
     (SourceKind.PLATFORM, "")],
)  # fmt: skip
def test_only_default_has_no_name(kind, name):
    with pytest.raises(ValueError, match="only 'default' has no name"):
        Source(kind, name)


def test_settings_record_typed_sources(tmp_path):
    user = tmp_path / "user.yaml"
    user.write_text("strict: true\n", encoding="utf-8")
    settings = load_settings(env={"SGLANG_FL_CONFIG": str(user), "SGLANG_FL_PREFER": "vendor"})
    assert all(isinstance(source, Source) for source in settings.sources.values())
    assert settings.sources["prefer"] == Source(SourceKind.ENV, "SGLANG_FL_PREFER")
    assert settings.sources["strict"] == Source(SourceKind.FILE, str(user.resolve()))
    assert settings.sources["dist_backend"] == Source(SourceKind.PLATFORM, "cpu")
    assert settings.sources["oot_enabled"].kind is SourceKind.DEFAULT
    public = settings.to_public_dict()["sources"]
    assert all(type(text) is str for text in public.values())
    assert public["strict"] == f"file:{user.resolve()}"
