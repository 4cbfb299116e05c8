"""The CPU serving image as an operator runs it, against a real Docker engine.

``docker run -p 30000:30000 IMAGE``: healthy through the image's own HEALTHCHECK, then the OpenAI
API from the host (completions, chat, streaming chat). Then the image configured the container
way: a mounted YAML file (SGLANG_FL_CONFIG), an environment override, a model from a volume and
SGLang arguments after the image name; the dispatch log inside the container must show both the
file and the override. Bad configuration must stop the container at once with sglang-fl's
one-line error. Every stop must leave no container and no process behind.

Needs the image (``CPU_IMAGE``, default ``sglang-fl:cpu``): ``tox -e docker-cpu`` builds it and
runs this module (ci/docker-cpu.sh).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import psutil
import pytest
import requests
from docker_helpers import Container, docker, one_shot, require_image, sse_contents

if sys.version_info >= (3, 11):
    import tomllib
else:  # the test extra installs it
    import tomli as tomllib

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ROOT = Path(__file__).parents[2]
IMAGE = os.environ.get("CPU_IMAGE", "sglang-fl:cpu")
MODEL = "sglang-fl-tiny-qwen2"
CONFIG_IN_CONTAINER = "/etc/sglang-fl/config.yaml"
DISPATCH_LOG = "/tmp/sglang-fl-dispatch.log"
USER_YAML = "prefer: reference\noot_blacklist: [RotaryEmbedding]\n"
OCI_LABELS = ("title", "version", "source", "licenses", "revision", "created")
S = 1_000_000_000  # a second in nanoseconds


@pytest.fixture(scope="module")
def image_info() -> dict:
    return require_image(IMAGE)


def _serve(**kwargs) -> Container:
    container = Container.start(IMAGE, **kwargs)
    try:
        container.wait_healthy()
    except BaseException:
        container.remove()
        raise
    return container


@pytest.fixture(scope="module")
def default_server(image_info):
    """``docker run -p 127.0.0.1::30000 IMAGE``: no configuration, no arguments."""
    container = _serve()
    yield container
    container.remove()


@pytest.fixture(scope="module")
def configured_server(image_info, tmp_path_factory):
    """A mounted YAML, an env override of one of its fields, a model from a volume, SGLang args."""
    tmp = tmp_path_factory.mktemp("configured")
    config = tmp / "config.yaml"
    config.write_text(USER_YAML)
    model = _copy_embedded_model_out(tmp / "models")
    container = _serve(
        env={"SGLANG_FL_CONFIG": CONFIG_IN_CONTAINER, "SGLANG_FL_PREFER": "flagos",
             "SGLANG_FL_DISPATCH_LOG": DISPATCH_LOG},
        volumes=[f"{config}:{CONFIG_IN_CONTAINER}:ro", f"{model}:/models/tiny:ro"],
        args=["--model-path", "/models/tiny", "--served-model-name", "tiny-from-volume",
              "--port", "31000"],
        port=31000,
    )  # fmt: skip
    yield container
    container.remove()


def _copy_embedded_model_out(dest: Path) -> Path:
    """The model the image generated at build time, copied to the host (a model "volume")."""
    cid = docker("create", IMAGE).stdout.strip()
    try:
        docker("cp", f"{cid}:/home/sglang/.cache/sglang_fl/.", str(dest))
    finally:
        docker("rm", cid)
    (model,) = (d for d in dest.iterdir() if d.name.startswith(MODEL))
    return model


def _post(server: Container, path: str, body: dict, **kwargs) -> requests.Response:
    response = requests.post(f"{server.url}{path}", json=body, timeout=120, **kwargs)
    response.raise_for_status()
    return response


def _stop_and_check_nothing_left(server: Container) -> None:
    pids = server.host_pids()
    assert len(pids) >= 3, pids  # launcher, scheduler, detokenizer
    took = server.stop(grace_s=30)
    state = server.inspect()["State"]
    assert state["ExitCode"] == 0, (state, server.logs()[-3000:])  # 137 would mean SIGKILL
    assert took < 30, took
    server.remove()
    _, alive = psutil.wait_procs([p for p in map(_process, pids) if p], timeout=30)
    assert alive == [], f"left running: {alive}"
    assert docker("ps", "-aq", "--filter", f"id={server.id}").stdout.strip() == ""


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


# --------------------------------------------------------------------------- the image itself


def test_image_metadata(image_info):
    config = image_info["Config"]
    labels = config["Labels"]
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name in OCI_LABELS:
        assert labels.get(f"org.opencontainers.image.{name}"), name
    assert labels["org.opencontainers.image.version"] == version
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert config["User"] == "10001"
    assert config["Entrypoint"] == ["sglang-fl-entrypoint"]
    assert "30000/tcp" in config["ExposedPorts"]
    assert config["Healthcheck"]["Test"] == [
        "CMD", "python3", "/usr/local/bin/sglang-fl-healthcheck",
    ]  # fmt: skip
    # Docker reports the durations in nanoseconds
    timings = {
        k: config["Healthcheck"][k] for k in ("Interval", "Timeout", "StartPeriod", "Retries")
    }
    assert timings == {"Interval": 10 * S, "Timeout": 10 * S, "StartPeriod": 300 * S, "Retries": 3}
    assert config["WorkingDir"] == "/home/sglang"
    assert labels["org.opencontainers.image.title"] == "sglang-fl-cpu"
    assert labels["sglang-fl.platform"] == "cpu"
    assert labels["sglang-fl.torchvision-shim"] in ("0", "1")


def test_labels_say_what_the_image_has(image_info):
    """The SGLang label is the installed SGLang, the shim label whether the shim is installed."""
    labels = image_info["Config"]["Labels"]
    probe = (
        "import importlib.metadata as m, importlib.util as u;"
        " print(m.version('sglang'), int(u.find_spec('sglang_fl_ci_tvshim') is not None))"
    )
    result = one_shot(IMAGE, "python3", "-c", probe)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        labels["sglang-fl.sglang-version"], labels["sglang-fl.torchvision-shim"],
    ]  # fmt: skip


def test_a_command_runs_instead_of_the_server(image_info):
    result = one_shot(IMAGE, "sglang-fl", "config", "--json")
    assert result.returncode == 0, result.stderr
    settings = json.loads(result.stdout)
    assert (settings["platform"], settings["dist_backend"], settings["prefer"]) == (
        "cpu", "gloo", "reference",
    )  # fmt: skip
    assert settings["sources"]["prefer"] == "platform:cpu"
    assert one_shot(IMAGE, "id", "-u").stdout.strip() == "10001"


# --------------------------------------------------------------------------- docker run IMAGE


def test_default_run_is_healthy_through_its_healthcheck(default_server):
    assert default_server.health_output() == "healthy: http://127.0.0.1:30000/health: HTTP 200"


def test_default_run_serves_the_embedded_model(default_server):
    models = requests.get(f"{default_server.url}/v1/models", timeout=30).json()
    assert [m["id"] for m in models["data"]] == [MODEL]


def test_completion_from_the_host(default_server):
    body = {"model": MODEL, "prompt": "The quick brown fox", "max_tokens": 16, "temperature": 0}
    first, second = (_post(default_server, "/v1/completions", body).json() for _ in range(2))
    assert first["usage"]["completion_tokens"] == 16
    assert first["choices"][0]["finish_reason"] == "length"
    text = first["choices"][0]["text"]
    assert text.strip() and text == second["choices"][0]["text"]  # greedy: deterministic


def test_chat_and_streaming_chat_from_the_host(default_server):
    body = {
        "model": MODEL, "max_tokens": 12, "temperature": 0,
        "messages": [{"role": "user", "content": "Tell me about the sea."}],
    }  # fmt: skip
    plain = _post(default_server, "/v1/chat/completions", body).json()
    content = plain["choices"][0]["message"]["content"]
    assert plain["choices"][0]["finish_reason"] == "length" and content.strip()
    with _post(default_server, "/v1/chat/completions", {**body, "stream": True}, stream=True) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        streamed = sse_contents(r.iter_lines())
    assert len([s for s in streamed if s]) > 1  # really streamed, chunk by chunk
    assert "".join(streamed) == content


def test_server_processes_run_unprivileged(default_server):
    # `docker top` passes these options to ps; it needs the pid column to map the rows
    rows = docker("top", default_server.id, "-eo", "pid,uid,comm").stdout.splitlines()[1:]
    assert {row.split()[1] for row in rows} == {"10001"}, rows


def test_default_run_stops_cleanly(default_server):
    _stop_and_check_nothing_left(default_server)


# --------------------------------------------------------------------------- configured run


def test_sglang_arguments_after_the_image_name_are_used(configured_server):
    models = requests.get(f"{configured_server.url}/v1/models", timeout=30).json()
    assert [m["id"] for m in models["data"]] == ["tiny-from-volume"]
    # the healthcheck follows the server to the port given on the command line
    health = configured_server.health_output()
    assert health == "healthy: http://127.0.0.1:31000/health: HTTP 200"
    body = {"model": "tiny-from-volume", "prompt": "Hello", "max_tokens": 4, "temperature": 0}
    assert _post(configured_server, "/v1/completions", body).json()["usage"]["completion_tokens"]


def test_dispatch_log_inside_the_container_reflects_file_and_override(configured_server):
    # written at the path the environment gives, by the server's own (warm-up) forward passes
    result = configured_server.exec("cat", DISPATCH_LOG)
    assert result.returncode == 0, result.stderr
    lines = set(result.stdout.splitlines())
    # the file's oot_blacklist keeps RotaryEmbedding on SGLang's own path
    assert lines == {
        "[OOT-DISPATCH] SiluAndMul \u2192 reference(reference)",
        "[OOT-DISPATCH] RMSNorm \u2192 reference(reference)",
    }
    # SGLANG_FL_PREFER=flagos overrides the file's `prefer: reference`: the plugin tried FlagGems
    # first and fell back (there is no FlagGems device on CPU), once per op
    logs = configured_server.logs()
    for op in ("silu_and_mul", "rms_norm"):
        assert f"Op '{op}' fallback to 'reference'" in logs, logs[-3000:]
    assert "Op 'rotary_embedding'" not in logs


def test_effective_settings_inside_the_container_name_their_sources(configured_server):
    result = configured_server.exec("sglang-fl", "config", "--json")
    assert result.returncode == 0, result.stderr
    settings = json.loads(result.stdout)
    assert settings["prefer"] == "flagos"
    assert settings["sources"]["prefer"] == "env:SGLANG_FL_PREFER"
    assert settings["oot_blacklist"] == ["RotaryEmbedding"]
    assert settings["sources"]["oot_blacklist"] == f"file:{CONFIG_IN_CONTAINER}"
    assert settings["dispatch_log"] == DISPATCH_LOG


def test_configured_run_stops_cleanly(configured_server):
    _stop_and_check_nothing_left(configured_server)


# --------------------------------------------------------------------------- bad configuration


def _bad_yaml(tmp_path: Path, text: str, mode: int = 0o644) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    path.chmod(mode)
    return f"{path}:{CONFIG_IN_CONTAINER}:ro"


BAD_CONFIG = [
    pytest.param(
        {"SGLANG_FL_PREFER": "fastest"}, None,
        "sglang-fl: SGLANG_FL_PREFER: invalid value 'fastest'; accepted: flagos, vendor, reference",
        id="bad-env-value"),
    pytest.param(
        {"SGLANG_FL_PREFERRED": "reference"}, None,
        "sglang-fl: SGLANG_FL_PREFERRED: invalid value 'reference' (unknown sglang-fl variable)",
        id="mistyped-variable"),
    pytest.param(
        {"SGLANG_FL_CONFIG": CONFIG_IN_CONTAINER}, None,
        f"sglang-fl: SGLANG_FL_CONFIG: invalid value '{CONFIG_IN_CONTAINER}' (file not found); "
        "accepted: path to an existing YAML file",
        id="config-not-mounted"),
    pytest.param(
        {"SGLANG_FL_CONFIG": CONFIG_IN_CONTAINER}, ("prefered: flagos\n", 0o644),
        f"sglang-fl: {CONFIG_IN_CONTAINER}: key 'prefered': invalid value 'flagos' (unknown key)",
        id="unknown-yaml-key"),
    pytest.param(
        {"SGLANG_FL_CONFIG": CONFIG_IN_CONTAINER}, (USER_YAML, 0o600),
        f"sglang-fl: SGLANG_FL_CONFIG: invalid value '{CONFIG_IN_CONTAINER}' (Permission denied); "
        "accepted: a readable UTF-8 YAML file",
        id="yaml-unreadable-by-the-container-user"),
]  # fmt: skip


@pytest.mark.parametrize(("env", "yaml_file", "error"), BAD_CONFIG)
def test_bad_configuration_stops_the_container_with_one_line(
    image_info, tmp_path, env, yaml_file, error
):
    volumes = [_bad_yaml(tmp_path, *yaml_file)] if yaml_file else []
    result = one_shot(IMAGE, env=env, volumes=volumes, timeout=60)
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(error), result.stderr
    assert result.stdout == ""
