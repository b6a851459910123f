"""kill -9 in the middle of training, rerun: the same configuration continues from its latest checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import run_pipeline
from process_helpers import wait_until_locks_free
from training_fixtures import write_splits

KEDRO = str(Path(sys.executable).with_name("kedro"))
RUN = {
    "max_steps": 24,
    "logging_steps": 2,
    "save_strategy": "steps",
    "save_steps": 2,
    "eval_strategy": "no",
    "per_device_train_batch_size": 4,
    "save_total_limit": 3,
}


def _set_params(project: Path, updates: dict) -> None:
    path = project / "conf/base/parameters_training.yml"
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    params["training"].update(updates)
    path.write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")


@pytest.mark.slow
def test_rerun_after_kill_resumes_from_the_latest_checkpoint(project):
    write_splits(project, limit=120)
    _set_params(project, RUN)
    out = project / "data/06_models/dpo_model"

    # Kedro runs in a session of its own and the training guard in another: SIGKILL of Kedro's group
    # leaves the guard, which then ends the training tree (within its 10 s grace period).
    proc = subprocess.Popen(
        [KEDRO, "run", "--pipelines", "training"],
        cwd=project,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 300
        record = out.parent / ".dpo_model.checkpoints.json"
        while "checkpoint-4" not in (record.read_text(encoding="utf-8") if record.exists() else ""):
            assert proc.poll() is None, "training ended before it could be interrupted"
            assert time.time() < deadline, "no checkpoint within 300 s"
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (out / "final").exists(), "the run finished before the kill; the test proves nothing"
    # The training tree holds the run's locks until the guard has ended it; the rerun would be refused.
    wait_until_locks_free([out.parent / ".dpo_model.lock", out.parent / ".base_model.lock"])
    # The kill may land inside a save: a checkpoint counts once its file hashes are recorded (beside the
    # output dir), the last thing a save does; one without them is not resumed from.
    record = json.loads((out.parent / ".dpo_model.checkpoints.json").read_text(encoding="utf-8"))
    killed_at = max(int(name.split("-")[1]) for name in record["checkpoints"] if (out / name).is_dir())
    assert 4 <= killed_at < 24

    run_pipeline(project, "training")  # same parameters → same configuration

    metrics = json.loads((project / "data/08_reporting/training_metrics.json").read_text(encoding="utf-8"))
    resumed = metrics["run"]["resumed_from"]
    assert resumed is not None and int(resumed.split("-")[1]) >= killed_at
    assert metrics["run"]["global_step"] == 24
    # timed from the resume point on, after its own warm-up
    assert metrics["run"]["timed_steps"] == 24 - int(resumed.split("-")[1]) - 5
    assert "resuming from" in (out / "train.log").read_text(encoding="utf-8")
    assert (out / "final" / "edu_bias_training.json").exists()
    state = json.loads((out / "trainer_state.json").read_text(encoding="utf-8"))
    logged_steps = [h["step"] for h in state["log_history"] if "loss" in h]
    assert logged_steps[0] <= 2 and logged_steps[-1] == 24  # history carried over from before the kill

    # A different configuration does not resume a foreign run: it starts afresh.
    run_pipeline(project, "training", params={"training": {"max_steps": 6, "save_steps": 3}})
    metrics = json.loads((project / "data/08_reporting/training_metrics.json").read_text(encoding="utf-8"))
    assert metrics["run"]["resumed_from"] is None and metrics["run"]["global_step"] == 6
    # steady-state throughput leaves out the first 5 steps: one timed step here
    assert metrics["run"]["timed_steps"] == 1 and metrics["run"]["pairs_per_s_after_warmup"] > 0

    # The same finished configuration again: nothing is retrained, the metrics are collected again.
    mtime = (out / "final" / "edu_bias_training.json").stat().st_mtime
    run_pipeline(project, "training", params={"training": {"max_steps": 6, "save_steps": 3}})
    metrics = json.loads((project / "data/08_reporting/training_metrics.json").read_text(encoding="utf-8"))
    assert metrics["run"]["mode"].startswith("not retrained") and metrics["run"]["global_step"] == 6
    assert (out / "final" / "edu_bias_training.json").stat().st_mtime == mtime

    # A final/ written before final/ named its run (an earlier release): evaluation would refuse it, so it is
    # rewritten, from the last checkpoint (already at max_steps: no step is trained), not skipped.
    meta_file = out / "final" / "edu_bias_training.json"
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    fingerprint = meta.pop("fingerprint")
    meta.pop("global_step")
    meta_file.write_text(json.dumps(meta), encoding="utf-8")
    run_pipeline(project, "training", params={"training": {"max_steps": 6, "save_steps": 3}})
    metrics = json.loads((project / "data/08_reporting/training_metrics.json").read_text(encoding="utf-8"))
    assert not metrics["run"]["mode"].startswith("not retrained") and metrics["run"]["resumed_from"] == (
        "checkpoint-6"
    )
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    assert meta["fingerprint"] == fingerprint and meta["global_step"] == 6
