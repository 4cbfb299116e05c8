"""ci/matrix.yml: the committed matrix is valid, and each kind of bad entry fails with one
message naming the entry, the field and what is accepted."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from ci_matrix import MATRIX, TOX_INI, MatrixError, Tox, load_matrix, validate

DATA = yaml.safe_load(MATRIX.read_text(encoding="utf-8"))
TOX = Tox(TOX_INI)


def cell_index(cell_id: str) -> int:
    return next(i for i, cell in enumerate(DATA["cells"]) if cell["id"] == cell_id)


def problems_after(change) -> list[str]:
    data = copy.deepcopy(DATA)
    change(data)
    with pytest.raises(MatrixError) as caught:
        validate(data, TOX)
    assert str(caught.value).startswith("ci/matrix.yml: ")
    return caught.value.problems


def set_cell(cell_id: str, **fields):
    def change(data):
        data["cells"][cell_index(cell_id)].update(fields)

    return change


def test_the_committed_matrix_is_valid():
    matrix = load_matrix()
    ids = [cell.id for cell in matrix.cells]
    assert ids[:9] == ["lint", "unit", "ascend-contract", "cpu-0515", "cpu-0521", "cpu-0522",
                       "cpu-0523", "contract-0521", "contract-0522"]  # fmt: skip
    assert {"cuda", "cuda-tp2", "ascend"} <= set(ids)
    for cell in matrix.cells:
        labels = matrix.runner_of(cell)
        if matrix.platforms[cell.platform].accelerator:
            assert labels[0] == "self-hosted" and not cell.pull_requests, cell.id
        else:
            assert labels == ["ubuntu-latest"], cell.id


def test_tox_values_are_resolved_through_substitutions():
    assert (
        TOX.markers("unit") == "not sglang and not cuda and not npu and not multigpu and not docker"
    )
    assert TOX.sglang("cpu-0515") == "0.5.15" and TOX.sglang("cuda") == "0.5.15"
    assert TOX.sglang("contract-0522") == "0.5.22"
    assert TOX.markers("contract-0521") == "platform_contract"  # through [sglang_env]
    assert TOX.markers("cpu-0523") == "not cuda and not npu and not multigpu and not docker"
    assert TOX.markers("lint") is None and TOX.sglang("unit") is None
    assert TOX.envlist == [
        "lint",
        "unit",
        "ascend-contract",
        "cpu-0515",
        "cpu-0523",
        "contract-0521",
        "contract-0522",
        "docker-cpu",
        "nvidia-image",
        "ascend-image",
    ]


CUDA = f"cells[{cell_index('cuda')}] (id 'cuda')"
LINT = f"cells[{cell_index('lint')}] (id 'lint')"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (set_cell("cuda", gpus=1), f"{CUDA}: field 'gpus': Extra inputs are not permitted (got 1)"),
        (
            set_cell("lint", runner="ubuntu-latest"),
            f"{LINT}: field 'runner': Input should be a valid list (got 'ubuntu-latest')",
        ),
        (
            set_cell("cuda", sglang=0.5),
            f"{CUDA}: field 'sglang': Input should be a valid string (got 0.5)",
        ),
        (
            set_cell("cuda", id="CUDA"),
            f"cells[{cell_index('cuda')}] (id 'CUDA'): field 'id': String should match pattern "
            "'^[a-z][a-z0-9-]*$' (got 'CUDA')",
        ),
        (
            set_cell("cuda", timeout_minutes=0),
            f"{CUDA}: field 'timeout_minutes': Input should be greater than or equal to 1 (got 0)",
        ),
        (
            lambda d: d["cells"][cell_index("cuda")].pop("tox_env"),
            f"{CUDA}: field 'tox_env': Field required",
        ),
        (
            lambda d: d["platforms"]["nvidia"].update(accelerator="yes"),
            "platforms.nvidia: field 'accelerator': Input should be a valid boolean (got 'yes')",
        ),
        (lambda d: d.pop("cells"), "field 'cells': Field required"),
    ],
    ids=[
        "unknown-field",
        "runner-not-a-list",
        "version-not-a-string",
        "bad-id",
        "timeout",
        "missing-tox-env",
        "platform-field",
        "no-cells",
    ],
)
def test_schema_errors_name_the_entry_and_field(change, expected):
    assert problems_after(change) == [expected]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            set_cell("cuda", platform="tpu"),
            f"{CUDA}: field 'platform': 'tpu' is not one of the platforms (ascend, cpu, nvidia)",
        ),
        (
            set_cell("cuda", sglang="0.5.99"),
            f"{CUDA}: field 'sglang': '0.5.99' is not a supported version "
            "(0.5.15, 0.5.21, 0.5.22, 0.5.23)",
        ),
        (
            set_cell("cuda", runner=["ubuntu-latest"]),
            f"{CUDA}: field 'runner': ['ubuntu-latest'] cannot reach an accelerator: an "
            "accelerator cell runs on [self-hosted, ..., <hardware label>]",
        ),
        (
            set_cell("cuda", runner=["self-hosted", "linux", "x64"]),
            f"{CUDA}: field 'runner': ['self-hosted', 'linux', 'x64'] cannot reach an accelerator",
        ),
        (
            set_cell("cuda", pull_requests=True),
            f"{CUDA}: field 'pull_requests': must be false for a cell on self-hosted runners",
        ),
        (
            set_cell("cuda", tox_env="gpu"),
            f"{CUDA}: field 'tox_env': 'gpu' is not an env of tox.ini (",
        ),
        (
            set_cell("cuda", markers="cuda"),
            f"{CUDA}: field 'markers': 'cuda', but tox env 'cuda' selects 'cuda and not multigpu'",
        ),
        (
            set_cell("cpu-0523", sglang="0.5.15"),
            f"cells[{cell_index('cpu-0523')}] (id 'cpu-0523'): field 'sglang': '0.5.15', but tox "
            "env 'cpu-0523' installs or checks '0.5.23'",
        ),
        (
            set_cell("ascend", id="cuda"),
            f"cells[{cell_index('ascend')}] (id 'cuda'): field 'id': 'cuda' is used by an earlier "
            "cell",
        ),
        (
            lambda d: d["cells"].pop(cell_index("unit")),
            "cells: tox env 'unit' is in tox.ini's default envlist (what ci/test.sh runs) but no "
            "cell runs it",
        ),
        (
            set_cell("lint", platform="nvidia", pull_requests=False),
            f"{LINT}: field 'sglang': required: platform 'nvidia''s image",
        ),
    ],
    ids=[
        "unknown-platform",
        "unsupported-sglang",
        "hosted-accelerator",
        "no-hardware-label",
        "accelerator-on-pull-requests",
        "unknown-tox-env",
        "markers-drift",
        "sglang-drift",
        "duplicate-id",
        "envlist-not-covered",
        "image-needs-a-version",
    ],
)
def test_consistency_errors_name_the_entry_and_field(change, expected):
    problems = problems_after(change)
    assert any(p.startswith(expected) for p in problems), problems


def test_every_problem_is_reported_at_once():
    def two_bad_cells(data):
        data["cells"][cell_index("cuda")]["sglang"] = "0.4.0"
        data["cells"][cell_index("ascend")]["platform"] = "tpu"

    problems = problems_after(two_bad_cells)
    assert any(p.startswith(CUDA) for p in problems)
    assert any(p.startswith(f"cells[{cell_index('ascend')}] (id 'ascend')") for p in problems)


def test_file_level_errors(tmp_path: Path):
    bad = tmp_path / "matrix.yml"
    bad.write_text("cells: [\n", encoding="utf-8")
    with pytest.raises(MatrixError, match=r"^ci/matrix.yml: not valid YAML: "):
        load_matrix(bad, TOX_INI)
    bad.write_text("- a list\n", encoding="utf-8")
    with pytest.raises(MatrixError, match="the top level must be a mapping, got list"):
        load_matrix(bad, TOX_INI)
