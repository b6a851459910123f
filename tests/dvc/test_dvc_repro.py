"""DVC end to end, with real `dvc` in a temporary git repository holding a copy of the project.

One module-scoped `dvc repro` is shared by the tests below (it trains the tiny model once); each test
then checks one promise of dvc.yaml. Slow by nature: a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow

STAGES = ("data_validation", "data_splitting", "training", "evaluation")
VENV_BIN = Path(sys.executable).parent


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(KEDRO_DISABLE_TELEMETRY="1", HF_HUB_OFFLINE="1", WANDB_MODE="offline", DVC_NO_ANALYTICS="1")
    return env


def sh(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, cwd=repo, env=_env(), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def ran_stages(output: str) -> set[str]:
    return {stage for stage in STAGES if f"Running stage '{stage}'" in output}


def _copy_project(dest: Path) -> None:
    """What a fresh clone holds: the files git tracks (plus new, not-ignored ones in a dev checkout)."""
    git_ls = ["git", "ls-files", "-co", "--exclude-standard", "-z"]
    listed = subprocess.run(git_ls, cwd=PROJECT_ROOT, capture_output=True, check=True).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        src = PROJECT_ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dvc")
    repo = root / "project"
    repo.mkdir()
    _copy_project(repo)
    sh(repo, "git", "init", "-q")
    sh(repo, "git", "config", "user.email", "ci@example.invalid")
    sh(repo, "git", "config", "user.name", "CI")
    sh(repo, "dvc", "remote", "modify", "--local", "local", "url", str(root / "remote"))
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "project copy")
    first = sh(repo, "dvc", "repro")
    assert ran_stages(first.stdout) == set(STAGES), first.stdout
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "first repro")
    return repo


def test_repro_builds_every_output_and_status_is_clean(repo: Path) -> None:
    for rel in (
        "data/02_intermediate/validated_pairs.jsonl",
        "data/08_reporting/data_docs/index.html",
        "data/05_model_input/test.jsonl",
        "data/06_models/dpo_model/final/edu_bias_training.json",
        "data/08_reporting/eval_metrics.json",
    ):
        assert (repo / rel).exists(), rel
    status = sh(repo, "dvc", "status")
    assert "up to date" in status.stdout, status.stdout
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert set(lock["stages"]) == set(STAGES)


def test_second_repro_runs_nothing(repo: Path) -> None:
    again = sh(repo, "dvc", "repro")
    assert ran_stages(again.stdout) == set(), again.stdout


def test_metrics_show_lists_per_category_accuracy(repo: Path) -> None:
    shown = json.loads(sh(repo, "dvc", "metrics", "show", "--json").stdout)
    flat = json.dumps(shown)
    assert "reward_accuracy/overall" in flat
    test_categories = {
        json.loads(line)["bias_type"]
        for line in (repo / "data/05_model_input/test.jsonl").read_text(encoding="utf-8").splitlines()
    }
    for category in test_categories:
        assert f"reward_accuracy/{category}" in flat, category


def test_plots_show_writes_html(repo: Path, tmp_path: Path) -> None:
    sh(repo, "dvc", "plots", "show", "-o", str(tmp_path / "plots"))
    html = (tmp_path / "plots" / "index.html").read_text(encoding="utf-8")
    for plot_id in ("training_loss", "training_rewards", "eval_reward_accuracy_per_category"):
        assert plot_id in html, plot_id


def test_push_then_pull_restores_outputs(repo: Path) -> None:
    sh(repo, "dvc", "push")
    shutil.rmtree(repo / ".dvc" / "cache")
    for rel in ("data/02_intermediate/validated_pairs.jsonl", "data/05_model_input/train.jsonl"):
        (repo / rel).unlink()
    shutil.rmtree(repo / "data/06_models/dpo_model")
    sh(repo, "dvc", "pull")
    assert (repo / "data/06_models/dpo_model/final/edu_bias_training.json").exists()
    status = sh(repo, "dvc", "status")
    assert "up to date" in status.stdout, status.stdout


def test_param_change_reruns_that_stage_and_downstream_only(repo: Path) -> None:
    params = repo / "conf/base/parameters_data_splitting.yml"
    text = params.read_text(encoding="utf-8")
    cfg = yaml.safe_load(text)
    seed = cfg["data_splitting"]["seed"]
    params.write_text(text.replace(f"seed: {seed}", f"seed: {seed + 1}", 1), encoding="utf-8")
    try:
        rerun = sh(repo, "dvc", "repro")
        assert ran_stages(rerun.stdout) == {"data_splitting", "training", "evaluation"}, rerun.stdout
    finally:
        params.write_text(text, encoding="utf-8")
    sh(repo, "dvc", "repro")  # back to the committed state for the tests after this one
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "after param round trip", check=False)


def test_experiment_run_and_show(repo: Path) -> None:
    sh(
        repo,
        "dvc",
        "exp",
        "run",
        "-n",
        "one-epoch",
        "-S",
        "conf/base/parameters_training.yml:training.num_train_epochs=1",
    )
    shown = sh(repo, "dvc", "exp", "show", "--csv").stdout
    header = shown.splitlines()[0]
    assert "reward_accuracy/overall" in header, header
    assert "one-epoch" in shown
