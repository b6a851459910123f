"""Runs of the launched training process on the tiny model on CPU, for the tests of the `gpu` environment's
training path: in this process (`run_in_process`), or under torchrun as the node launches it
(`torchrun_entry`, `deepspeed_run`). A test module imports `tiny_run_inputs_fixture` to use the
`tiny_run_inputs` fixture."""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import training_parameters, write_jsonl
from training_fixtures import free_port, sample_rows

from edu_bias_pipeline.dpo.config import resolve_training_config
from edu_bias_pipeline.dpo.contract import RuntimeSpec
from edu_bias_pipeline.dpo.entry import run

REWARD_KEYS = ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies")


@pytest.fixture(scope="module", name="tiny_run_inputs")
def tiny_run_inputs_fixture(tmp_path_factory) -> Path:
    """Train/val files of the sample pairs and a tiny model built from their texts, once per test module."""
    from edu_bias_pipeline.dpo.tiny_model import build_tiny_model

    rows = sample_rows()
    random.Random(0).shuffle(rows)
    root = tmp_path_factory.mktemp("gpu_profile")
    write_jsonl(root / "val.jsonl", rows[:40])
    write_jsonl(root / "train.jsonl", rows[40:160])
    build_tiny_model([r["chosen"] for r in rows] + [r["rejected"] for r in rows], root / "model")
    return root


def gpu_params(params: dict) -> dict:
    """`--env gpu --params training.<params>`: conf/gpu's training block with these keys merged in."""
    return training_parameters("gpu", {"training": params})


def run_in_process(
    root: Path, name: str, precision: str = "fp32", callbacks=(), env: str | None = "gpu", **overrides
) -> dict:
    params = {
        "output_dir": str(root / name),
        "max_steps": 6,
        "logging_steps": 1,
        "eval_strategy": "steps",
        "eval_steps": 3,  # per-category eval during training, after the policy has moved
        "save_strategy": "no",
        "learning_rate": 2e-3,
        "per_device_train_batch_size": 8,
        "per_device_eval_batch_size": 16,
        "train_sampling_strategy": "random",
        "dataloader_num_workers": 0,
        "reference_cache_dir": str(root / name / "reference_cache"),
        **overrides,
    }
    config = resolve_training_config(gpu_params(params) if env == "gpu" else params, {})
    runtime = RuntimeSpec(
        model_path=str(root / "model"),
        base_model_id=str(root / "model"),
        train_file=str(root / "train.jsonl"),
        val_file=str(root / "val.jsonl"),
        run_dir=str(root / name / ".run"),
        precision=precision,
        use_cpu=True,
    )
    root_logger = logging.getLogger()
    before = list(root_logger.handlers)
    try:
        return run(config, runtime, extra_callbacks=tuple(callbacks))
    finally:
        for handler in root_logger.handlers[len(before) :]:
            root_logger.removeHandler(handler)
            handler.close()


def assert_close(a: dict, b: dict, keys=REWARD_KEYS, tol: float = 1e-4) -> None:
    for key in keys:
        assert a[key] == pytest.approx(b[key], abs=tol), key


def torchrun_entry(inputs: Path, tmp_path: Path, nproc: int, params: dict, **runtime) -> tuple:
    """`python -m torch.distributed.run … -m edu_bias_pipeline.dpo.entry RUN.json` on CPU, as the node
    would launch it; returns the finished process and the run's output dir."""
    out = Path(params["output_dir"])
    spec = {
        "config": resolve_training_config(params, {}).model_dump(mode="json"),
        "runtime": {
            "model_path": str(inputs / "model"),
            "base_model_id": str(inputs / "model"),
            "train_file": str(inputs / "train.jsonl"),
            "val_file": str(inputs / "val.jsonl"),
            "run_dir": str(out / ".run"),
            "precision": "fp32",
            "use_cpu": True,
            **runtime,
        },
    }
    spec_file = tmp_path / "run.json"
    spec_file.write_text(json.dumps(spec), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc)]
        + ["--master_port", free_port(), "-m", "edu_bias_pipeline.dpo.entry", str(spec_file)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, out


def deepspeed_run(
    inputs: Path, tmp_path: Path, stage: int, precision: str, nproc: int = 1, **params
) -> tuple:
    """One step of the gpu profile under DeepSpeed ZeRO-`stage`: one process (or `nproc`), DeepSpeed's CPU
    accelerator."""
    from edu_bias_pipeline.dpo.launch import deepspeed_config

    params = {
        "mode": "deepspeed",
        "output_dir": str(tmp_path / f"zero{stage}"),
        "max_steps": 1,
        "eval_strategy": "no",
        "save_strategy": "no",
        "per_device_train_batch_size": 8,
        "train_sampling_strategy": "random",
        "dataloader_num_workers": 0,
        "reference_cache_dir": str(tmp_path / "reference_cache"),
        "deepspeed": {"zero_stage": stage},
        **params,
    }
    params = gpu_params(params)
    ds_file = tmp_path / f"zero{stage}.json"
    ds_file.write_text(
        json.dumps(deepspeed_config(resolve_training_config(params, {}), precision)), encoding="utf-8"
    )
    return torchrun_entry(
        inputs,
        tmp_path,
        nproc,
        params,
        val_file=str(tmp_path / "no_val.jsonl"),
        precision=precision,
        deepspeed_config=str(ds_file),
    )
