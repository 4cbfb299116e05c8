"""Bring a new SGLang release into sglang-fl: pin its CPU requirements, then run the platform
contract against it. The release-bump procedure around it is in docs/sglang-releases.md.

    python ci/sglang_release.py VERSION [--metadata FILE] [--pin-only] [--venv DIR]

1. Reads the release's wheel metadata (``pip download sglang==VERSION --no-deps``, or FILE: a
   wheel or a METADATA file) and writes, from ci/requirements/cpu-serving.txt:
     ci/requirements/sglang-VERSION.txt          sglang and xgrammar, installed --no-deps
     ci/requirements/sglang-VERSION-runtime.txt  the CPU-serving set, pinned, installed with
                                                 resolution under constraints.txt
   Each package of the set takes the release's own exact pin (``==``) when it has one, else the
   fallback pin of cpu-serving.txt, which must then satisfy the release's requirement.
2. Unless --pin-only: installs a CPU environment for the release (ci/install-env.sh, into DIR
   or a temporary folder) and runs the platform contract tests there
   (``-m platform_contract``): every bundle's platform class against that release's API.

Exit status 0 when both steps succeed; 1 with one line per problem otherwise.
"""

from __future__ import annotations

import argparse
import email.parser
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "ci" / "requirements"
SERVING_SET = REQUIREMENTS / "cpu-serving.txt"
# Installed without dependency resolution: SGLang's metadata pins CUDA torch and CUDA-only
# packages; xgrammar's pulls triton and torch, which the runtime set pins instead.
NO_DEPS = ("sglang", "xgrammar")
# The platform the CPU environments run on (markers in the metadata are evaluated for it).
TARGET = {**default_environment(), "sys_platform": "linux", "platform_system": "Linux",
          "platform_machine": "x86_64", "python_version": "3.11", "python_full_version": "3.11.7",
          "implementation_name": "cpython", "extra": ""}  # fmt: skip


class ReleaseError(Exception):
    """The release cannot be pinned as it is; one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def parse_version(text: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion as exc:
        raise argparse.ArgumentTypeError(f"not a version: {text!r}") from exc


def read_metadata(source: Path) -> str:
    """The METADATA text of a wheel, or of a METADATA file itself."""
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
            return wheel.read(name).decode("utf-8")
    return source.read_text(encoding="utf-8")


def download_metadata(version: Version, folder: Path) -> str:
    """``pip download`` the release's wheel (no dependencies) and read its METADATA."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         "--dest", str(folder), f"sglang=={version}"],
        check=True,
    )  # fmt: skip
    return read_metadata(next(folder.glob(f"sglang-{version}-*.whl")))


def release_requirements(metadata: str, version: Version) -> dict[str, Requirement]:
    """The release's runtime requirements that apply on the CPU target, by canonical name."""
    message = email.parser.Parser().parsestr(metadata)
    found = Version(message["Version"])
    if found != version:
        raise ReleaseError([f"the metadata is sglang {found}'s, not {version}'s"])
    requirements: dict[str, Requirement] = {}
    for line in message.get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(TARGET):
            requirements[canonicalize_name(requirement.name)] = requirement
    return requirements


def serving_set(path: Path = SERVING_SET) -> dict[str, Requirement]:
    """cpu-serving.txt: each package with its fallback pin, in file order."""
    entries: dict[str, Requirement] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            entries[canonicalize_name(requirement.name)] = requirement
    return entries


def exact_pin(requirement: Requirement) -> str | None:
    specs = list(requirement.specifier)
    return specs[0].version if len(specs) == 1 and specs[0].operator == "==" else None


@dataclass(frozen=True)
class ReleasePins:
    """What a CPU environment of one SGLang release installs."""

    version: Version
    no_deps: dict[str, str]  # package -> version, installed --no-deps
    runtime: dict[str, str]  # package -> version, installed with resolution
    torch: str  # the release's own torch requirement (the CPU environments use another)


