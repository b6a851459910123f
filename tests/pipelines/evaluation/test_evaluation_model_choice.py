"""Evaluation scores the model training recorded (`trained_model`), or the explicit override, and says which.

Real Kedro sessions. The fast tests write the record the way training's `collect_training_metrics` does,
around the tiny checkpoints; the slow ones train the tiny model for real and evaluate what it wrote.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import tiny_checkpoints as tc
from conftest import read_jsonl, run_pipeline, write_jsonl
from pipelines.training.training_fixtures import SHORT_RUN, describe_splits, write_splits

from edu_bias_pipeline.files import fingerprint_file
from edu_bias_pipeline.scoring import METADATA_FILE, CheckpointError, DeviceError
from edu_bias_pipeline.split_files import SplitFilesError

RECORD = "data/06_models/dpo_model/trained_model.json"
DEFAULT_FINAL = "data/06_models/dpo_model/final"
REPORT = "data/08_reporting/eval_report.md"
SCORES = "data/07_model_output/eval_pair_scores.jsonl"


@pytest.fixture(scope="module")
def ck(tmp_path_factory):
    return tc.get_checkpoints(tmp_path_factory)


@pytest.fixture
def stale_project(project, ck):
    """A project whose default model path holds an older model (the tiny full checkpoint) and a test split."""
    shutil.copytree(ck.full, project / DEFAULT_FINAL)
    write_jsonl(project / "data/05_model_input/test.jsonl", tc.pair_rows(with_long=False))
    return project


def _record(project: Path, model_dir: str, **extra) -> dict:
    """trained_model.json as training writes it: model_dir, final/'s metadata, the run's identity (which
    training writes into final/'s metadata too)."""
    meta_file = project / model_dir / METADATA_FILE
    run = {"fingerprint": "0123456789abcdef", "global_step": 7}
    contract = {**json.loads(meta_file.read_text(encoding="utf-8")), **run}
    meta_file.write_text(json.dumps(contract), encoding="utf-8")
    record = {
        "model_dir": model_dir,
        **contract,
        "finished_at": "2026-12-01T10:00:00+00:00",
        **extra,
    }
    (project / RECORD).write_text(json.dumps(record), encoding="utf-8")
    return record


def _evaluate(project: Path, **evaluation) -> None:
    run_pipeline(project, "evaluation", params={"evaluation": evaluation} if evaluation else None)


def _report(project: Path) -> str:
    return (project / REPORT).read_text(encoding="utf-8")


def _policy_logps(project: Path) -> dict[str, tuple[float, float]]:
    return {
        s["pair_id"]: (s["policy_chosen_logp"], s["policy_rejected_logp"])
        for s in read_jsonl(project / SCORES)
    }


# ------------------------------------------------------------------------------------------ fast
def test_the_recorded_model_is_scored_not_the_default_path(stale_project, ck):
    project = stale_project
    moved = "data/06_models/elsewhere/final"
    shutil.copytree(ck.lora, project / moved)
    _record(project, moved)

    _evaluate(project)
    report = _report(project)
    assert f"- model scored: `{moved}` (LoRA adapter), the model the training stage recorded" in report
    assert "fingerprint `0123456789abcdef`, 7 steps, final model saved 2026-12-01T10:00:00+00:00" in report
    metrics = json.loads((project / "data/08_reporting/eval_metrics.json").read_text())
    assert metrics["model"] == moved and metrics["model_source"] == "trained_model"
    assert metrics["training_run/fingerprint"] == "0123456789abcdef"
    headline = json.loads((project / "data/08_reporting/eval_headline.json").read_text())
    assert headline["model"] == moved and headline["training_run/fingerprint"] == "0123456789abcdef"
    scored = _policy_logps(project)

    # The same numbers as naming that adapter explicitly, and not those of the model at the default path.
    _evaluate(project, checkpoint=moved)
    assert _policy_logps(project) == scored
    _evaluate(project, checkpoint=DEFAULT_FINAL)
    assert _policy_logps(project) != scored


def test_the_checkpoint_override_wins_and_the_report_says_so(stale_project, ck):
    project = stale_project
    moved = "data/06_models/elsewhere/final"
    shutil.copytree(ck.lora, project / moved)
    _record(project, moved)

    _evaluate(project, checkpoint=DEFAULT_FINAL)
    report = _report(project)
    assert (
        f"- model scored: `{DEFAULT_FINAL}` (full model), named by the evaluation.checkpoint override "
        f"(not the model training recorded, `{moved}`)"
    ) in report
    assert "- training run: not recorded" in report
    metrics = json.loads((project / "data/08_reporting/eval_metrics.json").read_text())
    assert metrics["model"] == DEFAULT_FINAL and metrics["model_source"] == "evaluation.checkpoint"
    assert not any(k.startswith("training_run/") for k in metrics)

    # Overriding with the recorded model itself keeps its training run.
    _evaluate(project, checkpoint=moved)
    assert "fingerprint `0123456789abcdef`" in _report(project)


def test_no_record_and_no_override_stops_and_says_what_to_do(stale_project):
    """A model sits at the default path, but nothing says training wrote it: nothing is scored."""
    with pytest.raises(CheckpointError, match=r"trained_model\.json does not exist") as err:
        _evaluate(stale_project)
    assert "kedro run --pipelines training,evaluation" in str(err.value)
    assert "evaluation.checkpoint=PATH" in str(err.value)
    assert not (stale_project / REPORT).exists()


@pytest.mark.parametrize(
    "damage", ["missing", "no_weights", "no_metadata", "replaced", "other_run", "unnamed"]
)
def test_a_record_naming_a_missing_or_changed_model_never_falls_back(stale_project, ck, damage):
    project = stale_project
    moved = "data/06_models/elsewhere/final"
    shutil.copytree(ck.full, project / moved)
    _record(project, moved)
    expected = {
        "missing": "which does not exist",
        "no_weights": "holds no model weights",
        "no_metadata": f"lacks {METADATA_FILE}",
        "replaced": r"no longer matches the record \(beta: recorded 0.25, found 0.5\)",
        # same contract, another run (new data or learning rate) that stopped before recording its model
        "other_run": r"the record and the model come from different training runs \(fingerprint: recorded "
        r"'0123456789abcdef', edu_bias_training.json has 'fedcba9876543210'\).*rerun training",
        "unnamed": r"different training runs \(global_step: recorded 7, edu_bias_training.json has None, "
        "i.e. it was written before runs were named there",
    }[damage]
    if damage == "missing":
        shutil.rmtree(project / moved)
    elif damage == "no_weights":
        (project / moved / "model.safetensors").unlink()
    elif damage == "no_metadata":
        (project / moved / METADATA_FILE).unlink()
    else:
        meta_file = project / moved / METADATA_FILE
        meta = json.loads(meta_file.read_text())
        if damage == "replaced":
            meta["beta"] = 0.5
        elif damage == "other_run":
            meta["fingerprint"] = "fedcba9876543210"
        else:
            del meta["global_step"]
        meta_file.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=expected) as err:
        _evaluate(project)
    assert f"{RECORD} names {moved}" in str(err.value)
    assert not (project / REPORT).exists()


