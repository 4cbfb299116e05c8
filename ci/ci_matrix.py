"""ci/matrix.yml: its schema, and the checks that keep it consistent with tox.ini.

``load_matrix()`` returns a validated :class:`Matrix` or raises :class:`MatrixError` listing
every problem, each naming the entry (``cells[5] (id 'cuda')``), the field and what is
accepted. Beyond the schema it checks what the schema cannot: ids are unique, cells name known
platforms and supported SGLang versions, accelerator cells run on self-hosted runners with a
hardware label and never on pull requests, and each cell's tox env exists with the same marker
expression and SGLang version as the cell, and the default tox envlist is all in the matrix.
"""

from __future__ import annotations

import configparser
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

ROOT = Path(__file__).resolve().parents[1]
MATRIX = ROOT / "ci" / "matrix.yml"
TOX_INI = ROOT / "tox.ini"

# Labels every self-hosted runner has (GitHub adds them): a cell needs one beyond these to say
# which hardware it wants.
GENERIC_LABELS = frozenset({"self-hosted", "linux", "macos", "windows", "x64", "arm", "arm64"})
SGLANG_PLACEHOLDER = "{sglang}"


class MatrixError(ValueError):
    """ci/matrix.yml is invalid; one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"ci/matrix.yml: {p}" for p in problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Container(_Strict):
    image: str = Field(min_length=1)
    options: str | None = None
    volumes: list[str] = []


class Platform(_Strict):
    description: str
    accelerator: bool
    runner: list[str] = Field(min_length=1)
    container: Container | None = None
    env: dict[str, str] = {}


class Cell(_Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    platform: str
    tox_env: str
    description: str
    sglang: str | None = None
    markers: str | None = None
    runner: list[str] | None = Field(default=None, min_length=1)
    pull_requests: bool = True
    timeout_minutes: int = Field(default=60, ge=1, le=360)

    def runs_on(self, platforms: dict[str, Platform]) -> list[str]:
        return self.runner or platforms[self.platform].runner


class Matrix(_Strict):
    sglang_versions: list[str] = Field(min_length=1)
    platforms: dict[str, Platform] = Field(min_length=1)
    cells: list[Cell] = Field(min_length=1)

    def runner_of(self, cell: Cell) -> list[str]:
        return cell.runs_on(self.platforms)


# --------------------------------------------------------------------------- loading


def load_matrix(path: Path = MATRIX, tox_ini: Path = TOX_INI) -> Matrix:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise MatrixError([f"not valid YAML: {exc}"]) from exc
    return validate(data, Tox(tox_ini))


def validate(data: Any, tox: Tox) -> Matrix:
    if not isinstance(data, dict):
        raise MatrixError([f"the top level must be a mapping, got {type(data).__name__}"])
    try:
        matrix = Matrix.model_validate(data)
    except ValidationError as exc:
        raise MatrixError([_schema_problem(data, error) for error in exc.errors()]) from exc
    problems = _consistency_problems(matrix, tox)
    if problems:
        raise MatrixError(problems)
    return matrix


def _schema_problem(data: dict, error: dict) -> str:
    """``cells[5] (id 'cuda'): field 'runner': Input should be a valid list``"""
    loc = list(error["loc"])
    where = ""
    if len(loc) >= 2 and loc[0] == "cells" and isinstance(loc[1], int):
        where = _cell_name(data, loc[1])
        loc = loc[2:]
    elif len(loc) >= 2 and loc[0] == "platforms":
        where, loc = f"platforms.{loc[1]}", loc[2:]
    field = ".".join(str(part) for part in loc)
    subject = f"{where}: field {field!r}" if where and field else where or f"field {field!r}"
    got = "" if error["type"] == "missing" else f" (got {error['input']!r})"
    return f"{subject}: {error['msg']}{got}"


def _cell_name(data: dict, index: int) -> str:
    cells = data.get("cells")
    cell = cells[index] if isinstance(cells, list) and index < len(cells) else None
    ident = cell.get("id") if isinstance(cell, dict) else None
    return f"cells[{index}] (id {ident!r})" if ident else f"cells[{index}]"


# --------------------------------------------------------------------------- consistency


def _consistency_problems(matrix: Matrix, tox: Tox) -> list[str]:
    problems: list[str] = []
    seen: set[str] = set()
    for index, cell in enumerate(matrix.cells):
        name = f"cells[{index}] (id {cell.id!r})"
        if cell.id in seen:
            problems.append(f"{name}: field 'id': {cell.id!r} is used by an earlier cell")
        seen.add(cell.id)
        problems += [f"{name}: {p}" for p in _cell_problems(cell, matrix, tox)]
    in_matrix = {cell.tox_env for cell in matrix.cells}
    for env in tox.envlist:
        if env not in in_matrix:
            problems.append(
                f"cells: tox env {env!r} is in tox.ini's default envlist (what "
                "ci/test.sh runs) but no cell runs it"
            )
    return problems


def _cell_problems(cell: Cell, matrix: Matrix, tox: Tox) -> list[str]:
    platform = matrix.platforms.get(cell.platform)
    if platform is None:
        return [
            f"field 'platform': {cell.platform!r} is not one of the platforms "
            f"({', '.join(sorted(matrix.platforms))})"
        ]
    problems = _runner_problems(cell, platform, matrix.runner_of(cell))
    if cell.sglang is not None and cell.sglang not in matrix.sglang_versions:
        problems.append(
            f"field 'sglang': {cell.sglang!r} is not a supported version "
            f"({', '.join(matrix.sglang_versions)})"
        )
    image = platform.container.image if platform.container else ""
    if SGLANG_PLACEHOLDER in image and cell.sglang is None:
        problems.append(
            f"field 'sglang': required: platform {cell.platform!r}'s image "
            f"{image!r} names the SGLang version"
        )
    return problems + _tox_problems(cell, tox)


def _runner_problems(cell: Cell, platform: Platform, labels: list[str]) -> list[str]:
    field = "runner" if cell.runner else f"platform {cell.platform!r} runner"
    problems = [
        f"field {field!r}: label {label!r} has characters a runner label cannot have"
        for label in labels
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", label)
    ]
    if not platform.accelerator:
        return problems
    if "self-hosted" not in labels or not set(labels) - GENERIC_LABELS:
        problems.append(
            f"field {field!r}: {labels} cannot reach an accelerator: an accelerator "
            "cell runs on [self-hosted, ..., <hardware label>]"
        )
    if cell.pull_requests:
        problems.append(
            "field 'pull_requests': must be false for a cell on self-hosted "
            "runners: a pull request from a fork would run its code on them"
        )
    return problems


def _tox_problems(cell: Cell, tox: Tox) -> list[str]:
    if cell.tox_env not in tox.envs:
        return [
            f"field 'tox_env': {cell.tox_env!r} is not an env of tox.ini "
            f"({', '.join(sorted(tox.envs))})"
        ]
    problems = []
    markers = tox.markers(cell.tox_env)
    if markers != cell.markers:
        problems.append(
            f"field 'markers': {cell.markers!r}, but tox env {cell.tox_env!r} selects {markers!r}"
        )
    sglang = tox.sglang(cell.tox_env)
    if sglang != cell.sglang:
        problems.append(
            f"field 'sglang': {cell.sglang!r}, but tox env {cell.tox_env!r} "
            f"installs or checks {sglang!r}"
        )
    return problems


# --------------------------------------------------------------------------- tox.ini


class Tox:
    """What the matrix check reads from tox.ini: envs, the default envlist, and per env the
    pytest ``-m`` expression and the SGLang version, with tox's substitutions resolved."""

    _MARKERS = re.compile(r'-m "([^"]*)"')
    _SGLANG = re.compile(r"(?:install-env\.sh \S+|check_stack\.py [^\n]*--sglang) (\d[\w.]*)")

    def __init__(self, path: Path) -> None:
        self.config = configparser.ConfigParser(interpolation=None)
        self.config.read(path, encoding="utf-8")
        sections = self.config.sections()
        self.envs = {s.split(":", 1)[1] for s in sections if s.startswith("testenv:")}
        raw = self.config.get("tox", "envlist", fallback="")
        self.envlist = [env for env in re.split(r"[\s,]+", raw) if env]

    def value(self, env: str, key: str) -> str:
        section = f"testenv:{env}"
        raw = self.config.get(section, key, fallback=None)
        if raw is None:
            raw = self.config.get("testenv", key, fallback="")
        return self._resolve(raw, env)

    def _resolve(self, text: str, env: str) -> str:
        def section_ref(match: re.Match) -> str:
            return self._resolve(self.config.get(match[1], match[2], fallback=""), env)

        text = re.sub(r"\{\[([^\]]+)\](\w+)\}", section_ref, text)
        setenv = self._setenv(env)
        return re.sub(r"\{env:(\w+)(?::([^}]*))?\}", lambda m: setenv.get(m[1], m[2] or ""), text)

    def _setenv(self, env: str) -> dict[str, str]:
        found = {}
        for section in ("testenv", f"testenv:{env}"):
            for line in self.config.get(section, "setenv", fallback="").splitlines():
                name, sep, value = line.partition("=")
                if sep:
                    found[name.strip()] = value.strip()
        return found

    def markers(self, env: str) -> str | None:
        found = self._MARKERS.findall(self.value(env, "commands"))
        return found[0] if found else None

    def sglang(self, env: str) -> str | None:
        found = self._SGLANG.findall(self.value(env, "commands_pre"))
        return found[0] if found else None
