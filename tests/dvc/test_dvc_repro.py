"""DVC end to end, with real `dvc` in a temporary git repository holding a copy of the project.

One module-scoped `dvc repro` is shared by the tests below (it trains the tiny model once); each test
then checks one promise of dvc.yaml. Slow by nature: a few minutes on 2 CPU cores.

Run as the README says, `.venv/bin/dvc repro` from a shell with no venv activated: dvc is called by its
absolute path, the venv's bin directory is not on PATH, and the copy's `.venv` is the test's environment.
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
VENV = Path(sys.prefix)
VENV_BIN = Path(sys.executable).parent
DVC = str(VENV_BIN / "dvc")
# What the full reports hold, and so what `dvc metrics show` must not list (they are plain outs).
FULL_REPORTS = ("validation_summary.json", "split_report.json", "training_metrics.json", "eval_metrics.json")


def _env(repo: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CONDA_PREFIX")}
    venv_dirs = {VENV_BIN.resolve(), (repo / ".venv" / "bin").resolve()}
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and Path(p).resolve() not in venv_dirs]
    env["PATH"] = os.pathsep.join(path)
    # The package the copy's stages import is the copy's own source.
    env["PYTHONPATH"] = str(repo / "src")
    env.update(KEDRO_DISABLE_TELEMETRY="1", HF_HUB_OFFLINE="1", WANDB_MODE="offline", DVC_NO_ANALYTICS="1")
    return env


def sh(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    args = (DVC, *args[1:]) if args[0] == "dvc" else args
    proc = subprocess.run(args, cwd=repo, env=_env(repo), capture_output=True, text=True)
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
    (repo / ".venv").symlink_to(VENV, target_is_directory=True)  # what `make` builds (git-ignored)
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


def test_stages_ran_without_the_venv_on_path(repo: Path) -> None:
    assert not any((Path(p) / "kedro").exists() for p in _env(repo)["PATH"].split(os.pathsep)), (
        "a kedro on PATH would hide a stage cmd that relies on an activated venv"
    )
    for name, stage in yaml.safe_load((repo / "dvc.yaml").read_text(encoding="utf-8"))["stages"].items():
        assert stage["cmd"].startswith("bin/kedro "), name


def _report(repo: Path, name: str) -> dict:
    return json.loads((repo / "data/08_reporting" / name).read_text(encoding="utf-8"))


def test_metrics_show_lists_the_headline_numbers(repo: Path) -> None:
    table = sh(repo, "dvc", "metrics", "show").stdout
    # DVC draws one table with a column per key of every metrics file: about 1,000 characters wide on the
    # sample (7,860 when the full reports were metrics); each of these stages' own headline is narrow.
    assert max(map(len, table.splitlines())) < 1500, table
    for name in ("validation_headline.json", "split_headline.json", "training_headline.json"):
        own = sh(repo, "dvc", "metrics", "show", f"data/08_reporting/{name}").stdout
        assert max(map(len, own.splitlines())) < 300, own
    for report in FULL_REPORTS:
        assert report not in table, table
    shown = json.loads(sh(repo, "dvc", "metrics", "show", "--json").stdout)
    files = shown[""]["data"]
    metrics = {f"{path}:{key}" for path, entry in files.items() for key in entry["data"]}
    assert len(metrics) < 60, sorted(metrics)

    summary = _report(repo, "validation_summary.json")
    split = _report(repo, "split_report.json")
    training = _report(repo, "training_metrics.json")
    reporting = "data/08_reporting"
    assert files[f"{reporting}/validation_headline.json"]["data"] == {
        "pairs_in": summary["rows_read"],
        "validated": summary["rows_kept"],
        "quarantined": summary["rows_quarantined"],
        "error_rate": summary["quarantined_share"],
        "passed": True,
    }
    split_headline = files[f"{reporting}/split_headline.json"]["data"]
    assert split_headline["input_pairs"] == summary["rows_kept"]
    for part in ("train", "val", "test"):
        assert split_headline[f"{part}_pairs"] == split["totals"][part]
        assert split_headline[f"{part}_ratio"] == split["realised_ratios"][part]
    training_headline = files[f"{reporting}/training_headline.json"]["data"]
    assert training_headline["train_loss"] == training["final"]["train/loss"]
    assert training_headline["val_reward_accuracy"] == training["final"]["eval/rewards/accuracies"]
    assert training_headline["steps"] == training["run"]["global_step"] > 0

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
    rows = json.loads(sh(repo, "dvc", "exp", "show", "--json").stdout)
    revs = [*rows, *(rev for row in rows for exp in row.get("experiments") or [] for rev in exp["revs"])]
    metric_files = {
        path: entry["data"]  # commits before the first repro have no metrics files: error entries
        for rev in revs
        for path, entry in ((rev.get("data") or {}).get("metrics") or {}).items()
        if "data" in entry
    }
    assert all(path.endswith("_headline.json") for path in metric_files), sorted(metric_files)
    metric_keys = {f"{path}:{key}" for path, data in metric_files.items() for key in data}
    assert 0 < len(metric_keys) < 60, sorted(metric_keys)