def _split_files(project: Path) -> dict:
    """split_report.json's `files` for the split files in place, as training records them."""
    return {
        split: {"path": f"data/05_model_input/{split}.jsonl", **fingerprint_file(path)}
        for split in ("train", "val", "test")
        if (path := project / f"data/05_model_input/{split}.jsonl").exists()
    }


def test_the_report_names_the_pairs_file_and_whether_it_is_held_out(stale_project):
    project = stale_project
    write_jsonl(project / "data/05_model_input/train.jsonl", tc.pair_rows(with_long=False)[:3])
    _record(project, DEFAULT_FINAL, split_files=_split_files(project))

    _evaluate(project)
    sha = fingerprint_file(project / "data/05_model_input/test.jsonl")["sha256"][:12]
    assert (
        f"- pairs file: data/05_model_input/test.jsonl (sha256 {sha}…), "
        "the held-out test split of the model's training run"
    ) in _report(project)
    metrics = json.loads((project / "data/08_reporting/eval_metrics.json").read_text(encoding="utf-8"))
    assert "held-out test split" in json.dumps(metrics, ensure_ascii=False)

    run_pipeline(project, "evaluation", params={"eval_pairs_path": "data/05_model_input/train.jsonl"})
    assert "the train split the model was trained on: NOT held out" in _report(project)


def test_a_test_split_written_after_training_is_refused_not_scored(stale_project):
    """`kedro run` trains, then `--pipelines data_splitting --params data_splitting.seed=7` re-splits: the
    new test.jsonl may hold pairs the model was trained on, so `--pipelines evaluation` refuses it."""
    project = stale_project
    _record(project, DEFAULT_FINAL, split_files=_split_files(project))
    _evaluate(project)
    assert (project / REPORT).exists()
    write_jsonl(project / "data/05_model_input/test.jsonl", tc.pair_rows(with_long=False)[1:])

    with pytest.raises(SplitFilesError, match=r"not the test split of the run that trained") as err:
        _evaluate(project)
    assert "data_splitting ran again after training" in str(err.value)
    assert "kedro run --pipelines training,evaluation" in str(err.value)
    assert not (project / REPORT).exists()  # the earlier report is not left beside the refusal


@pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="needs a machine where CUDA cannot be used"
)
def test_cuda_where_there_is_none_fails_in_one_line(stale_project):
    with pytest.raises(DeviceError) as err:
        _evaluate(stale_project, checkpoint=DEFAULT_FINAL, device="cuda")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("device 'cuda' asked for, but ") and "use device=cpu (or auto)" in message
    with pytest.raises(DeviceError, match="not a device name torch knows; use auto, cpu, cuda or cuda:N"):
        _evaluate(stale_project, checkpoint=DEFAULT_FINAL, device="gpu")


