"""The ``sglang-fl`` command line, run as a user runs it (a subprocess of the installed script)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from sglang_fl.backends.flagos import triton_unavailable_reason
from sglang_fl.config import _CONFIG_DIR, PUBLIC_FIELDS, YAML_FIELDS
from sglang_fl.ops.catalog import OP_NAMES

CLI = [sys.executable, "-m", "sglang_fl.cli"]


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SGLANG_FL_", "SGLANG_FLAGGEMS_", "FLAGCX"))
    }
    return subprocess.run([*CLI, *args], env={**base, **env}, capture_output=True, text=True)


def test_config_json_has_the_documented_keys_and_sources(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("strict: true\noot_blacklist: [RotaryEmbedding]\n")
    out = run("config", "--json", SGLANG_FL_CONFIG=str(config), SGLANG_FL_PREFER="vendor")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert set(data) == {*PUBLIC_FIELDS, "sources"}
    assert set(data["sources"]) == set(PUBLIC_FIELDS)
    assert (data["prefer"], data["sources"]["prefer"]) == ("vendor", "env:SGLANG_FL_PREFER")
    assert (data["strict"], data["sources"]["strict"]) == (True, f"file:{config.resolve()}")
    assert data["oot_blacklist"] == ["RotaryEmbedding"]
    assert (data["dist_backend"], data["sources"]["dist_backend"]) == ("gloo", "platform:cpu")
    assert data["allow_vendors"] is None and data["dispatch_log"] is None


def test_json_file_writes_what_json_prints_and_keeps_the_table(tmp_path):
    printed = run("config", "--json", SGLANG_FL_PREFER="vendor")
    path = tmp_path / "sub" / "config.json"
    table = run("config", "--json-file", str(path), SGLANG_FL_PREFER="vendor")
    assert printed.returncode == table.returncode == 0, printed.stderr + table.stderr
    assert json.loads(path.read_text()) == json.loads(printed.stdout)
    assert table.stdout.splitlines()[0].split() == ["setting", "value", "source"]


def test_the_earlier_json_file_form_names_the_new_option(tmp_path):
    out = run("ops", "--json", str(tmp_path / "ops.json"))
    assert out.returncode == 2 and out.stdout == ""
    assert (
        out.stderr.strip()
        .splitlines()[-1]
        .endswith(
            f"unrecognized arguments: {tmp_path / 'ops.json'} (--json takes no value: it prints "
            "JSON on stdout; --json-file PATH writes it to a file)"
        )
    )


def test_building_the_parser_imports_neither_torch_nor_sglang():
    # `sglang-fl config` must work where only sglang-fl's own dependencies are installed
    code = (
        "import sys; from sglang_fl import cli; cli._parser(); "
        "print(sorted(m for m in ('torch', 'sglang') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_config_table_is_readable():
    out = run("config", SGLANG_FL_PER_OP="rms_norm=reference|flagos")
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line.split()[1:] for line in out.stdout.splitlines()[2:]}
    assert rows["op_backends"] == ["rms_norm=reference|flagos", "env:SGLANG_FL_PER_OP"]
    assert rows["platform"] == ["cpu", "default"]


def test_bad_config_exits_nonzero_with_one_clear_line():
    out = run("config", "--json", SGLANG_FL_STRICT="maybe")
    assert out.returncode == 2
    assert out.stdout == ""
    assert out.stderr.strip().splitlines() == [
        "sglang-fl: SGLANG_FL_STRICT: invalid value 'maybe'; "
        "accepted: 1, 0, true, false, yes, no, on, off"
    ]


def test_ops_json_reports_reasons_and_choice():
    out = run("ops", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["platform"] == "cpu"
    ops = {op["op"]: op for op in report["ops"]}
    assert set(ops) == set(OP_NAMES)
    for op in ops.values():
        assert op["chosen"] == "reference" and op["error"] is None
        impls = {i["impl_id"]: i for i in op["implementations"]}
        assert impls["reference"]["available"] and impls["reference"]["priority"] == 50
        flagos = impls["flagos"]
        assert flagos["priority"] == 150
        if not flagos["available"]:  # the subprocess sees what this process sees
            assert flagos["reason"] == triton_unavailable_reason()


def test_ops_strict_unavailable_first_choice_is_an_error():
    out = run("ops", SGLANG_FL_STRICT="1", SGLANG_FL_PER_OP="rms_norm=vendor|reference")
    assert out.returncode == 1
    assert "ERROR: strict mode: op 'rms_norm' cannot use its first choice 'vendor'" in out.stdout


def test_ops_json_exits_like_the_table():
    out = run("ops", "--json", SGLANG_FL_STRICT="1", SGLANG_FL_PER_OP="rms_norm=vendor|reference")
    assert out.returncode == 1
    errors = {op["op"]: op["error"] for op in json.loads(out.stdout)["ops"] if op["error"]}
    assert list(errors) == ["rms_norm"]
    assert errors["rms_norm"].startswith(
        "strict mode: op 'rms_norm' cannot use its first choice 'vendor'"
    )


def test_sample_config_writes_a_loadable_documented_file(tmp_path):
    target = tmp_path / "my.yaml"
    assert run("sample-config", str(target)).returncode == 0
    assert target.read_bytes() == (_CONFIG_DIR / "sample.yaml").read_bytes()
    assert set(yaml.safe_load(target.read_text())) == set(YAML_FIELDS)
    assert run("config", SGLANG_FL_CONFIG=str(target)).returncode == 0
    again = run("sample-config", str(target))
    assert again.returncode == 1 and "exists" in again.stderr


def test_serve_args_default_to_the_embedded_model(tmp_path, monkeypatch):
    from sglang_fl import cli

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    args = cli.serve_args(["--port", "31000"])
    model = Path(args[args.index("--model-path") + 1])
    assert model.parent == tmp_path / "sglang_fl" and (model / "config.json").is_file()
    assert args[args.index("--served-model-name") + 1] == "sglang-fl-tiny-qwen2"
    assert args[args.index("--dtype") + 1] == "float32" and "31000" in args
    mine = cli.serve_args(["--model-path", "/models/x", "--dtype", "bfloat16"])
    assert mine == ["--model-path", "/models/x", "--dtype", "bfloat16"]
