"""One trainer per output dir, none outliving Kedro; resume never trains past max_steps nor loads a changed
checkpoint; outputs get the user's umask; bad device and remote-code settings are named."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import run_pipeline
from process_helpers import alive
from safetensors.torch import load_file
from training_fixtures import SHORT_RUN, write_splits

from edu_bias_pipeline.dpo.checkpoint_trust import UntrustedCheckpointError
from edu_bias_pipeline.dpo.guard import descendants
from edu_bias_pipeline.pipelines.training.nodes import resolve_config

KEDRO = str(Path(sys.executable).with_name("kedro"))
OUT = "data/06_models/dpo_model"


def _metrics(project: Path) -> dict:
    return json.loads((project / "data/08_reporting/training_metrics.json").read_text(encoding="utf-8"))


def _set_params(project: Path, updates: dict) -> None:
    path = project / "conf/base/parameters_training.yml"
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    params["training"].update(updates)
    path.write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")


class _Payload:
    """Unpickling this creates `path`: the stand-in for code a planted checkpoint file runs."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _plant(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"module": _Payload(marker)}, path)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_second_run_is_refused_and_stopping_kedro_ends_the_trainer(project, stop):
    """SIGKILL: Kedro cannot pass anything on. SIGINT (Ctrl-C): Kedro stops the tree, then exits."""
    write_splits(project, limit=60)
    # Long enough that only the kill ends it, and quiet: no log line or progress bar is written to the pipe
    # Kedro read, so a trainer left behind would not stop at its next write either.
    _set_params(
        project,
        {
            **SHORT_RUN,
            "max_steps": 100000,
            "logging_steps": 100000,
            "save_strategy": "no",
            "eval_strategy": "no",
            "extra_training_args": {"logging_first_step": False, "disable_tqdm": True},
        },
    )
    out = project / OUT
    kedro = subprocess.Popen(
        [KEDRO, "run", "--pipelines", "training"],
        cwd=project,
        start_new_session=True,  # lets the test clean up whatever happens
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    tree: list[int] = []
    try:
        deadline = time.time() + 300
        log = out / "train.log"
        while "throughput settings" not in (log.read_text(encoding="utf-8") if log.exists() else ""):
            assert kedro.poll() is None, "training ended before the test could act"
            assert time.time() < deadline, "the training process did not start within 300 s"
            time.sleep(0.2)

        if stop == signal.SIGKILL:
            # A second run into the same output dir fails at once, naming the dir and the holder. (A time
            # limit, not a timing assertion: without the lock it would train 100000 steps beside the first.)
            second = subprocess.run(
                [KEDRO, "run", "--pipelines", "training"],
                cwd=project,
                capture_output=True,
                text=True,
                timeout=600,
                start_new_session=True,
            )
            assert second.returncode != 0
            said = " ".join((second.stdout + second.stderr).split())  # rich wraps long lines
            assert f"{OUT} is in use by another training run (pid {kedro.pid}," in said, said[-3000:]

        tree = descendants(kedro.pid)
        trainers = [
            p for p in tree if b"edu_bias_pipeline.dpo.entry" in Path(f"/proc/{p}/cmdline").read_bytes()
        ]
        assert trainers, "no training process found under Kedro"
        os.kill(kedro.pid, stop)  # Kedro alone
        kedro.wait(timeout=120)
        deadline = time.time() + 60  # the guard's grace period is 10 s
        while any(alive(p) for p in tree) and time.time() < deadline:
            time.sleep(0.2)
        assert [p for p in tree if alive(p)] == [], "training processes outlived the Kedro process"
    finally:
        for pid in [kedro.pid, *tree]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        kedro.wait()
    assert not (out / "final").exists()
    # and the lock went with them
    with open(project / "data/06_models/.dpo_model.lock", "r+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _tensors(path: Path) -> dict:
    return load_file(str(path))


@pytest.mark.slow
def test_resume_at_max_steps_trains_nothing_and_a_changed_checkpoint_is_refused(project):
    write_splits(project, limit=40)
    params = {"training": {**SHORT_RUN, "eval_strategy": "no"}}
    out = project / OUT
    old_umask = os.umask(0o022)
    try:
        run_pipeline(project, "training", params=params)
    finally:
        os.umask(old_umask)
    assert _metrics(project)["run"]["global_step"] == 4

    # Every output carries the umask's modes (save_pretrained writes 0600 weights, mkdtemp 0700 dirs).
    models = project / "data/06_models"
    assert (out / "final/model.safetensors").exists() and (models / "base_model/model.safetensors").exists()
    for path in models.rglob("*"):
        mode = path.stat().st_mode & 0o777
        assert mode == (0o755 if path.is_dir() else 0o644), f"{path}: {oct(mode)}"

    # final/ gone, checkpoint-4 (= max_steps) kept: the rerun resumes and trains no further step.
    checkpoint = _tensors(out / "checkpoint-4/model.safetensors")
    shutil.rmtree(out / "final")
    run_pipeline(project, "training", params=params)
    m = _metrics(project)
    assert m["run"]["resumed_from"] == "checkpoint-4" and m["run"]["global_step"] == 4
    state = json.loads((out / "trainer_state.json").read_text(encoding="utf-8"))
    assert state["global_step"] == 4 and max(h["step"] for h in state["log_history"]) == 4
    assert not (out / "checkpoint-5").exists()
    final = _tensors(out / "final/model.safetensors")
    assert final.keys() == checkpoint.keys()
    assert all(torch.equal(final[k], checkpoint[k]) for k in final)  # final/ is the checkpoint's model
    assert "no further steps" in (out / "train.log").read_text(encoding="utf-8")

    # A changed file, a planted file, a missing record: refused before anything is launched or loaded.
    marker = project / "payload-ran"
    rng = out / "checkpoint-4/rng_state.pth"
    original = rng.read_bytes()
    shutil.rmtree(out / "final")
    _plant(rng, marker)
    with pytest.raises(UntrustedCheckpointError, match=r"checkpoint-4.*changed: rng_state\.pth"):
        run_pipeline(project, "training", params=params)
    rng.write_bytes(original)
    _plant(out / "checkpoint-4/global_step4/mp_rank_00_model_states.pt", marker)
    with pytest.raises(
        UntrustedCheckpointError, match=r"not written by training: global_step4/mp_rank_00_model_states\.pt"
    ):
        run_pipeline(project, "training", params=params)
    shutil.rmtree(out / "checkpoint-4/global_step4")
    (project / "data/06_models/.dpo_model.checkpoints.json").unlink()
    with pytest.raises(UntrustedCheckpointError, match=r"has no hashes for it.*training\.resume: false"):
        run_pipeline(project, "training", params=params)
    assert not marker.exists() and not (out / "final").exists()
    assert (out / "checkpoint-4").is_dir()  # refused, not deleted: the user decides


@pytest.mark.slow
def test_a_planted_deepspeed_checkpoint_file_is_not_unpickled_on_resume(project):
    """DeepSpeed's engine loads global_step*/*.pt with torch.load(weights_only=False)."""
    write_splits(project, limit=40)
    params = {"training": {**SHORT_RUN, "eval_strategy": "no", "mode": "deepspeed"}}
    out = project / OUT
    run_pipeline(project, "training", params=params)
    states = out / "checkpoint-4/global_step4/mp_rank_00_model_states.pt"
    assert states.exists()
    shutil.rmtree(out / "final")  # makes the rerun resume from checkpoint-4
    marker = project / "payload-ran"
    _plant(states, marker)
    with pytest.raises(UntrustedCheckpointError, match=r"changed: global_step4/mp_rank_00_model_states\.pt"):
        run_pipeline(project, "training", params=params)
    assert not marker.exists(), "the planted pickle ran"


def test_device_cuda_without_a_gpu_fails_in_one_line_before_launch(project):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is available")
    write_splits(project, limit=40)
    done = subprocess.run(
        [KEDRO, "run", "--pipelines", "training", "--params", "training.device=cuda"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1
    assert "Traceback" not in output and "╭─" not in output  # no Python or rich traceback
    last = output.strip().splitlines()[-1]
    assert last.startswith("Error: training.device is 'cuda' but no CUDA device is available: "), last
    assert "Set training.device: auto (or cpu)" in last
    assert not (project / OUT).exists()


def test_trust_remote_code_is_warned_about_naming_the_model(caplog):
    with caplog.at_level(logging.WARNING):
        resolve_config({"trust_remote_code": True})
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("trust_remote_code is true" in w and "embedded-tiny-qwen2" in w for w in warned), warned
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        resolve_config({})
    assert not any("trust_remote_code" in r.getMessage() for r in caplog.records)