# ------------------------------------------------------------------------------------------ slow
def _assert_scores_are_those_of(project: Path, model_dir: Path, rows: list[dict]) -> None:
    """Each pair's policy log-probs == an independent float64 pass of `model_dir` (the stage ran float64)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    contract = json.loads((model_dir / METADATA_FILE).read_text(encoding="utf-8"))
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float64).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    scores = _policy_logps(project)
    for row in rows:
        for side, got in zip(("chosen", "rejected"), scores[row["pair_id"]], strict=True):
            want = tc.plain_logp_float64(
                model, tok, row["prompt"], row[side], contract["instruction"], contract["max_length"]
            )
            assert got == pytest.approx(want, abs=1e-5), (row["pair_id"], side)


def _stale_model_and_splits(project: Path, ck) -> list[dict]:
    shutil.copytree(ck.full, project / DEFAULT_FINAL)
    _, val = write_splits(project, limit=40)
    test_rows = val[:6]
    write_jsonl(project / "data/05_model_input/test.jsonl", test_rows)
    describe_splits(project)
    return test_rows


def _fingerprint(project: Path) -> str:
    metrics = json.loads((project / "data/08_reporting/training_metrics.json").read_text(encoding="utf-8"))
    return metrics["run"]["fingerprint"]


@pytest.mark.slow
def test_output_dir_elsewhere_then_evaluation_scores_the_model_trained_there(project, ck, monkeypatch):
    """`OUTPUT_DIR=elsewhere kedro run --pipelines training`, then `--pipelines evaluation`."""
    rows = _stale_model_and_splits(project, ck)
    elsewhere = "data/06_models/elsewhere"
    monkeypatch.setenv("OUTPUT_DIR", elsewhere)
    run_pipeline(project, "training", params={"training": SHORT_RUN})
    monkeypatch.delenv("OUTPUT_DIR")
    run_pipeline(project, "evaluation", params={"evaluation": {"dtype": "float64"}})

    report = _report(project)
    recorded = "(full model), the model the training stage recorded"
    assert f"- model scored: `{elsewhere}/final` {recorded}" in report
    assert f"fingerprint `{_fingerprint(project)}`, 4 steps" in report
    _assert_scores_are_those_of(project, project / elsewhere / "final", rows)


@pytest.mark.slow
def test_training_and_evaluation_in_one_run_scores_the_new_model(project, ck):
    """`kedro run --pipelines training,evaluation`: evaluation waits for training and scores its model."""
    rows = _stale_model_and_splits(project, ck)
    run_pipeline(
        project,
        ["training", "evaluation"],
        params={"training": SHORT_RUN, "evaluation": {"dtype": "float64"}},
    )
    report = _report(project)
    assert f"- model scored: `{DEFAULT_FINAL}` (full model), the model the training stage recorded" in report
    assert f"fingerprint `{_fingerprint(project)}`, 4 steps" in report
    assert "the held-out test split of the model's training run" in report
    _assert_scores_are_those_of(project, project / DEFAULT_FINAL, rows)


@pytest.mark.slow
def test_a_run_that_replaced_the_model_without_recording_it_is_never_reported_as_the_previous_run(project):
    """Run A trains and records its model. Run B, same contract (base model, beta, instruction...) but
    another learning rate, writes final/ and stops before recording it (Kedro ended after train_dpo; here
    `--to-nodes train_dpo`). Evaluation must not score B's weights under A's name."""
    _, val = write_splits(project, limit=40)
    write_jsonl(project / "data/05_model_input/test.jsonl", val[:6])
    run_pipeline(project, "training", params={"training": SHORT_RUN})
    record_a = json.loads((project / RECORD).read_text(encoding="utf-8"))
    run_b = {**SHORT_RUN, "learning_rate": 1e-3}
    run_pipeline(project, "training", params={"training": run_b}, to_nodes=["train_dpo"])
    assert (
        json.loads((project / DEFAULT_FINAL / METADATA_FILE).read_text())["fingerprint"]
        != (record_a["fingerprint"])
    )

    # B removed A's record when it cleared A's run
    with pytest.raises(CheckpointError, match=r"trained_model\.json does not exist"):
        _evaluate(project)
    # A's record put back (restored from a backup, say) still does not pass for B's model
    (project / RECORD).write_text(json.dumps(record_a), encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"the record and the model come from different training runs"):
        _evaluate(project)
    assert not (project / REPORT).exists()


def test_a_model_equal_to_its_reference_is_reported_as_all_ties_not_as_anti_aligned(stale_project, ck):
    """The reference scored against itself (or an untrained adapter): every reward is 0, and 0% reward
    accuracy must read as "all ties", not as a model that prefers every biased statement."""
    project = stale_project
    _evaluate(project, checkpoint=str(ck.base), reference_model=str(ck.base), beta=0.1)
    metrics = json.loads((project / "data/08_reporting/eval_metrics.json").read_text(encoding="utf-8"))
    n = metrics["n/overall"]
    assert metrics["reward_accuracy/overall"] == 0.0 and metrics["pairs/reward_ties"] == n
    assert f"**Every pair's reward ties ({n} of {n})" in _report(project)
    assert "not recorded (the scored model is not the final model the training stage recorded)" in _report(
        project
    )
