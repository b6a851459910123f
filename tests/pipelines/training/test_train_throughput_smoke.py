"""Smoke test of benchmarks/train_throughput.py: the stage's own training path, timed, tiny CPU model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
