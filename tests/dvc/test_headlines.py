"""The headline files DVC lists as metrics: the few numbers runs are compared by, equal to the full reports'.

The end-to-end `dvc metrics show` check is in test_dvc_repro.py (slow); these run the real data stages.
"""

from __future__ import annotations

import json
from pathlib import Path

from edu_bias_pipeline.pipelines.training.headline import training_headline
from tests.conftest import run_pipeline

REPORTING = Path("data/08_reporting")


def _read(project: Path, name: str) -> dict:
    return json.loads((project / REPORTING / name).read_text(encoding="utf-8"))


def test_validation_and_split_headlines_match_their_reports(project: Path) -> None:
    run_pipeline(project, ["data_validation", "data_splitting"])
    summary = _read(project, "validation_summary.json")
    assert _read(project, "validation_headline.json") == {
        "pairs_in": summary["rows_read"],
        "validated": summary["rows_kept"],
        "quarantined": summary["rows_quarantined"],
        "error_rate": summary["quarantined_share"],
        "passed": summary["passed"],
    }
    assert summary["rows_read"] > 0 and summary["passed"] is True

    report = _read(project, "split_report.json")
    headline = _read(project, "split_headline.json")
    assert headline["input_pairs"] == summary["rows_kept"]
    assert sum(headline[f"{part}_pairs"] for part in ("train", "val", "test")) == summary["rows_kept"]
    for part in ("train", "val", "test"):
        assert headline[f"{part}_pairs"] == report["totals"][part]
        assert headline[f"{part}_ratio"] == report["realised_ratios"][part]
    assert len(headline) == 7


def _metrics(final: dict) -> dict:
    return {
        "final": final,
        "run": {"global_step": 12, "runtime_s": 3.5},
        "health": {"checks": {}, "warnings": ["loss stuck at ln 2"]},
        "per_category": {"age": {"loss": 0.1}},
        "steps": [{"step": 1, "train/loss": 0.69}],
    }


def test_training_headline_picks_the_final_numbers() -> None:
    final = {
        "train/loss": 0.02,
        "train/reward_accuracy": 1.0,
        "eval/loss": 0.09,
        "eval/rewards/accuracies": 0.97,
        "eval/rewards/margins": 3.6,
        "train_set/loss": 0.01,
    }
    assert training_headline(_metrics(final)) == {
        "train_loss": 0.02,
        "train_reward_accuracy": 1.0,
        "val_loss": 0.09,
        "val_reward_accuracy": 0.97,
        "val_reward_margin": 3.6,
        "steps": 12,
        "runtime_s": 3.5,
        "health_warnings": 1,
    }


def test_training_headline_leaves_out_numbers_the_run_did_not_produce() -> None:
    """No validation set: no val_* key, rather than a 0 that would read as a measured accuracy."""
    headline = training_headline(_metrics({"train/loss": 0.5, "train/reward_accuracy": 0.75}))
    assert not any(key.startswith("val_") for key in headline)
    assert headline["steps"] == 12
