"""The training → evaluation handoff: one model of what final/ holds, written by training, read by scoring and
recorded in the catalog; and a contract module the Kedro side imports without the training libraries."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from kedro.io import DatasetError

from edu_bias_pipeline import scoring
from edu_bias_pipeline.datasets.trained_model import TrainedModelDataset
from edu_bias_pipeline.dpo.contract import METADATA_FILE, FinalMetadata, TrainedModel

WRITTEN = FinalMetadata(
    base_model="data/06_models/base_model",
    is_adapter=True,
    beta=0.25,
    instruction="Say it fairly.",
    max_length=128,
    reference_sha256="ab" * 32,
    fingerprint="0123456789abcdef",
    global_step=12,
)


def test_final_metadata_reads_back_what_training_wrote(tmp_path):
    WRITTEN.write(tmp_path)
    on_disk = json.loads((tmp_path / METADATA_FILE).read_text(encoding="utf-8"))
    assert on_disk["beta"] == 0.25 and on_disk["global_step"] == 12 and "source" not in on_disk
    assert FinalMetadata.read(tmp_path) == WRITTEN
    # a key another release added is ignored, not a reason to refuse the model
    (tmp_path / METADATA_FILE).write_text(json.dumps({**on_disk, "added_later": 1}), encoding="utf-8")
    assert FinalMetadata.read(tmp_path) == WRITTEN


def test_scoring_reads_the_written_metadata(tmp_path):
    """Scoring takes what it needs to score from the same file; the run's identity is not its business."""
    final = tmp_path / "final"
    final.mkdir()
    WRITTEN.write(final)
    (final / "adapter_config.json").write_text("{}", encoding="utf-8")
    meta = scoring.resolve_metadata(final)
    assert meta.model_dump(exclude={"fingerprint", "global_step"}) == WRITTEN.model_dump(
        exclude={"fingerprint", "global_step"}
    )
    assert meta.fingerprint is None and meta.source == str(final / METADATA_FILE)
    # a mid-run checkpoint takes its run's final/ metadata, and an overridden base model drops the hash
    checkpoint = tmp_path / "checkpoint-4"
    checkpoint.mkdir()
    meta = scoring.resolve_metadata(checkpoint, {"base_model": tmp_path / "other", "beta": None})
    assert meta.base_model == str(tmp_path / "other") and meta.reference_sha256 is None
    assert meta.beta == 0.25 and not meta.is_adapter
    (final / METADATA_FILE).write_text(json.dumps({"beta": "steep"}), encoding="utf-8")
    with pytest.raises(scoring.CheckpointError, match="beta"):
        scoring.resolve_metadata(final)


def test_the_trained_model_record_round_trips_through_the_catalog(tmp_path):
    record = TrainedModel(
        **WRITTEN.model_dump(), model_dir="out/final", finished_at="2026-12-01T10:00:00+00:00"
    )
    dataset = TrainedModelDataset(filepath=str(tmp_path / "trained_model.json"))
    assert dataset.load() == {"record_file": str(tmp_path / "trained_model.json")}  # no run yet
    dataset.save({**record.model_dump(mode="json"), "record_file": "where it was read"})
    loaded = dataset.load()
    assert loaded == {**record.model_dump(mode="json"), "record_file": str(tmp_path / "trained_model.json")}
    # only what the file holds: evaluation compares recorded keys, not defaults
    (tmp_path / "trained_model.json").write_text(
        json.dumps({"model_dir": "m", "beta": 0.5}), encoding="utf-8"
    )
    assert dataset.load() == {
        "model_dir": "m",
        "beta": 0.5,
        "record_file": str(tmp_path / "trained_model.json"),
    }
    (tmp_path / "trained_model.json").write_text(json.dumps({"beta": 0.5}), encoding="utf-8")
    with pytest.raises(DatasetError, match="not a trained-model record.*model_dir"):
        dataset.load()


def test_the_kedro_side_imports_no_training_library():
    code = (
        "import sys\n"
        "import edu_bias_pipeline.dpo.contract, edu_bias_pipeline.pipelines.training.nodes\n"
        "import edu_bias_pipeline.pipelines.evaluation.nodes\n"
        "heavy = ('torch', 'transformers', 'trl', 'peft', 'deepspeed')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
