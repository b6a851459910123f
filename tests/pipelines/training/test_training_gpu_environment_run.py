"""`kedro run --env gpu` without CUDA: the gpu environment's training path end to end, in fp32."""

from __future__ import annotations

import json
import re

from conftest import run_pipeline
from training_fixtures import SHORT_RUN, write_splits


def test_gpu_profile_trains_end_to_end_on_cpu(project, capfd):
    """`kedro run --env gpu` without CUDA: fp32 (logged), precomputed reference, length-grouped batches."""
    write_splits(project, limit=60)
    # conf/base's tiny-model rate and eval batch, which conf/gpu's block replaces, so the tiny model moves
    tiny = {"learning_rate": 2e-3, "per_device_eval_batch_size": 16, "max_length": 256}
    run_pipeline(project, "training", env="gpu", params={"training": {**SHORT_RUN, **tiny}})

    # the Kedro log (its handlers write to the console); rich wraps the lines and puts `nodes.py:NNN` in them
    shown = " ".join(re.sub(r"\S+\.py:\d+", " ", "".join(capfd.readouterr())).split())
    assert (
        "GPU settings (probe_batch_size, sdpa_backends, liger_kernels) without a CUDA device: "
        "training in fp32 on CPU" in shown
    )
    out = project / "data/06_models/dpo_model"
    log = (out / "train.log").read_text(encoding="utf-8")
    assert "precompute_ref_log_probs=True, sampling=group_by_length, attention=sdpa" in log
    assert "precision=fp32" in log
    assert (out / "final/model.safetensors").exists() and (out / "checkpoint-4").is_dir()
    m = json.loads((project / "data/08_reporting/training_metrics.json").read_text(encoding="utf-8"))
    assert m["run"]["global_step"] == 4 and m["run"]["precision"] == "fp32"
    assert m["per_category"] and all("rewards/accuracies" in v for v in m["per_category"].values())
    assert any(k.startswith("eval/") and k.count("/") >= 2 for s in m["steps"] for k in s)  # per-category
