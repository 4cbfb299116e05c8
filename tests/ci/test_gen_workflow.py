"""ci/gen_workflow.py: the workflow it generates from the matrix, and its --check mode."""

from __future__ import annotations

import shutil
from pathlib import Path

import gen_workflow
import yaml
from ci_matrix import ROOT, load_matrix

MATRIX = load_matrix()
JOBS = gen_workflow.workflow(MATRIX)["jobs"]


def test_the_committed_files_are_what_the_matrix_generates(capsys):
    assert gen_workflow.main(["--check"]) == 0, capsys.readouterr().err


def test_one_job_per_cell_running_its_tox_env():
    assert list(JOBS) == [cell.id for cell in MATRIX.cells]
    for cell in MATRIX.cells:
        steps = JOBS[cell.id]["steps"]
        assert steps[0] == {"uses": gen_workflow.CHECKOUT}
        assert steps[-1]["run"] == f"bash ci/test.sh {cell.tox_env}"


def test_hosted_cells_get_python_and_the_cpu_torch_index():
    job = JOBS["cpu-0523"]
    assert job["runs-on"] == "ubuntu-latest" and "container" not in job and "if" not in job
    assert job["steps"][1] == {
        "uses": gen_workflow.SETUP_PYTHON,
        "with": {"python-version": "3.11"},
    }
    assert job["env"]["PIP_EXTRA_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"


def test_accelerator_cells_run_in_their_container_on_self_hosted_runners_off_pull_requests():
    job = JOBS["ascend"]
    assert job["runs-on"] == ["self-hosted", "linux", "arm64", "ascend-910b"]
    assert job["if"] == "github.event_name != 'pull_request'"
    assert job["container"]["image"] == "${{ vars.IMAGE_REGISTRY }}/sglang-fl:ascend-sglang0.5.21"
    assert "--device /dev/davinci0" in job["container"]["options"]
    assert "/usr/local/Ascend/driver:/usr/local/Ascend/driver:ro" in job["container"]["volumes"]
    assert len(job["steps"]) == 2  # no setup-python: the image has the stack
    assert JOBS["cuda-tp2"]["runs-on"][-1] == "nvidia-h100-x2"  # the cell's own labels


def test_actionlint_is_told_the_custom_labels_and_variables():
    config = gen_workflow.actionlint_config(MATRIX)
    assert config == {
        "self-hosted-runner": {"labels": ["ascend-910b", "nvidia-h100", "nvidia-h100-x2"]},
        "config-variables": ["IMAGE_REGISTRY"],
    }


def test_rendered_workflow_is_valid_yaml_with_the_header():
    text = gen_workflow.render(gen_workflow.workflow(MATRIX))
    assert text.startswith(gen_workflow.HEADER)
    loaded = yaml.safe_load(text)
    assert loaded["jobs"] == JOBS  # _Flow lists compare equal to plain ones
    assert loaded["on"] == {
        "push": {"branches": ["main"]},
        "pull_request": None,
        "workflow_dispatch": None,
    }


def copy_repo(tmp_path: Path) -> Path:
    for relative in (
        "ci/matrix.yml",
        "tox.ini",
        ".github/workflows/ci.yml",
        ".github/actionlint.yaml",
    ):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / relative, tmp_path / relative)
    return tmp_path


def test_check_fails_on_a_stale_workflow_and_writing_fixes_it(tmp_path, capsys):
    root = copy_repo(tmp_path)
    matrix = root / "ci" / "matrix.yml"
    matrix.write_text(matrix.read_text().replace("timeout_minutes: 90", "timeout_minutes: 45"))
    assert gen_workflow.main(["--check", "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert "-    timeout-minutes: 90\n+    timeout-minutes: 45" in err
    assert ".github/workflows/ci.yml not generated from ci/matrix.yml: run `python " in err
    assert gen_workflow.main(["--root", str(root)]) == 0
    assert gen_workflow.main(["--check", "--root", str(root)]) == 0


def test_check_fails_on_an_invalid_matrix_with_its_problems(tmp_path, capsys):
    root = copy_repo(tmp_path)
    matrix = root / "ci" / "matrix.yml"
    matrix.write_text(matrix.read_text().replace("tox_env: cuda-tp2", "tox_env: cuda-tp4"))
    assert gen_workflow.main(["--check", "--root", str(root)]) == 1
    assert "field 'tox_env': 'cuda-tp4' is not an env of tox.ini" in capsys.readouterr().err
