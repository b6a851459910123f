"""The gate in front of training and evaluation: the split files read are the ones split_report.json
describes, so train, val and test always come from one data_splitting run."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from edu_bias_pipeline.datasets.jsonl import SOURCE_ATTR

logger = logging.getLogger(__name__)

RESPLIT = "Run `kedro run --pipelines data_splitting` (or `dvc repro data_splitting`) again first."


class SplitFilesError(RuntimeError):
    """A split file is not the one split_report.json describes: the three files are not one split."""


def check_split_file(split: str, frame: pd.DataFrame, split_report: dict[str, Any]) -> pd.DataFrame:
    """`frame` (the `split` file as loaded) unchanged when split_report records exactly its bytes.

    data_splitting saves train, val and test first and split_report.json last; a run killed between
    those saves, or a split file replaced by hand, leaves files from different splits, whose pairs may
    overlap (training on test pairs) — refused here with a message naming both files.
    """
    source = frame.attrs.get(SOURCE_ATTR)
    if source is None:
        raise SplitFilesError(
            f"{split}_pairs was loaded without the fingerprint of its file; declare it as "
            "edu_bias_pipeline.datasets.JSONLinesDataset in conf/base/catalog.yml."
        )
    files = split_report.get("files") if isinstance(split_report, dict) else None
    described = files.get(split) if isinstance(files, dict) else None
    if not isinstance(described, dict) or "sha256" not in described:
        raise SplitFilesError(
            f"split_report.json does not record which {source['path']} it describes (written by an "
            f"older version of the pipeline). {RESPLIT}"
        )
    if described["sha256"] != source["sha256"]:
        raise SplitFilesError(
            f"{source['path']} is not the {split} file split_report.json describes ({described.get('lines')} "
            f"lines, sha256 {str(described['sha256'])[:12]}…; this one has {source['lines']} lines, sha256 "
            f"{source['sha256'][:12]}…): the split files come from different data_splitting runs (one was "
            f"interrupted between its saves, or a file was replaced by hand), so their pairs may overlap. "
            f"{RESPLIT}"
        )
    return frame


def check_training_splits(
    train_pairs: pd.DataFrame, val_pairs: pd.DataFrame, split_report: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """train and val as loaded, once both are the files of the split split_report.json describes."""
    checked = (
        check_split_file("train", train_pairs, split_report),
        check_split_file("val", val_pairs, split_report),
    )
    logger.info("train and val files match split_report.json (seed %s)", split_report.get("seed"))
    return checked


def evaluation_file_status(source: dict[str, Any] | None, split_files: dict[str, Any] | None) -> str:
    """What the evaluated pair file is to the scored model's training run, in words the report prints.

    `source` is the pair file's fingerprint (path, sha256) as loaded; `split_files` the split_report
    `files` recorded with the trained model (None: the model is not training's record, or the record
    predates it). The split's own test path holding other pairs than the recorded test file means
    data_splitting ran again after training: the model may have trained on some of those pairs, so the
    run is refused rather than reported as held-out accuracy.
    """
    if not source:
        return "unknown (the file was loaded without its fingerprint)"
    if not split_files:
        return "held-out status unknown (the scored model has no recorded training split)"
    for split in ("test", "train", "val"):
        described = split_files.get(split) or {}
        if described.get("sha256") == source.get("sha256"):
            return (
                "the held-out test split of the model's training run"
                if split == "test"
                else f"the {split} split the model was trained on: NOT held out"
            )
    test = split_files.get("test") or {}
    if test.get("path") and Path(str(test["path"])).resolve() == Path(str(source["path"])).resolve():
        raise SplitFilesError(
            f"{source['path']} is not the test split of the run that trained the scored model (that one had "
            f"{test.get('lines')} lines, sha256 {str(test.get('sha256'))[:12]}…; this one has "
            f"{source.get('lines')} lines, sha256 {str(source.get('sha256'))[:12]}…): data_splitting ran "
            "again after training, so some of these pairs may be in the model's training data. Train again "
            "on the new split first (`kedro run --pipelines training,evaluation`, or `dvc repro`)."
        )
    return "another file (not a split of the model's training run): held-out status unknown"