def pin(version: Version, metadata: str, fallbacks: dict[str, Requirement]) -> ReleasePins:
    """Pin every package ``version`` needs on CPU (see the module docstring for the rule)."""
    wanted = release_requirements(metadata, version)
    runtime: dict[str, str] = {}
    problems = []
    for name, fallback in fallbacks.items():
        required = wanted.get(name)
        chosen = exact_pin(required) if required is not None else None
        if chosen is None:
            chosen = exact_pin(fallback)
            if chosen is None:
                problems.append(f"cpu-serving.txt: {fallback} is not an exact pin (==)")
                continue
            if required is not None and not required.specifier.contains(chosen, prereleases=True):
                problems.append(
                    f"sglang {version} requires {required}; the fallback pin {name}=={chosen} "
                    "of ci/requirements/cpu-serving.txt does not satisfy it: update it there"
                )
        runtime[name] = chosen
    xgrammar = exact_pin(wanted["xgrammar"]) if "xgrammar" in wanted else None
    if xgrammar is None:
        problems.append(f"sglang {version} does not pin xgrammar exactly (==): pin it by hand")
    if problems:
        raise ReleaseError(problems)
    torch = wanted.get("torch")
    return ReleasePins(
        version=version,
        no_deps=dict(zip(NO_DEPS, (str(version), str(xgrammar)), strict=True)),
        runtime=runtime,
        torch=str(torch) if torch is not None else "torch (unpinned)",
    )


def write_files(pins: ReleasePins, folder: Path = REQUIREMENTS) -> list[Path]:
    """Write the two requirement files of a release; returns their paths."""
    header = (
        f"# GENERATED by `python ci/sglang_release.py {pins.version}` from the release's wheel\n"
        "# metadata and ci/requirements/cpu-serving.txt; do not edit. SGLang requires\n"
        f"# {pins.torch}; the CPU environments run the CPU torch of constraints.txt instead\n"
        "# (docs/sglang-releases.md).\n"
    )
    files = {
        folder / f"sglang-{pins.version}.txt": ("Installed with --no-deps.", pins.no_deps),
        folder / f"sglang-{pins.version}-runtime.txt": (
            "Installed with resolution, constrained by constraints.txt.", pins.runtime,
        ),
    }  # fmt: skip
    for path, (how, packages) in files.items():
        lines = "".join(f"{name}=={pinned}\n" for name, pinned in packages.items())
        path.write_text(f"{header}# {how}\n{lines}", encoding="utf-8")
    return list(files)


def run_contract(version: Version, venv: Path) -> int:
    """Install ``version`` into ``venv`` as CI does and run the platform contract tests."""
    subprocess.run(["bash", str(ROOT / "ci" / "install-env.sh"), str(venv), str(version)],
                   check=True)  # fmt: skip
    python = venv / "bin" / "python"
    return subprocess.run(
        [str(python), str(ROOT / "ci" / "run_pytest.py"), "-m", "platform_contract", "-q"],
        cwd=ROOT,
    ).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("version", type=parse_version, help="the SGLang release, e.g. 0.5.24")
    parser.add_argument("--metadata", type=Path, help="its wheel or METADATA file (no download)")
    parser.add_argument("--pin-only", action="store_true", help="write the pins, run nothing")
    parser.add_argument("--venv", type=Path, help="environment to install (default: temporary)")
    parser.add_argument("--requirements", type=Path, default=REQUIREMENTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            metadata = (read_metadata(args.metadata) if args.metadata
                        else download_metadata(args.version, Path(tmp)))  # fmt: skip
        fallbacks = serving_set(args.requirements / "cpu-serving.txt")
        written = write_files(pin(args.version, metadata, fallbacks), args.requirements)
    except ReleaseError as exc:
        for problem in exc.problems:
            print(f"ci/sglang_release.py: {problem}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    if args.pin_only:
        return 0
    if args.venv is not None:
        return run_contract(args.version, args.venv)
    with tempfile.TemporaryDirectory() as tmp:
        return run_contract(args.version, Path(tmp) / "venv")


if __name__ == "__main__":
    raise SystemExit(main())
