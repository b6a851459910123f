"""The gate in front of data_splitting: split only a validated_pairs file that a passed validation wrote.

data_validation saves validated_pairs.jsonl first and validation_summary.json last; the summary records
whether the quality gate passed and the fingerprint (lines, bytes, SHA-256) of the file it describes.
This node compares that fingerprint with the bytes the rows were parsed from (`JSONLinesDataset` attaches
it to the frame), so a failed validation, a run killed between the two saves, or a file edited by hand is
refused with a message naming the summary, instead of being split.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from edu_bias_pipeline.datasets.jsonl import SOURCE_ATTR

logger = logging.getLogger(__name__)

RERUN = "Run `kedro run --pipelines data_validation` (or `dvc repro data_validation`) again first."


class ValidationGateError(RuntimeError):
    """validated_pairs may not be split: validation failed, or the file is not the one it validated."""


def _summary_path(summary: dict[str, Any]) -> str:
    reports = summary.get("reports") if isinstance(summary, dict) else None
    path = reports.get("summary") if isinstance(reports, dict) else None
    return str(path or "validation_summary.json")


def check_validated_pairs(validated_pairs: pd.DataFrame, validation_summary: dict[str, Any]) -> pd.DataFrame:
    """`validated_pairs` unchanged when `validation_summary` passed and describes exactly these bytes;
    otherwise a `ValidationGateError` naming the summary and what to do."""
    summary_path = _summary_path(validation_summary)
    source = validated_pairs.attrs.get(SOURCE_ATTR)
    if source is None:  # only a dataset other than JSONLinesDataset loads the frame without it
        raise ValidationGateError(
            "validated_pairs was loaded without the fingerprint of its file; declare it as "
            "edu_bias_pipeline.datasets.JSONLinesDataset in conf/base/catalog.yml."
        )
    data_path = source["path"]
    if not isinstance(validation_summary, dict) or "passed" not in validation_summary:
        raise ValidationGateError(f"{summary_path} is not a data_validation summary. {RERUN}")

    if not validation_summary["passed"]:
        counts = ""
        if "rows_read" in validation_summary:
            counts = (
                f": {validation_summary.get('rows_quarantined')} of {validation_summary['rows_read']} rows "
                f"quarantined ({validation_summary.get('quarantined_share', 0):.1%}), above "
                f"max_error_rate={validation_summary.get('max_error_rate')}"
            )
        raise ValidationGateError(
            f"data_validation failed its quality gate{counts} (see {summary_path}), so data_splitting "
            f"refuses that run's {data_path}. Fix the input (the quarantine file lists every rejected "
            "line with its reason) or, if the rejections are acceptable, raise data_validation."
            f"max_error_rate; then {RERUN[0].lower()}{RERUN[1:]}"
        )

    described = validation_summary.get("validated_pairs")
    if not isinstance(described, dict) or "sha256" not in described:
        raise ValidationGateError(
            f"{summary_path} does not record which {data_path} it describes (written by an older version "
            f"of the pipeline). {RERUN}"
        )
    if described["sha256"] != source["sha256"]:
        raise ValidationGateError(
            f"{data_path} is not the file {summary_path} describes: the summary is of a file with "
            f"{described.get('lines')} lines, {described.get('bytes')} bytes (sha256 "
            f"{str(described['sha256'])[:12]}…), this one has {source['lines']} lines, {source['bytes']} "
            f"bytes (sha256 {source['sha256'][:12]}…). A data_validation run was interrupted between "
            f"writing the two, or one was changed or copied by hand. {RERUN}"
        )
    logger.info(
        "%s matches %s (%d pairs, sha256 %s…), whose quality gate passed",
        data_path,
        summary_path,
        source["lines"],
        source["sha256"][:12],
    )
    validated_pairs.attrs.pop(SOURCE_ATTR, None)  # the check is done; later frames need not carry it
    return validated_pairs
