"""The distribution ``pip install sglang-fl`` installs: what it pulls in, the entry points SGLang
and the bundles rely on, the data files it ships, its version.

Checked on a wheel built from a copy of this checkout (``pip wheel --no-deps --no-build-isolation
--no-index``), not on the source tree or on the editable install the test environments have:
those see every file whether or not the build ships it. Building needs the build backend in the
test environment (setuptools, in the ``test`` extra); nothing is downloaded.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import PathDistribution, entry_points, version
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
# The bundles this wheel carries: every platforms/<name>/ that is not a distribution of its own
# (the template is: platforms/template/pyproject.toml).
FIRST_PARTY = sorted(
    d.name
    for d in (ROOT / "platforms").iterdir()
    if (d / f"sglang_fl_{d.name}").is_dir() and not (d / "pyproject.toml").exists()
)


@dataclass(frozen=True)
class Wheel:
    path: Path
    files: frozenset[str]  # the archive's member names
    dist: PathDistribution  # its metadata (dist-info), read with importlib.metadata

    def source(self, module: str) -> str:
        """The source of ``module`` as shipped (a module file or a package's ``__init__.py``)."""
        base = module.replace(".", "/")
        for name in (f"{base}.py", f"{base}/__init__.py"):
            if name in self.files:
                with zipfile.ZipFile(self.path) as archive:
                    return archive.read(name).decode("utf-8")
        raise AssertionError(f"module {module} is not in {self.path.name}")


def _ignored_names() -> list[str]:
    """.gitignore's patterns as file-name patterns, plus .git: what a clean build never sees."""
    lines = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    names = [line.rstrip("/").rsplit("/", 1)[-1] for line in lines]
    return [".git", *(n for n in names if n and not n.startswith("#"))]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Wheel:
    """The wheel of this checkout, built from a copy (a build in place would write build/ and
    *.egg-info into the checkout and could package what an earlier build left in build/)."""
    tmp = tmp_path_factory.mktemp("packaging")
    src, out = tmp / "src", tmp / "wheels"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*_ignored_names()))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", "wheel"]
    command = [*pip, "--no-deps", "--no-build-isolation", "--no-index", "-w", str(out), str(src)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (path,) = out.glob("sglang_fl-*.whl")
    with zipfile.ZipFile(path) as archive:
        files = frozenset(archive.namelist())
        (info,) = {n.split("/")[0] for n in files if n.split("/")[0].endswith(".dist-info")}
        archive.extractall(tmp / "unpacked", members=[n for n in files if n.startswith(info)])
    return Wheel(path, files, PathDistribution(tmp / "unpacked" / info))


def _name(requirement: str) -> str:
    """The canonical project name of a ``Requires-Dist`` value."""
    name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1)
    return re.sub(r"[-_.]+", "-", name).lower()


def test_install_never_pulls_torch_or_sglang(wheel):
    """What ``pip install sglang-fl`` resolves: the wheel's requirements outside any extra."""
    requires = wheel.dist.requires or []
    unconditional = [r for r in requires if not re.search(r";.*\bextra\s*==", r)]
    assert {_name(r) for r in unconditional} == {"pyyaml", "pydantic"}, requires


def test_entry_points_are_registered(wheel):
    """The wheel registers SGLang's two plugin entry points, the CLI and every first-party
    bundle; each target is defined in a module the wheel ships; and this environment's
    installation registers the same SGLang entry points (what SGLang looks up at start)."""
    shipped = {(ep.group, ep.name): ep.value for ep in wheel.dist.entry_points}
    expected = {
        ("sglang.srt.plugins", "sglang_fl"): "sglang_fl.plugin:load_plugin",
        ("sglang.srt.platforms", "sglang_fl"): "sglang_fl.plugin:activate_platform",
        ("console_scripts", "sglang-fl"): "sglang_fl.cli:main",
        **{("sglang_fl.platforms", b): f"sglang_fl_{b}:BUNDLE" for b in FIRST_PARTY},
    }
    assert shipped == expected
    for value in shipped.values():
        module, _, attr = value.partition(":")
        tree = ast.parse(wheel.source(module))
        defined = set()
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                defined.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                defined |= {t.id for t in targets if isinstance(t, ast.Name)}
        assert attr in defined, f"{value}: {attr} is not defined at the top of {module}"
    for group in ("sglang.srt.plugins", "sglang.srt.platforms"):
        installed = {ep.value for ep in entry_points(group=group) if ep.name == "sglang_fl"}
        assert installed == {shipped[(group, "sglang_fl")]}, group


def test_bundle_yaml_ships_as_package_data(wheel):
    """Every YAML file of the packages in the wheel is in it, and so is the platform YAML each
    first-party bundle reads (its ``config_file``)."""
    roots = [ROOT, *(ROOT / "platforms" / b for b in FIRST_PARTY)]
    packages = [ROOT / "sglang_fl", *(r / f"sglang_fl_{r.name}" for r in roots[1:])]
    yaml = {
        path.relative_to(package.parent).as_posix()
        for package in packages
        for path in package.rglob("*.yaml")
    }
    platform_yaml = {f"sglang_fl_{b}/{b}.yaml" for b in FIRST_PARTY}
    assert platform_yaml | {"sglang_fl/config/sample.yaml"} <= yaml  # the glob found them
    assert yaml - wheel.files == set()
    for bundle in FIRST_PARTY:
        module = import_module(f"sglang_fl_{bundle}")
        package_dir = Path(module.__file__).parent
        config = module.BUNDLE.config_file.relative_to(package_dir).as_posix()
        assert f"sglang_fl_{bundle}/{config}" in wheel.files, bundle


def test_version_is_the_same_in_the_package_the_wheel_and_the_installation(wheel):
    """``sglang_fl.__version__``, the version the wheel is built with (pyproject.toml's) and the
    installed distribution's metadata are one version."""
    import sglang_fl

    built = wheel.dist.version
    assert wheel.path.name.startswith(f"sglang_fl-{built}-")
    assert sglang_fl.__version__ == built
    assert version("sglang-fl") == built
