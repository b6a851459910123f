"""`kedro run --pipelines data_validation`: ingest + validate the raw preference pairs."""

from kedro.pipeline import Node, Pipeline

from edu_bias_pipeline.pipelines.data_validation.headline import validation_headline
from edu_bias_pipeline.pipelines.data_validation.nodes import (
    build_data_docs,
    check_pairs,
    enforce_error_rate,
    ingest_lines,
    partition_pairs,
    seal_summary,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(ingest_lines, "raw_pairs", ["ingested_pairs", "ingest_stats"], name="ingest_lines"),
            Node(
                check_pairs,
                ["ingested_pairs", "params:taxonomy", "params:data_validation"],
                "checked_pairs",
                name="check_pairs",
            ),
            Node(
                partition_pairs,
                ["checked_pairs", "ingest_stats", "params:data_validation", "data_validation_locations"],
                ["validated_pairs", "quarantined_pairs", "validation_summary_draft"],
                name="partition_pairs",
            ),
            # The summary is saved after validated_pairs and records its fingerprint, so the pair on disk
            # is either consistent or detectably not (a kill between the two saves): data_splitting checks.
            Node(
                seal_summary,
                ["validation_summary_draft", "validated_pairs_fingerprint"],
                "validation_summary",
                name="seal_summary",
            ),
            Node(
                validation_headline, "validation_summary", "validation_headline", name="validation_headline"
            ),
            Node(
                build_data_docs,
                ["checked_pairs", "params:taxonomy", "params:data_validation", "data_docs"],
                "data_docs_report",
                name="build_data_docs",
            ),
            # The gate reads the saved summary and the docs report, so it can only run once the
            # summary, quarantine and Data Docs are on disk: users need them most when the run fails.
            Node(
                enforce_error_rate,
                ["validation_summary", "data_docs_report"],
                None,
                name="enforce_error_rate",
            ),
        ]
    )
