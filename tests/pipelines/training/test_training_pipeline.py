"""`kedro run --pipelines training` end to end: real Kedro sessions, real TRL on the tiny model (CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import read_jsonl, run_pipeline, write_jsonl
from training_fixtures import SHORT_RUN, write_splits

from edu_bias_pipeline.dpo.config import TrainingConfigError


def _metrics(project: Path) -> dict:
    return json.loads((project / "data/08_reporting/training_metrics.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"mode": "turbo"}, r"training\.mode.*'turbo'"),
        ({"learning_rate": "fast"}, r"training\.learning_rate"),
        ({"model_name_or_path": "/no/such/model"}, r"model directory not found"),
        ({"lora": {"qlora": True}}, r"QLoRA .* needs a CUDA GPU"),
    ],
)
def test_bad_configuration_fails_before_anything_is_launched(project, params, match):
    write_splits(project, limit=40)
    with pytest.raises(TrainingConfigError, match=match):
        run_pipeline(project, "training", params={"training": params})
    assert not (project / "data/06_models/dpo_model").exists()
    assert not (project / "data/06_models/base_model").exists()


@pytest.mark.slow
def test_single_mode_learns_the_sample_data(project):
    """Default tiny settings: train reward accuracy > 0.9, every output in place, legacy names logged."""
    _, val = write_splits(project)
    run_pipeline(project, "training", params={"training": {"report_to": "tensorboard"}})

    m = _metrics(project)
    assert m["final"]["train_set/rewards/accuracies"] > 0.9, m["final"]
    assert m["run"]["mode"].startswith("single") and m["run"]["device"] == "cpu"
    # steady-state throughput: the steps after the first 5, the per-epoch evaluation and checkpoint left out
    assert m["run"]["timed_steps"] == m["run"]["global_step"] - 5 and m["run"]["pairs_per_s_after_warmup"] > 0
    assert m["run"]["eval_and_save_s_left_out"] > 0
    # per-log-step history for dvc plots, under the old names too
    step = next(s for s in m["steps"] if "train/reward_accuracy" in s)
    for name in (
        "train/loss",
        "train/reward_accuracy",
        "train/reward_margin",
        "train/better_sample_reward",
        "train/worse_sample_reward",
        "train/lr",
    ):
        assert name in step, name
    assert any("eval/rewards/accuracies" in s for s in m["steps"])
    # per bias_type eval: every val category, during training and at the end
    categories = {r["bias_type"] for r in val}
    assert set(m["per_category"]) == categories
    some = sorted(categories)[0]
    assert any(f"eval/{some}/rewards/accuracies" in s for s in m["steps"])
    assert set(m["health"]["checks"]) == {
        "nan_loss",
        "loss_stuck_at_ln2",
        "reward_accuracy_at_chance",
        "rewards_both_falling",
    }

    out = project / "data/06_models/dpo_model"
    assert sorted(p.name for p in out.glob("checkpoint-*"))
    for name in ("trainer_state.json", "training_args.bin", "train.log"):
        assert (out / name).exists(), name
    assert (project / "data/06_models/base_model/config.json").exists()
    final = out / "final"
    assert (final / "model.safetensors").exists() and (final / "tokenizer.json").exists()
    contract = json.loads((final / "edu_bias_training.json").read_text(encoding="utf-8"))
    assert contract == {
        "base_model": "data/06_models/base_model",
        "is_adapter": False,
        "beta": 0.1,
        "instruction": contract["instruction"],
        "max_length": 256,
        "trust_remote_code": False,
        "reference_sha256": None,  # recorded only with precomputed reference log-probs (gpu profile)
        # the run that wrote final/ (evaluation checks trained_model.json names the same one)
        "fingerprint": m["run"]["fingerprint"],
        "global_step": m["run"]["global_step"],
    }
    trained = json.loads((out / "trained_model.json").read_text(encoding="utf-8"))
    assert trained["model_dir"] == "data/06_models/dpo_model/final"
    assert "final model written" in (out / "train.log").read_text(encoding="utf-8")

    # tensorboard shows the old scripts' names
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/reward_accuracy", "train/reward_margin", "train/lr"} <= tags, tags


@pytest.mark.slow
def test_accelerate_mode_with_lora_and_env_var_overrides(project, monkeypatch, tmp_path):
    """The old env vars override the parameters; LoRA saves an adapter."""
    from edu_bias_pipeline.dpo.tiny_model import build_tiny_model

    train, _ = write_splits(project, limit=60)
    raw = project / "data/01_raw/extra_pairs.jsonl"  # the raw input format: bias_type under meta
    write_jsonl(
        raw,
        [
            {"chosen": r["chosen"], "rejected": r["rejected"], "meta": {"bias_type": r["bias_type"]}}
            for r in train[:24]
        ],
    )
    model_dir = build_tiny_model(
        [r["chosen"] for r in train] + [r["rejected"] for r in train], tmp_path / "m"
    )
    monkeypatch.setenv("TRAIN_MODE", "accelerate")
    monkeypatch.setenv("MODEL_NAME_OR_PATH", str(model_dir))
    monkeypatch.setenv("TRAIN_DATASETS", str(raw))
    monkeypatch.setenv("OUTPUT_DIR", "data/06_models/env_dpo")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    params = {**SHORT_RUN, "mode": "single", "lora": {"enabled": True}, "report_to": "wandb"}
    run_pipeline(project, "training", params={"training": params})

    m = _metrics(project)
    assert m["run"]["mode"].startswith("accelerate") and m["run"]["global_step"] == 4
    final = project / "data/06_models/env_dpo/final"
    assert (final / "adapter_model.safetensors").exists() and (final / "adapter_config.json").exists()
    assert not (final / "model.safetensors").exists()
    contract = json.loads((final / "edu_bias_training.json").read_text(encoding="utf-8"))
    assert contract["is_adapter"] is True and contract["base_model"] == str(model_dir)
    assert not (project / "data/06_models/dpo_model/final").exists()
    assert not (project / "data/06_models/base_model").exists()  # a given model: nothing embedded is built
    trained = json.loads(
        (project / "data/06_models/dpo_model/trained_model.json").read_text(encoding="utf-8")
    )
    assert trained["model_dir"] == "data/06_models/env_dpo/final"
    trained_rows = read_jsonl(project / "data/06_models/env_dpo/.run/train.jsonl")
    assert len(trained_rows) == 24  # TRAIN_DATASETS replaced the train split
    # wandb ran offline (no key): its run directory sits in the output dir
    assert list((project / "data/06_models/env_dpo/wandb").glob("offline-run-*"))


@pytest.mark.slow
def test_deepspeed_mode_runs_zero2_in_one_cpu_process(project):
    write_splits(project, limit=60)
    run_pipeline(
        project,
        "training",
        params={"training": {**SHORT_RUN, "mode": "deepspeed", "deepspeed": {"zero_stage": 2}}},
    )
    out = project / "data/06_models/dpo_model"
    log = (out / "train.log").read_text(encoding="utf-8")
    assert "DeepSpeed ZeRO stage 2 engine" in log
    assert (out / "checkpoint-4" / "global_step4").is_dir()  # DeepSpeed's own checkpoint layout
    assert (out / "final/model.safetensors").exists()
    m = _metrics(project)
    assert m["run"]["mode"].startswith("deepspeed") and m["run"]["global_step"] == 4
    ds = json.loads((out / ".run/deepspeed_config.json").read_text(encoding="utf-8"))
    assert ds["zero_optimization"]["stage"] == 2 and "optimizer" not in ds
