"""bin/kedro, the command dvc.yaml's stages run: it finds the project's interpreter whether or not a venv
is activated, and says what to do when there is none.

Real subprocesses with a PATH that holds no Python at all (only the tools the script needs), so a venv on
the test runner's PATH cannot make these pass.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT, make_project_copy

VENV = Path(sys.prefix)  # the environment the project is installed in (the test runner's)
STAGES = {"data_validation", "data_splitting", "training", "evaluation"}


@pytest.fixture
def bare_path(tmp_path: Path) -> str:
    """A PATH with the few programs bin/kedro calls and no python, like a shell with no venv activated
    on a machine whose system Python lacks the project."""
    bin_dir = tmp_path / "bare-bin"
    bin_dir.mkdir()
    for tool in ("dirname", "sh"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


def project_with_launcher(dest: Path) -> Path:
    make_project_copy(dest)
    (dest / "bin").mkdir()
    shutil.copy2(PROJECT_ROOT / "bin" / "kedro", dest / "bin" / "kedro")
    return dest


def launch(cwd: Path, path: str, launcher: Path | None = None, **extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CONDA_PREFIX", "EDU_BIAS_PYTHON")}
    env.update(PATH=path, KEDRO_DISABLE_TELEMETRY="1", **extra)
    cmd = [str(launcher or cwd / "bin" / "kedro"), "registry", "list"]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def listed_pipelines(proc: subprocess.CompletedProcess) -> set[str]:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {line[2:].strip() for line in proc.stdout.splitlines() if line.startswith("- ")}


def test_dvc_yaml_stages_call_the_launcher() -> None:
    import yaml

    stages = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    assert set(stages) == STAGES
    for name, stage in stages.items():
        assert stage["cmd"] == f"bin/kedro run --pipelines {name}", name
    assert os.access(PROJECT_ROOT / "bin" / "kedro", os.X_OK), "bin/kedro must be executable (git mode 755)"


def test_project_venv_is_used_without_activation(tmp_path: Path, bare_path: str) -> None:
    project = project_with_launcher(tmp_path / "project")
    (project / ".venv").symlink_to(VENV, target_is_directory=True)  # what `make` builds
    assert STAGES <= listed_pipelines(launch(project, bare_path))


def test_environment_on_path_is_used_without_a_project_venv(tmp_path: Path, bare_path: str) -> None:
    """A user who installed the project into an environment of their own and activated it."""
    project = project_with_launcher(tmp_path / "project")
    assert STAGES <= listed_pipelines(launch(project, f"{VENV / 'bin'}{os.pathsep}{bare_path}"))


def test_explicit_interpreter(tmp_path: Path, bare_path: str) -> None:
    project = project_with_launcher(tmp_path / "project")
    python = str(VENV / "bin" / "python")
    assert STAGES <= listed_pipelines(launch(project, bare_path, EDU_BIAS_PYTHON=python))

    broken = launch(project, bare_path, EDU_BIAS_PYTHON="/nonexistent/python")
    assert broken.returncode != 0
    assert "EDU_BIAS_PYTHON=/nonexistent/python cannot import kedro" in broken.stderr


def test_dvc_temp_experiment_workspace_uses_the_repositorys_venv(tmp_path: Path, bare_path: str) -> None:
    """`dvc exp run --temp` runs the stage in <repo>/.dvc/tmp/exps/<name>/, which has no .venv of its own."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / ".venv").symlink_to(VENV, target_is_directory=True)
    workspace = project_with_launcher(repo / ".dvc" / "tmp" / "exps" / "tmpabc123")
    assert STAGES <= listed_pipelines(launch(workspace, bare_path))


def test_no_interpreter_says_what_to_do(tmp_path: Path, bare_path: str) -> None:
    project = project_with_launcher(tmp_path / "project")
    proc = launch(project, bare_path)
    assert proc.returncode == 127
    for hint in ("make venv", "activate the environment", "EDU_BIAS_PYTHON=", "dvc checkout"):
        assert hint in proc.stderr, (hint, proc.stderr)
