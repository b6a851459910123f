"""Ingest + validate stage: raw JSONL -> validated pairs, quarantine, summary, GX Data Docs."""

from edu_bias_pipeline.pipelines.data_validation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
