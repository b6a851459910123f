"""Smoke test of benchmarks/train_throughput.py: the stage's own training path, timed, tiny CPU model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from training_fixtures import free_port

ROOT = Path(__file__).resolve().parents[3]


def test_train_throughput_tiny_run_prints_one_result(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks/train_throughput.py"),
            "--tiny",
            "--steps",
            "2",
            "--warm",
            "1",
            "--batch",
            "8",
            "--logging-steps",
            "1",
            "--model-cache",
            str(tmp_path / "models"),
            "--tag",
            "smoke",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "OUT": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, proc.stdout[-2000:]
    result = json.loads(lines[0][len("RESULT ") :])
    assert result["tag"] == "smoke" and result["profile"] == "gpu" and result["precision"] == "fp32"
    assert result["steps"] == 2 and result["batch"] == 8 and result["precompute"] is True
    assert result["pairs_per_gpu_step"] == 8 and result["gather_step_metrics"] is False
    assert result["sampling"] == "group_by_length"
    assert result["pairs_per_s"] > 0 and result["tokens_per_s"] > 0 and result["mfu"] >= 0
    # the loss curve of every step, starting at ln 2 (policy == reference at step 1)
    assert [step for step, _ in result["loss_curve"]] == [1, 2, 3]
    assert abs(result["loss_curve"][0][1] - 0.6931) < 1e-3
    assert json.loads((tmp_path / "project.jsonl").read_text().splitlines()[-1]) == result


@pytest.mark.slow
def test_zero_hook_time_clocks_the_gradient_hooks_of_a_zero2_run(tmp_path):
    """benchmarks/zero_hook_time.py around a one-process ZeRO-2 run: one hook call per parameter tensor and
    step, and the step's reduction and optimizer step, each printed with its host time."""
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "--master_port", free_port()]
        + [str(ROOT / "benchmarks/zero_hook_time.py"), str(ROOT / "benchmarks/train_throughput.py")]
        + ["--tiny", "--steps", "2", "--warm", "1", "--batch", "2", "--zero", "2"]
        + ["--model-cache", str(tmp_path / "models"), "--tag", "hooks"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={**os.environ, "OUT": str(tmp_path), "CUDA_VISIBLE_DEVICES": ""},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "project.jsonl").read_text().splitlines()[-1])
    assert result["tag"] == "hooks" and result["zero"] == 2
    timed = {
        line.split()[1].rstrip(":"): int(line.split()[2])
        for line in proc.stderr.splitlines()
        if line.startswith("ZERO_HOST_TIME ")
    }
    assert set(timed) == {"process_gradients", "reduce_ipg_grads", "step"}, proc.stderr[-2000:]
    steps = timed["step"]
    assert steps >= 3  # warm-up and timed steps
    assert timed["process_gradients"] > 0 and timed["process_gradients"] % steps == 0
